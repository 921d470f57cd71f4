"""Unit tests for claude_bottle/bundle/supervise.py (the bundle's PID 1).

The file runs inside the bundle image as a script, so it is loaded from its
path rather than imported as a package module.
"""
import contextlib
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

SUPERVISE = Path(__file__).resolve().parents[2] / "claude_bottle" / "bundle" / "supervise.py"


def load_supervise():
    spec = importlib.util.spec_from_file_location("cb_bundle_supervise", SUPERVISE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


sup = load_supervise()

CERT = textwrap.dedent("""\
    -----BEGIN CERTIFICATE-----
    MIIBszCCAVmgAwIBAgIUQk1c
    dGVzdA==
    -----END CERTIFICATE-----
    """)
CERT2 = CERT.replace("dGVzdA==", "b3RoZXI=")
KEY = textwrap.dedent("""\
    -----BEGIN PRIVATE KEY-----
    c2VjcmV0LWtleS1tYXRlcmlhbA==
    -----END PRIVATE KEY-----
    """)


class BackoffTest(unittest.TestCase):
    def test_doubles_from_half_a_second_to_eight(self):
        self.assertEqual([sup.backoff_delay(n) for n in range(1, 8)],
                         [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0])

    def test_no_delay_before_any_failure(self):
        self.assertEqual(sup.backoff_delay(0), 0.0)
        self.assertEqual(sup.backoff_delay(-3), 0.0)

    def test_huge_failure_counts_stay_capped(self):
        self.assertEqual(sup.backoff_delay(10_000), 8.0)

    def test_base_and_cap_are_parameters(self):
        self.assertEqual(sup.backoff_delay(3, base=1.0, cap=3.0), 3.0)


class ArgvTest(unittest.TestCase):
    def test_pipelock_runs_its_config_on_loopback(self):
        self.assertEqual(sup.pipelock_argv(), [
            "/usr/local/bin/pipelock", "run", "--config", "/etc/claude-bottle/pipelock.yaml",
            "--listen", "127.0.0.1:8888"])

    def test_pipelock_argv_parameters(self):
        self.assertEqual(sup.pipelock_argv("pl", "c.yaml", "127.0.0.1:1"),
                         ["pl", "run", "--config", "c.yaml", "--listen", "127.0.0.1:1"])

    def test_mitmdump_runs_in_regular_mode_with_eager_connects(self):
        # The addon routes each server connection through pipelock itself; regular mode is what dials at
        # CONNECT time (server-speaks-first protocols, an honest answer to the CONNECT).
        argv = sup.mitmdump_argv()
        self.assertEqual(argv[:6], ["python3", "/opt/claude-bottle/proxy.py", "--mode", "regular",
                                    "--set", "connection_strategy=eager"])
        self.assertEqual(argv[argv.index("--listen-host") + 1], "0.0.0.0")
        self.assertEqual(argv[argv.index("-p") + 1], "8080")
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        self.assertIn("confdir=/var/lib/claude-bottle/mitm", sets)
        self.assertFalse(any(s.startswith("ssl_verify_upstream_trusted_ca") for s in sets))
        self.assertEqual(argv[-2:], ["-s", "/opt/claude-bottle/addon.py"])

    def test_mitmdump_trusts_the_upstream_ca_bundle(self):
        argv = sup.mitmdump_argv(upstream_ca="/var/lib/claude-bottle/upstream-ca.pem",
                                 confdir="/c", addon="/a.py", port=9, listen_host="127.0.0.1")
        self.assertEqual(argv, [
            "python3", "/opt/claude-bottle/proxy.py", "--mode", "regular", "--set", "connection_strategy=eager",
            "--listen-host", "127.0.0.1", "-p", "9", "--set", "confdir=/c", "--set", "termlog_verbosity=warn",
            "--set", "ssl_verify_upstream_trusted_ca=/var/lib/claude-bottle/upstream-ca.pem",
            "-s", "/a.py"])


class ScannerChildTest(unittest.TestCase):
    def test_scanner_serves_the_bundle_config_on_its_socket(self):
        self.assertEqual(sup.scanner_argv(), [
            "/usr/local/bin/claude-bottle-scanner", "-socket", "/var/lib/claude-bottle/scanner.sock",
            "-config", "/opt/claude-bottle/gitleaks.toml"])

    def children(self, pipelock, scanner):
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_SCANNER_SOCKET": "stale"}), \
                contextlib.redirect_stderr(io.StringIO()) as err:
            children = sup.bundle_children(None, pipelock, scanner)
            env = {k: os.environ.get(k) for k in ("CLAUDE_BOTTLE_SCANNER_SOCKET", "CLAUDE_BOTTLE_PIPELOCK_URL")}
        return [c.name for c in children], env, err.getvalue()

    def test_the_scanner_is_a_third_child_when_the_image_has_it(self):
        names, env, _ = self.children(pipelock=True, scanner=True)
        self.assertEqual(names, ["scanner", "pipelock", "mitmdump"])
        self.assertEqual(env["CLAUDE_BOTTLE_SCANNER_SOCKET"], "/var/lib/claude-bottle/scanner.sock")

    def test_without_the_scanner_the_addon_is_not_told_of_a_socket(self):
        names, env, err = self.children(pipelock=False, scanner=False)
        self.assertEqual(names, ["mitmdump"])
        self.assertIsNone(env["CLAUDE_BOTTLE_SCANNER_SOCKET"])
        self.assertIn("no scanner", err)
        self.assertIn("pipelock is ABSENT", err)


class FakeScanner:
    """A Unix socket that answers each 4-byte-framed request with `reply` (framed)."""

    def __init__(self, path, reply=b'{"rules":[]}'):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.reply = reply
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4)
                conn.sendall(len(self.reply).to_bytes(4, "big") + self.reply)

    def close(self):
        self.sock.close()


class PemTest(unittest.TestCase):
    def test_cert_blocks_drop_private_keys(self):
        out = sup.cert_blocks(KEY + CERT + "trailing junk\n" + KEY)
        self.assertEqual(out, CERT)
        self.assertNotIn("PRIVATE", out)

    def test_cert_blocks_keep_every_certificate(self):
        self.assertEqual(sup.cert_blocks(CERT + KEY + CERT2), CERT + CERT2)

    def test_unterminated_cert_cannot_swallow_a_key(self):
        broken = "-----BEGIN CERTIFICATE-----\nAAAA\n" + KEY + "-----END CERTIFICATE-----\n"
        self.assertEqual(sup.cert_blocks(broken), "")

    def test_cert_blocks_accept_crlf(self):
        self.assertEqual(sup.cert_blocks(CERT.replace("\n", "\r\n")).count("BEGIN CERTIFICATE"), 1)

    def test_upstream_bundle_appends_the_extra_ca_to_system_trust(self):
        bundle = sup.upstream_ca_bundle(CERT2 + "\n\n", "comment\n" + CERT + KEY)
        self.assertEqual(bundle, CERT2 + CERT)

    def test_upstream_bundle_rejects_text_without_certificate(self):
        with self.assertRaises(ValueError):
            sup.upstream_ca_bundle(CERT, "not a pem")
        with self.assertRaises(ValueError):
            sup.upstream_ca_bundle(CERT, KEY)


class ProbeTest(unittest.TestCase):
    """--check and --ca against temporary files and a loopback listener."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.ca = self.dir / "mitmproxy-ca-cert.pem"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(self.listener.close)
        self.marker = self.dir / "addon-ready"
        self.marker.write_text(f"{os.getpid()}\n")  # a live pid: the addon "is running"
        for name, value in (("CA_CERT", self.ca), ("PIPELOCK_BIN", self.dir / "no-pipelock"),
                            ("MITM_PORT", self.listener.getsockname()[1]), ("ADDON_READY", self.marker),
                            ("SCANNER_BIN", self.dir / "no-scanner"), ("SCANNER_SOCKET", self.dir / "s.sock")):
            patcher = mock.patch.object(sup, name, value)
            patcher.start()
            self.addCleanup(patcher.stop)

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = sup.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_check_passes_with_listener_and_ca(self):
        self.ca.write_text(CERT)
        self.assertEqual(self.run_main("--check")[0], 0)

    def test_wait_prints_the_ca_and_pipelock_presence_once_ready(self):
        self.ca.write_text(CERT)
        code, out, _ = self.run_main("--wait", "5")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out), {"ca": CERT, "pipelock": False})

    def test_wait_gives_up_with_the_reason(self):
        code, out, err = self.run_main("--wait", "0.2")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("not ready after 0.2 s: no CA certificate", err)

    def test_check_fails_until_the_addon_reports_ready(self):
        self.ca.write_text(CERT)
        self.marker.unlink()
        code, _, err = self.run_main("--check")
        self.assertEqual(code, 1)
        self.assertIn("addon has not reported ready", err)

    def test_check_fails_when_the_ready_pid_is_gone(self):
        # A mitmdump restarted with a broken addon leaves the old, dead pid behind.
        self.ca.write_text(CERT)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        self.marker.write_text(f"{dead.pid}\n")
        self.assertEqual(self.run_main("--check")[0], 1)

    def test_check_fails_without_ca(self):
        code, _, err = self.run_main("--check")
        self.assertEqual(code, 1)
        self.assertIn("no CA certificate", err)
        self.assertEqual(len(err.strip().splitlines()), 1)

    def test_check_fails_when_mitmdump_is_not_listening(self):
        self.ca.write_text(CERT)
        self.listener.close()
        code, _, err = self.run_main("--check")
        self.assertEqual(code, 1)
        self.assertIn("mitmdump does not accept TCP", err)

    def test_check_asks_pipelock_health_when_present(self):
        self.ca.write_text(CERT)
        with mock.patch.object(sup, "PIPELOCK_BIN", self.ca), \
                mock.patch.object(sup, "http_ok", return_value=False) as http_ok:
            code, _, err = self.run_main("--check")
        self.assertEqual(code, 1)
        http_ok.assert_called_once_with("http://127.0.0.1:8888/health")
        self.assertIn("pipelock", err)

    def test_check_waits_for_a_scanner_ping_when_the_image_has_one(self):
        self.ca.write_text(CERT)
        with mock.patch.object(sup, "SCANNER_BIN", self.ca):
            code, _, err = self.run_main("--check")
            self.assertEqual(code, 1)
            self.assertIn("the scanner does not answer a ping on", err)
            wrong = FakeScanner(self.dir / "s.sock", b'{"error":"broken"}')
            self.assertEqual(self.run_main("--check")[0], 1)
            wrong.close()
            os.unlink(self.dir / "s.sock")
            fake = FakeScanner(self.dir / "s.sock")
            self.addCleanup(fake.close)
            self.assertEqual(self.run_main("--check")[0], 0)

    def test_ca_prints_the_certificate_never_the_key(self):
        self.ca.write_text(KEY + CERT)
        code, out, _ = self.run_main("--ca")
        self.assertEqual((code, out), (0, CERT))

    def test_ca_fails_without_certificate(self):
        self.assertEqual(self.run_main("--ca")[0], 1)

    def test_unknown_arguments_are_usage_errors(self):
        self.assertEqual(self.run_main("--bogus")[0], 2)


DRIVER = textwrap.dedent("""\
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("sv", sys.argv[1])
    sv = importlib.util.module_from_spec(spec); sys.modules["sv"] = sv
    spec.loader.exec_module(sv)
    sv.STOP_GRACE_S = 1.0
    py, tmp = sys.executable, sys.argv[2]
    crash = "open(%r, 'a').write('x'); raise SystemExit(3)" % (tmp + "/starts",)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
               "open(%r, 'w').write('up'); time.sleep(60)" % (tmp + "/stubborn",)
    sys.exit(sv.Supervisor([sv.Child("crash", [py, "-c", crash]),
                            sv.Child("stubborn", [py, "-c", stubborn])]).run())
    """)


class SupervisorLoopTest(unittest.TestCase):
    """The real loop, with real child processes, in a subprocess of its own."""

    def test_restarts_with_backoff_then_stops_cleanly(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(SUPERVISE), tmp],
                                    stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(f"{tmp}/stubborn") and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(2.5)
                proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                _, err = proc.communicate(timeout=10)
                elapsed = time.monotonic() - t0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            starts = len(Path(f"{tmp}/starts").read_text())
        self.assertEqual(proc.returncode, 0, err)
        # Starts at ~0, 0.5, 1.5 s (the next at 3.5 s): backoff, not a hot loop.
        self.assertTrue(2 <= starts <= 4, f"{starts} starts in ~2.5 s\n{err}")
        self.assertIn("restart #2 in 1s", err)
        # The child that ignores SIGTERM is killed after the grace period.
        self.assertIn("SIGKILL", err)
        self.assertLess(elapsed, 5.0)



class ProxyListenerTest(unittest.TestCase):
    """The agent-facing port: the one claude-bottle-boot bound and left us, or one bound here."""

    def test_the_inherited_socket_is_used_and_kept_inheritable(self):
        bound = socket.create_server(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_LISTEN_FD": str(bound.fileno())}):
            listener = sup.proxy_listener("127.0.0.1", port)
        self.addCleanup(listener.close)
        bound.detach()  # the listener owns the descriptor now
        self.assertEqual(listener.getsockname()[1], port)
        self.assertTrue(listener.get_inheritable())
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # waits in the backlog until mitmdump accepts

    def test_an_inherited_socket_on_another_port_is_refused(self):
        bound = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(bound.close)
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_LISTEN_FD": str(os.dup(bound.fileno()))}):
            with self.assertRaisesRegex(ValueError, "not port 1"):
                sup.proxy_listener("127.0.0.1", 1)

    def test_without_one_it_binds_its_own(self):
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_LISTEN_FD": ""}):
            listener = sup.proxy_listener("127.0.0.1", 0)
        self.addCleanup(listener.close)
        self.assertTrue(listener.get_inheritable())


class UnixListenerTest(unittest.TestCase):
    """The Unix socket the Docker runtime's agent comes in by: boot's, or one bound here."""

    def setUp(self):
        self.path = os.path.join(tempfile.mkdtemp(), "proxy.sock")

    def test_without_one_it_binds_its_own_for_any_uid_replacing_a_stale_one(self):
        with open(self.path, "w"):
            pass  # what a restarted container finds
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_UNIX_FD": ""}):
            listener = sup.unix_listener(self.path)
        self.addCleanup(listener.close)
        self.assertTrue(listener.get_inheritable())
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o666)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(self.path)  # waits in the backlog until mitmdump accepts

    def test_the_inherited_socket_is_used_and_one_bound_elsewhere_refused(self):
        bound = socket.socket(socket.AF_UNIX)
        bound.bind(self.path)
        bound.listen()
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_UNIX_FD": str(os.dup(bound.fileno()))}):
            listener = sup.unix_listener(self.path)
        self.addCleanup(listener.close)
        self.assertEqual(listener.getsockname(), self.path)
        with mock.patch.dict(os.environ, {"CLAUDE_BOTTLE_UNIX_FD": str(os.dup(bound.fileno()))}):
            with self.assertRaisesRegex(ValueError, "not /elsewhere.sock"):
                sup.unix_listener("/elsewhere.sock")
        bound.close()

    def test_mitmdump_is_handed_both_sockets(self):
        with mock.patch.dict(os.environ, {}), contextlib.redirect_stderr(io.StringIO()):
            children = sup.bundle_children(None, False, False, 7, 9)
            env = {k: os.environ.get(k) for k in ("CLAUDE_BOTTLE_LISTEN_FD", "CLAUDE_BOTTLE_UNIX_FD")}
        mitmdump = next(c for c in children if c.name == "mitmdump")
        self.assertEqual(mitmdump.pass_fds, (7, 9))
        self.assertEqual(env, {"CLAUDE_BOTTLE_LISTEN_FD": "7", "CLAUDE_BOTTLE_UNIX_FD": "9"})

    def test_the_port_serves_loopback_alone_when_the_plan_says_so(self):
        code = (f"import sys; sys.path.insert(0, {str(SUPERVISE.parent)!r}); import supervise; "
                "print(supervise.MITM_LISTEN_HOST)")
        for env, want in (({"CLAUDE_BOTTLE_PROXY_HOST": "127.0.0.1"}, "127.0.0.1"), ({}, "0.0.0.0")):
            environ = {k: v for k, v in os.environ.items() if k != "CLAUDE_BOTTLE_PROXY_HOST"}
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**environ, **env})
            self.assertEqual(out.stdout.strip(), want)


if __name__ == "__main__":
    unittest.main()
