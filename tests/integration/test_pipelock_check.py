"""The rendered pipelock config, read by the real pipelock, for every class of egress rule.

`pipelock check --config F` loads a config exactly as `pipelock run` does (strict YAML, defaults,
validation) and exits non-zero when it is invalid; with `--url U` it also runs U through the URL
scanners (allowlist, blocklist, SSRF, DLP, entropy) and exits non-zero when U is blocked.

The binary: CLAUDE_BOTTLE_PIPELOCK_BIN if set, else `pipelock` on PATH, else /usr/local/bin/pipelock in
the sidecars image (copied out: it is static, so it runs on the host). Without any, the tests skip and say what
was not checked (never a failure, even under CLAUDE_BOTTLE_REQUIRE_DOCKER=1).

Offline machines: pipelock's SSRF check resolves every name and refuses one that does not resolve, so
an allowed *name* passes only where DNS works. Such URLs must get past the allowlist: ALLOWED, or
BLOCKED by the SSRF scanner, never by the allowlist. IP literals need no DNS and must be ALLOWED.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
from typing import Any

from claude_bottle import egress, pipelock
from tests.integration import support

IMAGE_BIN = "/usr/local/bin/pipelock"
NOT_CHECKED = "the rendered config was not checked with the real `pipelock check`"


def _egress(*entries: object) -> egress.Egress:
    def fail(index: int, message: str) -> Exception:
        return AssertionError(f"rule {index}: {message}")

    return egress.classify(egress.expand(list(entries), fail))


class Pipelock:
    """A pipelock binary on the host (a local one, or the sidecars image's, copied out), and a temp dir."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="cb-pipelock-")

    def __str__(self) -> str:
        return self.binary

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _find() -> Pipelock:
    """The pipelock to test with; raises SkipTest, saying what was not checked, when there is none."""
    named = os.environ.get("CLAUDE_BOTTLE_PIPELOCK_BIN")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise AssertionError(f"CLAUDE_BOTTLE_PIPELOCK_BIN={named} is not an executable file")
        return Pipelock(binary=named)
    on_path = shutil.which("pipelock")
    if on_path:
        return Pipelock(binary=on_path)
    why = "no CLAUDE_BOTTLE_PIPELOCK_BIN, no pipelock on PATH"
    if shutil.which("docker") is None:
        why += ", no docker CLI to look in the sidecars image"
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        why += ", Docker daemon unreachable to look in the sidecars image"
    else:
        image = os.environ.get("CLAUDE_BOTTLE_SIDECARS_IMAGE") or support.sidecars_image()
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            why += f", no image {image}"
        else:
            copied = _copy_out(image)  # static: it runs on the host, loopback and all
            if copied is not None:
                return Pipelock(binary=copied)
            why += f", and image {image} has no {IMAGE_BIN}"
    # Never a failure: a machine where nobody built pipelock by hand must still pass (as
    # support.require_pipelock); the closing summary lists this skip with its reason.
    raise unittest.SkipTest(f"pipelock absent ({why}): {NOT_CHECKED}")


# Every class of egress rule, with URLs pipelock must let through and URLs it must refuse.
#   allowed: IP literals (no DNS): `check --url` must exit 0.
#   named:   names the allowlist covers: must not be refused by the allowlist (DNS may fail offline).
#   refused: must exit non-zero, refused by the allowlist.
CASES: dict[str, dict[str, Any]] = {
    "exact host": {
        "rules": ["api.example.com"],
        # pipelock ignores ports (mitmdump's port gates enforce them): any port of the host passes.
        "named": ["https://api.example.com/", "http://api.example.com/v1?q=1", "https://api.example.com:8443/"],
        "refused": ["https://example.com/", "https://www.api.example.com/", "https://api.example.com.evil.test/",
                    "https://api-example.com/"],
    },
    "wildcard": {
        "rules": ["*.corp.example.com"],
        # *.domain covers the apex too, and any depth.
        "named": ["https://corp.example.com/", "https://git.corp.example.com/", "https://a.b.corp.example.com/"],
        "refused": ["https://example.com/", "https://xcorp.example.com/", "https://corp.example.com.evil.test/"],
    },
    "public IP literal": {
        "rules": ["93.184.216.34", "[2001:db8::1]:443"],
        "allowed": ["https://93.184.216.34/", "http://93.184.216.34:8080/x", "https://[2001:db8::1]/"],
        "refused": ["https://93.184.216.35/", "https://[2001:db8::2]/", "https://93.184.216.34.nip.io/"],
    },
    "private and CGNAT IP literals": {
        "rules": ["10.1.2.3:5432", "100.64.9.9", "[fd00::5]", "ssh://192.168.1.1"],
        "allowed": ["https://10.1.2.3:5432/", "https://100.64.9.9/", "https://[fd00::5]/", "https://192.168.1.1:22/"],
        "refused": ["https://10.1.2.4/", "https://100.64.9.10/", "https://[fd00::6]/", "https://192.168.1.2/",
                    "https://127.0.0.1/", "https://169.254.169.254/"],
    },
    "HOST:PORT raw": {
        "rules": ["db.example.com:5432", "198.51.100.7:25"],
        "named": ["https://db.example.com:5432/"],
        "allowed": ["https://198.51.100.7:25/"],
        "refused": ["https://db2.example.com:5432/", "https://198.51.100.8:25/"],
    },
    "ssh": {
        "rules": ["ssh://github.com", "ssh://git.example.com:2222", "ssh://10.0.0.7"],
        "named": ["https://github.com/", "https://git.example.com:2222/"],
        "allowed": ["https://10.0.0.7:22/"],
        "refused": ["https://gitlab.com/", "https://api.github.com/", "https://10.0.0.8:22/"],
    },
    "presets and a mix": {
        "rules": ["@anthropic", "@github", "@npm", "@pypi", "@go", "*.corp.example.com", "ssh://10.0.0.7:2222",
                  "example.com:8443", "[fd00::1]"],
        "named": ["https://api.anthropic.com/v1/messages", "https://platform.claude.com/", "https://claude.ai/",
                  "https://registry.npmjs.org/left-pad", "https://proxy.golang.org/", "https://example.com:8443/"],
        "allowed": ["https://10.0.0.7:2222/", "https://[fd00::1]/"],
        "refused": ["https://anthropic.com/", "https://gist.github.com/", "https://pastebin.com/",
                    "https://10.0.0.8/", "https://o1.ingest.sentry.io/", "https://statsig.com/"],
    },
    "empty manifest": {
        "rules": [],
        "refused": ["https://example.com/", "https://93.184.216.34/", "https://10.1.2.3/", "https://[fd00::5]/",
                    "https://localhost/"],
    },
}


class PipelockCheckTest(unittest.TestCase):
    pl: Pipelock

    @classmethod
    def setUpClass(cls) -> None:
        cls.pl = _find()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pl.close()

    def config_path(self, name: str, text: str) -> str:
        return self.pl.write(name.replace(" ", "-").replace(":", "") + ".yaml", text)

    def check(self, path: str, url: str | None = None) -> tuple[int, str]:
        args = ["check", "--config", path] + (["--url", url] if url else [])
        proc = self.pl.run(*args)
        return proc.returncode, proc.stdout + proc.stderr

    def test_every_rendering_is_a_valid_config(self) -> None:
        for name, case in CASES.items():
            with self.subTest(case=name):
                rc, out = self.check(self.config_path(name, pipelock.render(_egress(*case["rules"]))))
                self.assertEqual(rc, 0, f"{self.pl} refused the config for {name}:\n{out}")
                self.assertIn("Config validation: OK", out)
                self.assertIn("Mode:           strict", out)

    def test_urls_for_every_rule_class(self) -> None:
        for name, case in CASES.items():
            path = self.config_path(name, pipelock.render(_egress(*case["rules"])))
            for url in case.get("allowed", []):
                with self.subTest(case=name, allowed=url):
                    rc, out = self.check(path, url)
                    self.assertEqual(rc, 0, out)
                    self.assertIn("Result:  ALLOWED", out)
            for url in case.get("named", []):
                with self.subTest(case=name, named=url):
                    rc, out = self.check(path, url)
                    self.assertNotIn("not in allowlist", out)
                    if rc != 0:  # only DNS (or what it resolves to) may stop a name the allowlist covers
                        self.assertIn("Scanner: ssrf", out)
            for url in case["refused"]:
                with self.subTest(case=name, refused=url):
                    rc, out = self.check(path, url)
                    self.assertNotEqual(rc, 0, out)
                    self.assertIn("Result:  BLOCKED", out)
                    self.assertIn("Scanner: allowlist", out)

    def test_empty_manifest_allows_not_even_its_sentinel(self) -> None:
        path = self.config_path("sentinel", pipelock.render(_egress()))
        rc, out = self.check(path, f"https://{pipelock.NOTHING_ALLOWED}/")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("Scanner: ssrf", out)  # the allowlist names it, but .invalid never resolves

    def test_ssrf_exception_is_what_opens_a_private_address(self) -> None:
        cfg = pipelock.config(_egress("10.1.2.3:5432", "100.64.9.9"))
        self.assertIn("ssrf", cfg)
        del cfg["ssrf"]
        path = self.config_path("no-ssrf-exception", json.dumps(cfg))
        for url in ("https://10.1.2.3:5432/", "https://100.64.9.9/"):
            with self.subTest(url=url):
                rc, out = self.check(path, url)
                self.assertNotEqual(rc, 0, out)
                self.assertIn("Scanner: ssrf", out)

    def test_old_empty_allowlist_is_refused(self) -> None:
        # Why the sentinel exists: the same config with an empty allowlist does not load.
        cfg = pipelock.config(_egress())
        cfg["api_allowlist"] = []
        rc, out = self.check(self.config_path("empty-allowlist", json.dumps(cfg)))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("requires at least one domain", out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_out(image: str) -> str | None:
    """The image's pipelock binary copied to a temp file (removed at exit), or None if it has none."""
    import atexit

    created = subprocess.run(["docker", "create", "--label", support.TEST_LABEL, image], capture_output=True,
                             text=True, timeout=120)
    if created.returncode != 0:
        return None
    cid = created.stdout.strip()
    folder = tempfile.mkdtemp(prefix="cb-pipelock-bin-")
    atexit.register(shutil.rmtree, folder, True)
    try:
        copied = subprocess.run(["docker", "cp", f"{cid}:{IMAGE_BIN}", os.path.join(folder, "pipelock")],
                                capture_output=True, timeout=120)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=120)
    path = os.path.join(folder, "pipelock")
    return path if copied.returncode == 0 and os.path.isfile(path) else None


class PipelockRunTest(unittest.TestCase):
    """`pipelock run` on the rendered config: it starts, refuses what it must, relays what it may.

    The relay test opens loopback in a copy of the rendered config, since no egress rule may name it.
    """

    pl: Pipelock

    @classmethod
    def setUpClass(cls) -> None:
        cls.pl = _find()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pl.close()

    def start(self, name: str, cfg: dict[str, Any]) -> int:
        path = self.pl.write(f"{name}.yaml", json.dumps(cfg))
        port = _free_port()
        log = open(os.path.join(self.pl.dir, f"{name}.log"), "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen([str(self.pl.binary), "run", "--config", path, "--listen", f"127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        self.addCleanup(stop)

        def healthy() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"pipelock exited {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        support.wait_for(healthy, 20, f"pipelock /health on port {port}")
        self.log = log
        return port

    def connect(self, port: int, target: str, want: bytes = b"\r\n\r\n", timeout: float = 8) -> bytes:
        """Send CONNECT target; return what came back once `want` arrived (or the peer closed, or time ran out)."""
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            data = b""
            while want not in data:
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
            return data

    def test_empty_manifest_starts_and_refuses_every_connect(self) -> None:
        port = self.start("empty", pipelock.config(_egress()))
        for target in ("example.com:443", "93.184.216.34:443", f"{pipelock.NOTHING_ALLOWED}:443", "10.0.0.1:22"):
            with self.subTest(target=target):
                reply = self.connect(port, target)
                self.assertTrue(reply.startswith(b"HTTP/1.1 403"), reply[:200])
        self.log.seek(0)
        events = [json.loads(line) for line in self.log if line.startswith("{")]
        blocked = [e for e in events if e.get("event") == "blocked"]
        self.assertEqual(len(blocked), 4, events)

    def test_server_speaks_first_through_a_tunnel(self) -> None:
        # sni_verification off: the greeting of an SMTP-like server comes through at once. With it
        # on, pipelock would wait 5 s for a ClientHello that never comes, then close the tunnel.
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        self.addCleanup(server.close)
        target = f"127.0.0.1:{server.getsockname()[1]}"

        def greet() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"220 test ESMTP ready\r\n")
                time.sleep(1)

        threading.Thread(target=greet, daemon=True).start()
        cfg = pipelock.config(_egress("smtp.example.com:25"))
        cfg["api_allowlist"] = ["127.0.0.1"]  # no rule may name loopback; only this test opens it
        cfg["ssrf"] = {"ip_allowlist": ["127.0.0.1/32"]}
        port = self.start("banner", cfg)
        started = time.monotonic()
        reply = self.connect(port, target, want=b"220 test ESMTP ready")
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:200])
        self.assertIn(b"220 test ESMTP ready", reply)
        self.assertLess(time.monotonic() - started, 4)


if __name__ == "__main__":
    unittest.main()
