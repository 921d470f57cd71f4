"""Unit tests for SSH from the bottle: claude_bottle.ssh (config, known_hosts, agent socket), the
manifest's `ssh` section, its place in the plan and the docker argv, and the CONNECT helper
claude_bottle/agent/bottle_connect.py against a fake proxy on loopback (its error paths)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import unittest
from typing import Any
from unittest import mock

from claude_bottle import docker, docker_argv, egress, host, launch, manifest, plan, ssh
from claude_bottle.agent import bottle_connect as bc
from claude_bottle.errors import EXIT_USAGE, ManifestError
from tests.fakes.runner import FakeRunner


def _key(key_type: str = "ssh-ed25519", seed: bytes = b"k") -> str:
    """A well-formed public key blob (what ssh-keyscan prints after the type), base64."""
    name = key_type.encode()
    blob = len(name).to_bytes(4, "big") + name + (32).to_bytes(4, "big") + seed.ljust(32, b"\0")
    return base64.b64encode(blob).decode()


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _egress(*rules: str) -> egress.Egress:
    return egress.classify(egress.expand(list(rules), lambda i, m: ValueError(m)))


class ClientConfigTest(unittest.TestCase):
    def test_every_host_goes_through_the_helper_with_strict_host_keys(self) -> None:
        text = ssh.client_config("none")
        lines = [line.strip() for line in text.splitlines()]
        self.assertIn("Host *", lines)
        self.assertIn(f"ProxyCommand {ssh.HELPER_PATH} %h %p", lines)
        self.assertIn("StrictHostKeyChecking yes", lines)
        self.assertIn(f"UserKnownHostsFile {ssh.KNOWN_HOSTS_PATH}", lines)
        self.assertIn("ForwardAgent no", lines)
        self.assertNotIn("IdentityAgent", text)

    def test_forwarded_agent_is_named(self) -> None:
        self.assertIn(f"IdentityAgent {ssh.AGENT_SOCKET}", ssh.client_config("forward"))

    def test_agent_files_are_read_only_and_hooked_into_the_system_config(self) -> None:
        p = ssh.plan(_egress("ssh://10.0.0.5"), None)
        assert p is not None
        files = ssh.agent_files(p, b"#!/usr/bin/env python3\n")
        self.assertEqual(files["etc/claude-bottle/bottle-connect"], (b"#!/usr/bin/env python3\n", 0o555))
        self.assertEqual(files["etc/claude-bottle/ssh_config"][1], 0o444)
        self.assertEqual(files["etc/claude-bottle/known_hosts"], (b"", 0o444))
        drop_in, mode = files["etc/ssh/ssh_config.d/claude-bottle.conf"]
        self.assertIn(f"Include {ssh.CONFIG_PATH}".encode(), drop_in)
        self.assertEqual(mode, 0o444)

    def test_the_shipped_helper_is_the_module_tested_here(self) -> None:
        self.assertEqual(ssh.helper_source().splitlines()[0], b"#!/usr/bin/env python3")
        self.assertEqual(os.path.realpath(ssh.HELPER_SOURCE), os.path.realpath(bc.__file__))


class SshPlanTest(unittest.TestCase):
    def test_nothing_without_ssh_rules_or_section(self) -> None:
        self.assertIsNone(ssh.plan(_egress("example.com", "example.com:2222"), None))

    def test_targets_and_missing_host_keys(self) -> None:
        kh = f"10.0.0.5 ssh-ed25519 {_key()}\n"
        p = ssh.plan(_egress("ssh://10.0.0.5", "ssh://git.example.com:2222", "example.com"),
                     ssh.Settings(known_hosts=kh))
        assert p is not None
        self.assertEqual(p.targets, (("10.0.0.5", 22), ("git.example.com", 2222)))
        self.assertEqual(p.unknown, ("git.example.com:2222",))
        self.assertEqual(p.known_hosts, kh)
        doc = p.to_json()
        self.assertEqual(doc["targets"], ["10.0.0.5:22", "git.example.com:2222"])
        self.assertEqual(doc["known_hosts"], {"keys": 1, "missing": ["git.example.com:2222"]})
        self.assertIsNone(doc["agent_socket"])

    def test_section_alone_is_enough(self) -> None:
        p = ssh.plan(_egress(), ssh.Settings())
        assert p is not None
        self.assertEqual((p.targets, p.unknown, p.known_hosts), ((), (), ""))

    def test_socket_only_when_forwarding(self) -> None:
        rules = _egress("ssh://10.0.0.5")
        self.assertIsNone(ssh.plan(rules, ssh.Settings(agent="none"), "/tmp/sock").agent_socket)  # type: ignore[union-attr]
        forwarded = ssh.plan(rules, ssh.Settings(agent="forward"), "/tmp/sock")
        assert forwarded is not None
        self.assertEqual(forwarded.agent_socket, "/tmp/sock")
        self.assertEqual(forwarded.to_json()["agent_socket_in_bottle"], ssh.AGENT_SOCKET)
        self.assertEqual(ssh.plan(rules, ssh.Settings(agent="forward")).to_json()["agent_socket"],  # type: ignore[union-attr]
                         "$SSH_AUTH_SOCK")

    def test_ipv6_targets(self) -> None:
        p = ssh.plan(_egress("ssh://[fd00::5]:2200"), None)
        assert p is not None
        self.assertEqual(p.to_json()["targets"], ["[fd00::5]:2200"])


class KnownHostsTest(unittest.TestCase):
    def test_parses_keyscan_output_markers_and_comments(self) -> None:
        text = (f"# from ssh-keyscan\n\n10.0.0.5 ssh-ed25519 {_key()}\n"
                f"[git.example.com]:2222,git2.example.com ecdsa-sha2-nistp256 {_key('ecdsa-sha2-nistp256')} c\n"
                f"@cert-authority *.example.com ssh-rsa {_key('ssh-rsa')}\n"
                f"@revoked old.example.com ssh-ed25519 {_key(seed=b'old')}\n")
        keys = ssh.parse_known_hosts(text)
        self.assertEqual(len(keys), 4)
        self.assertEqual(keys[1], (None, ("[git.example.com]:2222", "git2.example.com"), "ecdsa-sha2-nistp256"))
        self.assertEqual(keys[2][0], "@cert-authority")

    def test_errors_name_the_line(self) -> None:
        good = f"10.0.0.5 ssh-ed25519 {_key()}\n"
        for text, fragment in (
            (good + "10.0.0.6 ssh-ed25519\n", "line 2: expected"),
            (good + f"10.0.0.6 ssh-foo {_key()}\n", "line 2: unknown key type"),
            (good + "10.0.0.6 ssh-ed25519 not*base64\n", "line 2: the key is not base64"),
            (good + f"10.0.0.6 ssh-rsa {_key()}\n", "line 2: the key's contents do not match"),
            (f"@trusted 10.0.0.6 ssh-ed25519 {_key()}\n", "line 1: unknown marker"),
            (good + f"10.0.0.6\x1b ssh-ed25519 {_key()}\n", "line 2: holds control characters"),
            ("# only a comment\n\n", "holds no host keys"),
            (good + "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
             "private key"),
        ):
            with self.subTest(fragment):
                with self.assertRaises(ValueError) as cm:
                    ssh.parse_known_hosts(text)
                self.assertIn(fragment, str(cm.exception))

    def test_lookups_follow_ssh(self) -> None:
        keys = ssh.parse_known_hosts(
            f"10.0.0.5 ssh-ed25519 {_key()}\n"
            f"[10.0.0.5]:2222 ssh-ed25519 {_key()}\n"
            f"*.Example.COM,!bad.example.com ssh-ed25519 {_key()}\n"
            f"{_hashed('hidden.example.org')} ssh-ed25519 {_key()}\n"
            f"{_hashed('[hidden.example.org]:2200')} ssh-ed25519 {_key()}\n"
            f"@revoked revoked.example.net ssh-ed25519 {_key()}\n"
            f"@cert-authority *.ca.example.net ssh-ed25519 {_key()}\n"
        )
        for host, port, known in (
            ("10.0.0.5", 22, True), ("10.0.0.5", 2222, True), ("10.0.0.5", 2200, False),
            ("git.example.com", 22, True), ("bad.example.com", 22, False), ("example.com", 22, False),
            ("hidden.example.org", 22, True), ("hidden.example.org", 2200, True), ("hidden.example.org", 23, False),
            ("revoked.example.net", 22, False), ("host.ca.example.net", 22, True),
        ):
            with self.subTest(host=host, port=port):
                self.assertEqual(ssh.is_known(keys, host, port), known)


class PasswdTest(unittest.TestCase):
    BASE = "root:x:0:0:root:/root:/bin/bash\nagent:x:10001:10001::/home/agent:/bin/bash\n"

    def test_known_uid_changes_nothing(self) -> None:
        self.assertIsNone(ssh.passwd_with_user(self.BASE, 10001, 10001, "alice", "/home/agent"))

    def test_adds_the_launching_users_name(self) -> None:
        out = ssh.passwd_with_user(self.BASE, 1000, 1000, "alice", "/home/agent")
        self.assertEqual(out, self.BASE + "alice:x:1000:1000:claude-bottle agent:/home/agent:/bin/sh\n")

    def test_taken_or_odd_names_fall_back(self) -> None:
        for name in ("agent", "", "Bad:Name", "x" * 40, "a\nroot"):
            with self.subTest(name=name):
                out = ssh.passwd_with_user(self.BASE, 1000, 1000, name, "/home/agent")
                assert out is not None
                self.assertTrue(out.endswith("\nbottle:x:1000:1000:claude-bottle agent:/home/agent:/bin/sh\n"))
        taken = self.BASE + "bottle:x:5:5::/:/bin/sh"  # no final newline either
        out = ssh.passwd_with_user(taken, 1000, 1000, "agent", "/h")
        self.assertEqual(out, taken + "\nbottle2:x:1000:1000:claude-bottle agent:/h:/bin/sh\n")


class AgentSocketTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-ssh-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "agent.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.addCleanup(self.listener.close)

    def test_a_socket_of_the_agents_uid(self) -> None:
        self.assertEqual(ssh.check_agent_socket(self.path, os.getuid()), self.path)

    def test_problems(self) -> None:
        plain = os.path.join(self.dir, "plain")
        open(plain, "w").close()
        for path, uid, fragment in (
            (None, os.getuid(), "SSH_AUTH_SOCK is not set"),
            ("", os.getuid(), "SSH_AUTH_SOCK is not set"),
            (os.path.join(self.dir, "gone"), os.getuid(), "No such file"),
            (plain, os.getuid(), "is not a socket"),
            (self.dir + "/a,b=c.sock", os.getuid(), "which a Docker bind mount cannot take"),
            (self.path, os.getuid() + 4242, f"belongs to uid {os.getuid()}, but the agent runs as uid"),
        ):
            with self.subTest(fragment):
                with self.assertRaises(ValueError) as cm:
                    ssh.check_agent_socket(path, uid)
                self.assertIn(fragment, str(cm.exception))


class ManifestSshTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-ssh-manifest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        with open(os.path.join(self.dir, "known_hosts"), "w") as handle:
            handle.write(f"10.0.0.5 ssh-ed25519 {_key()}\n")

    def load(self, **doc: Any) -> manifest.Manifest:
        doc.setdefault("name", "demo")
        path = os.path.join(self.dir, "bottle.json")
        with open(path, "w") as handle:
            json.dump(doc, handle)
        return manifest.load(path)

    def fails(self, field: str, fragment: str, **doc: Any) -> None:
        with self.assertRaises(ManifestError) as cm:
            self.load(**doc)
        self.assertEqual((cm.exception.field, cm.exception.exit_code), (field, EXIT_USAGE), str(cm.exception))
        self.assertIn(fragment, str(cm.exception))

    def test_defaults_and_values(self) -> None:
        self.assertIsNone(self.load().ssh)
        self.assertEqual(self.load(ssh={}).ssh, ssh.Settings())
        m = self.load(ssh={"agent": "forward", "known_hosts": "known_hosts"})
        assert m.ssh is not None
        self.assertEqual(m.ssh.agent, "forward")
        self.assertIn("10.0.0.5 ssh-ed25519", m.ssh.known_hosts or "")
        self.assertEqual(m.to_json()["ssh"], {"agent": "forward", "known_hosts": os.path.join(self.dir, "known_hosts")})
        self.assertNotIn("ssh", self.load().to_json())

    def test_bad_sections(self) -> None:
        self.fails("ssh.agnet", "did you mean 'agent'", ssh={"agnet": "forward"})
        self.fails("ssh.agent", "must be one of none, forward", ssh={"agent": "copy-keys"})
        self.fails("ssh.known_hosts", "is not an existing file", ssh={"known_hosts": "nope"})
        self.fails("ssh", "runtime 'smolmachines'", runtime="smolmachines", ssh={"agent": "none"})
        with open(os.path.join(self.dir, "bad_hosts"), "w") as handle:
            handle.write(f"10.0.0.5 ssh-ed25519 {_key()}\nnot a key line\n")
        self.fails("ssh.known_hosts", "line 2", ssh={"known_hosts": "bad_hosts"})
        with open(os.path.join(self.dir, "id_ed25519"), "w") as handle:
            handle.write("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n")
        self.fails("ssh.known_hosts", "private key", ssh={"known_hosts": "id_ed25519"})

    def test_ssh_auth_sock_is_the_bottles(self) -> None:
        self.fails("agent.env.SSH_AUTH_SOCK", "set by claude-bottle", agent={"env": {"SSH_AUTH_SOCK": "/x"}})


class PlanAndArgvTest(unittest.TestCase):
    def build(self, sock: str | None = None, **doc: Any) -> plan.Plan:
        doc.setdefault("name", "demo")
        return plan.build(manifest.parse(doc, "/nowhere/bottle.json"), "abcd1234", uid=1000, gid=1000,
                          ssh_auth_sock=sock)

    def test_no_ssh_no_change(self) -> None:
        p = self.build(egress={"allow": ["example.com"]})
        self.assertIsNone(p.ssh)
        self.assertNotIn("ssh", p.to_json())
        self.assertNotIn("SSH_AUTH_SOCK", dict(p.agent_env))
        self.assertNotIn(ssh.AGENT_SOCKET, " ".join(docker_argv.agent_create(p, p.container("agent"), True, False)))

    def test_rules_alone_configure_the_client_but_forward_nothing(self) -> None:
        p = self.build("/run/user/1000/agent.sock", egress={"allow": ["ssh://10.0.0.5"]})
        assert p.ssh is not None
        self.assertEqual(p.to_json()["ssh"]["targets"], ["10.0.0.5:22"])
        self.assertIsNone(p.ssh.agent_socket)
        self.assertNotIn("SSH_AUTH_SOCK", dict(p.agent_env))
        self.assertNotIn(ssh.AGENT_SOCKET, " ".join(docker_argv.agent_create(p, p.container("agent"), True, False)))

    def test_forwarded_socket_is_mounted_read_only(self) -> None:
        p = self.build("/run/user/1000/agent.sock", egress={"allow": ["ssh://10.0.0.5"]}, ssh={"agent": "forward"})
        self.assertEqual(dict(p.agent_env)["SSH_AUTH_SOCK"], ssh.AGENT_SOCKET)
        argv = docker_argv.agent_create(p, p.container("agent"), True, False)
        mount = f"type=bind,source=/run/user/1000/agent.sock,target={ssh.AGENT_SOCKET},readonly"
        self.assertEqual(argv[argv.index(mount) - 1], "--mount")
        self.assertLess(argv.index(mount), argv.index(p.agent_image))


def passwd_runner(passwd: bytes | None) -> FakeRunner:
    """`docker cp` of /etc/passwd answers a tar stream holding `passwd`, or fails when it is None."""

    def handler(argv: list[str]) -> tuple[int, str, str, bytes] | None:
        if argv[:2] != ["docker", "cp"]:
            return None
        if passwd is None:
            return 1, "", "Error: No such container:path", b""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("passwd")
            info.size = len(passwd)
            tar.addfile(info, io.BytesIO(passwd))
        return 0, "", "", buffer.getvalue()

    return FakeRunner(handler)


class DockerSshTest(unittest.TestCase):
    def plan(self, uid: int) -> plan.Plan:
        m = manifest.parse({"name": "demo", "egress": {"allow": ["ssh://10.0.0.5"]}}, "/nowhere/bottle.json")
        return plan.build(m, "abcd1234", uid=uid, gid=uid)

    def test_passwd_entry_added_for_an_unknown_uid(self) -> None:
        p = self.plan(4321)
        runner = passwd_runner(b"root:x:0:0:root:/root:/bin/bash\n")
        files = docker.ssh_files(runner, p, p.container("agent"))  # type: ignore[arg-type]
        self.assertEqual(runner.calls, [["docker", "cp", f"{p.container('agent').name}:/etc/passwd", "-"]])
        content, mode = files["etc/passwd"]
        self.assertEqual(mode, 0o644)
        self.assertRegex(content.decode(), r"\n[a-z_][a-z0-9_-]*:x:4321:4321:claude-bottle agent:/home/agent:/bin/sh\n$")
        self.assertIn("etc/claude-bottle/bottle-connect", files)

    def test_known_uid_or_unreadable_passwd_leaves_it_alone(self) -> None:
        p = self.plan(4321)
        self.assertNotIn("etc/passwd", docker.ssh_files(passwd_runner(b"me:x:4321:4321::/:/bin/sh\n"), p,  # type: ignore[arg-type]
                                                        p.container("agent")))
        with mock.patch("claude_bottle.session.warn") as warn:
            files = docker.ssh_files(passwd_runner(None), p, p.container("agent"))  # type: ignore[arg-type]
        self.assertNotIn("etc/passwd", files)
        self.assertIn("No user exists", warn.call_args[0][0])

    def test_bad_agent_socket_is_a_manifest_error_before_anything_runs(self) -> None:
        m = manifest.parse({"name": "demo", "ssh": {"agent": "forward"}}, "/nowhere/bottle.json")
        with mock.patch.dict(os.environ, {"SSH_AUTH_SOCK": "/nonexistent/agent.sock"}):
            with self.assertRaises(ManifestError) as cm:
                launch.run(m, (), passwd_runner(None))
        self.assertEqual((cm.exception.field, cm.exception.exit_code), ("ssh.agent", EXIT_USAGE))
        self.assertIn("No such file", str(cm.exception))
        self.assertIsNone(host.forwarded_agent_socket(manifest.parse({"name": "d"}, "/x.json")))


class FakeProxy:
    """A one-connection proxy on loopback that answers the CONNECT with `reply` (bytes or a callable)."""

    def __init__(self, reply: Any) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request = b""
        self.reply = reply
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.request += chunk
            if callable(self.reply):
                self.reply(conn)
            elif self.reply:
                conn.sendall(self.reply)

    def env(self) -> dict[str, str]:
        return {"HTTPS_PROXY": f"http://127.0.0.1:{self.port}"}

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


class HelperTest(unittest.TestCase):
    def run_helper(self, argv: list[str], environ: dict[str, str], stdin: bytes = b"",
                   timeout: float = 5.0) -> tuple[int, bytes, str]:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        os.write(in_w, stdin)
        os.close(in_w)
        err = io.StringIO()
        with mock.patch("sys.stderr", err):
            code = bc.main(argv, environ, in_r, out_w, timeout=timeout)
        os.close(in_r)
        os.close(out_w)
        with os.fdopen(out_r, "rb") as out:
            return code, out.read(), err.getvalue()

    def proxy(self, reply: Any) -> FakeProxy:
        proxy = FakeProxy(reply)
        self.addCleanup(proxy.close)
        return proxy

    def test_tunnel_pumps_both_ways_and_keeps_early_bytes(self) -> None:
        def echo(conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-banner\r\n")
            while data := conn.recv(4096):
                conn.sendall(data.upper())

        proxy = self.proxy(echo)
        code, out, err = self.run_helper(["10.0.0.5", "22"], proxy.env(), b"ssh-2.0-client\r\n")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, b"SSH-2.0-banner\r\nSSH-2.0-CLIENT\r\n")
        self.assertEqual(proxy.request, b"CONNECT 10.0.0.5:22 HTTP/1.1\r\nHost: 10.0.0.5:22\r\n\r\n")

    def test_ipv6_targets_are_bracketed(self) -> None:
        proxy = self.proxy(b"HTTP/1.0 200 OK\r\n\r\n")
        self.assertEqual(self.run_helper(["fd00::5", "2222"], proxy.env())[0], 0)
        self.assertTrue(proxy.request.startswith(b"CONNECT [fd00::5]:2222 HTTP/1.1\r\nHost: [fd00::5]:2222\r\n"))

    def test_refused_by_the_bundle(self) -> None:
        body = b"claude-bottle: blocked: port 2222 not allowed for 10.0.0.5\n"
        proxy = self.proxy(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), body))
        code, out, err = self.run_helper(["10.0.0.5", "2222"], proxy.env())
        self.assertEqual((code, out), (1, b""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("bottle-connect: 10.0.0.5:2222 refused by the bottle's egress rules (403: claude-bottle: "
                      "blocked: port 2222 not allowed for 10.0.0.5)", err)
        self.assertIn('"ssh://10.0.0.5:2222"', err)

    def test_other_failures_reported_by_the_proxy(self) -> None:
        proxy = self.proxy(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        code, _, err = self.run_helper(["10.0.0.5", "22"], proxy.env())
        self.assertEqual(code, 1)
        self.assertIn("the proxy could not open 10.0.0.5:22: 502 Bad Gateway", err)

    def test_proxy_down(self) -> None:
        spare = socket.create_server(("127.0.0.1", 0))
        port = spare.getsockname()[1]
        spare.close()  # nothing listens there now
        code, _, err = self.run_helper(["10.0.0.5", "22"], {"HTTPS_PROXY": f"http://127.0.0.1:{port}"})
        self.assertEqual(code, 1)
        self.assertIn(f"cannot reach the bottle's proxy at 127.0.0.1:{port}", err)

    def test_malformed_replies(self) -> None:
        for reply, fragment in (
            (b"SSH-2.0-not-a-proxy\r\n\r\n", "malformed reply from the proxy"),
            (b"HTTP/1.1 two hundred\r\n\r\n", "malformed reply from the proxy"),
            (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 3000, "no end of headers"),
            (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering"),
            (b"", "closed the connection before answering"),
        ):
            with self.subTest(reply=reply[:30]):
                code, out, err = self.run_helper(["10.0.0.5", "22"], self.proxy(reply).env())
                self.assertEqual((code, out), (1, b""))
                self.assertIn(fragment, err)

    def test_silent_proxy_times_out(self) -> None:
        done = threading.Event()
        proxy = self.proxy(lambda conn: done.wait(10))
        self.addCleanup(done.set)  # runs before the proxy's own cleanup joins its thread
        code, _, err = self.run_helper(["10.0.0.5", "22"], proxy.env(), timeout=0.5)
        self.assertEqual(code, 1)
        self.assertIn("did not answer within 0.5 s", err)

    def test_no_or_bad_proxy_setting(self) -> None:
        self.assertIn("HTTPS_PROXY is not set", self.run_helper(["h", "22"], {})[2])
        self.assertIn("not a proxy URL", self.run_helper(["h", "22"], {"HTTPS_PROXY": "socks5://bundle:1080"})[2])
        self.assertIn("not a proxy URL", self.run_helper(["h", "22"], {"https_proxy": "http://bundle:99999"})[2])

    def test_usage_errors(self) -> None:
        for argv in (["h"], ["h", "22", "x"], ["h\r\nX-Evil: 1", "22"], ["h", "0"], ["h", "65536"], ["h", "ssh"],
                     ["", "22"], ["h/x", "22"]):
            with self.subTest(argv=argv):
                self.assertEqual(self.run_helper(argv, {"HTTPS_PROXY": "http://127.0.0.1:9"})[0], 2)


if __name__ == "__main__":
    unittest.main()
