"""Credential injection and request DLP in the bundle's addon, under the real mitmdump and real gitleaks.

All on loopback, with the origin servers of test_addon_mitmdump: "127.0.0.1" is the host a secret is
bound to (DLP `scan`), "localhost" another allowed host (DLP `skip`). A fake gitleaks (a script that
sleeps or fails on cue) checks the fail-closed paths. Skipped like test_addon_mitmdump when mitmdump,
openssl or gitleaks is missing, unless CLAUDE_BOTTLE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import sys
import threading
import time
import unittest
from typing import Any

from tests.integration import secret_shapes
from tests.integration.test_addon_mitmdump import (  # noqa: F401  (setUpModule skips without the tools)
    TIMEOUT,
    AddonTestBase,
    Mitmdump,
    proxy_connect,
    recv_all,
    run_until_exit,
    setUpModule,
)

PLACEHOLDER = "claude-bottle-placeholder-TOKEN-" + "0123456789abcdef" * 2
REAL = "real-" + hashlib.sha256(str(time.time()).encode()).hexdigest()  # never on any argv or in any log
BEARER = {"Authorization": f"Bearer {PLACEHOLDER}"}
FAKE_GITLEAKS = f"""#!{sys.executable}
import sys, time
data = sys.stdin.buffer.read()
if b"SLEEP-FOR-A-WHILE" in data:
    time.sleep(30)
sys.exit(1 if b"CRASH-THE-SCANNER" in data else 0)
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("latin-1")).hexdigest()


class DlpBase(AddonTestBase):
    @classmethod
    def policy(cls, default: str = "scan", hosts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        ports = [cls.port(cls.http), cls.port(cls.https)]
        return {
            "version": 1,
            "rules": [{"host": h, "wildcard": False, "ports": ports} for h in ("127.0.0.1", "localhost")],
            "ssrf_allow": ["127.0.0.0/8"],
            "upstream": None,
            "secrets": [{"name": "TOKEN", "placeholder": PLACEHOLDER, "hosts": ["127.0.0.1"],
                         "header": "authorization"}],
            "dlp": {"default": default, "hosts": hosts or []},
        }

    def request(self, proxy: Mitmdump, host: str, path: str, *, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None, tls: bool = True
                ) -> tuple[int, bytes, dict[str, str]]:
        port = self.port(self.https if tls else self.http)
        if tls:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", proxy.port, timeout=TIMEOUT, context=proxy.client_tls())
            conn.set_tunnel(host, port)
            target = path
        else:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=TIMEOUT)
            target = f"http://{host}:{port}{path}"
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def assert_blocked(self, result: tuple[int, bytes, dict[str, str]], *fragments: str) -> None:
        status, body, _ = result
        self.assertEqual(status, 403, body[:300])
        self.assertTrue(body.startswith(b"claude-bottle: blocked: "), body[:300])
        for fragment in fragments:
            self.assertIn(fragment.encode(), body)

    def assert_no_real_value_logged(self, proxy: Mitmdump) -> None:
        for line in proxy.lines:
            self.assertNotIn(REAL, line)


class InjectionTest(DlpBase):
    proxy: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        cls.proxy = cls.start_proxy(cls.policy("scan", [{"host": "localhost", "wildcard": False, "mode": "skip"}]),
                                    secrets={"version": 1, "values": {"TOKEN": REAL}})

    def tearDown(self) -> None:
        self.assert_no_real_value_logged(self.proxy)

    def test_placeholder_is_swapped_for_the_bound_host(self) -> None:
        status, body, _ = self.request(self.proxy, "127.0.0.1", "/echo", headers=BEARER)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"]["authorization"], sha(f"Bearer {REAL}"))
        self.assertTrue(self.proxy.wait_for(lambda: any(
            e.get("secret") == "TOKEN" and e["host"] == "127.0.0.1" for e in self.proxy.events("injected"))))

    def test_placeholder_inside_a_basic_credential_is_swapped(self) -> None:
        basic = base64.b64encode(f"x-access-token:{PLACEHOLDER}".encode()).decode()
        status, body, _ = self.request(self.proxy, "127.0.0.1", "/echo", headers={"Authorization": f"Basic {basic}"})
        self.assertEqual(status, 200, body)
        real = base64.b64encode(f"x-access-token:{REAL}".encode()).decode()
        self.assertEqual(json.loads(body)["headers"]["authorization"], sha(f"Basic {real}"))

    def test_placeholder_to_another_allowed_host_is_blocked(self) -> None:
        result = self.request(self.proxy, "localhost", "/echo", headers=BEARER)
        self.assert_blocked(result, "placeholder for secret TOKEN may only be sent in header authorization to "
                                    "127.0.0.1")
        blocked = [e for e in self.proxy.events("blocked") if e.get("kind") == "placeholder"]
        self.assertTrue(any(e["host"] == "localhost" and e["secret"] == "TOKEN" for e in blocked))

    def test_placeholder_anywhere_else_is_blocked(self) -> None:
        cases = {
            "other header": dict(headers={"X-Api-Key": PLACEHOLDER}),
            "url": dict(path=f"/echo?key={PLACEHOLDER}"),
            "encoded url": dict(path="/echo?key=" + "".join(f"%{ord(c):02X}" for c in PLACEHOLDER)),
            "body": dict(method="POST", body=json.dumps({"key": PLACEHOLDER}).encode()),
            "gzip body": dict(method="POST", body=gzip.compress(PLACEHOLDER.encode()),
                              headers={"Content-Encoding": "gzip"}),
        }
        for label, kw in cases.items():
            with self.subTest(label):
                path = kw.pop("path", "/echo")
                self.assert_blocked(self.request(self.proxy, "127.0.0.1", path, **kw), "placeholder for secret TOKEN")

    def test_placeholder_over_plain_http_is_never_swapped(self) -> None:
        result = self.request(self.proxy, "127.0.0.1", "/echo", headers=BEARER,
                              tls=False)
        self.assert_blocked(result, "sent over plain HTTP")

    def test_a_reflected_value_reaches_the_client_as_the_placeholder(self) -> None:
        status, body, headers = self.request(self.proxy, "127.0.0.1", "/reflect",
                                             headers=BEARER)
        self.assertEqual((status, body), (200, f"you sent Bearer {PLACEHOLDER}".encode()))
        self.assertEqual(headers["x-reflect"], f"Bearer {PLACEHOLDER}")

    def test_a_reflected_value_split_across_streamed_chunks_is_scrubbed(self) -> None:
        status, body, _ = self.request(self.proxy, "127.0.0.1", "/sse-reflect",
                                       headers=BEARER)
        self.assertEqual(status, 200)
        self.assertEqual(body, f"data: Bearer {PLACEHOLDER}\n\ndata: end\n\n".encode())

    def test_sse_still_streams_from_a_bound_host(self) -> None:
        self.assert_streams(self.proxy, True, "/sse", b"data: 1\n\n", b"data: 2\n\n")


class DlpScanTest(DlpBase):
    proxy: Mitmdump
    warn: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        cls.proxy = cls.start_proxy(cls.policy("scan", [{"host": "localhost", "wildcard": False, "mode": "skip"}]),
                                    secrets={"version": 1, "values": {"TOKEN": REAL}})
        cls.warn = cls.start_proxy(cls.policy("warn"), secrets={"version": 1, "values": {"TOKEN": REAL}})
        cls.bodies = secret_shapes.bodies()

    def test_secret_shapes_in_a_body_are_blocked_and_only_the_rule_is_logged(self) -> None:
        for label, (rule, body) in self.bodies.items():
            with self.subTest(label):
                result = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=body)
                # Other rules may match as well (a random key can also look like a generic API key).
                self.assert_blocked(result, "secret detected by gitleaks: ", rule)
                self.assertTrue(any(e.get("kind") == "dlp" and rule in e.get("rules", [])
                                    for e in self.proxy.events("blocked")))
        secrets = [v.decode(errors="replace") for _, v in self.bodies.values()]
        for line in self.proxy.lines:
            for body in secrets:
                self.assertNotIn(body.strip().splitlines()[-1][-20:], line)

    def test_the_same_bodies_pass_to_a_skip_host(self) -> None:
        for label, (_, body) in self.bodies.items():
            with self.subTest(label):
                status, reply, _ = self.request(self.proxy, "localhost", "/echo", method="POST", body=body)
                self.assertEqual(status, 200, reply)
                self.assertEqual(json.loads(reply)["body"], hashlib.sha256(body).hexdigest())

    def test_a_clean_body_passes(self) -> None:
        body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "def f():\n    return 1\n" * 200}]})
        status, reply, _ = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=body.encode())
        self.assertEqual(status, 200, reply)
        self.assertEqual(json.loads(reply)["length"], len(body))

    def test_secrets_in_the_url_headers_and_compressed_bodies_are_found(self) -> None:
        key = secret_shapes.aws_access_key()
        cases = {
            "query": dict(path=f"/echo?aws_key={key}"),
            "header": dict(headers={"X-Debug": f"aws_access_key_id={key}"}),
            "gzip body": dict(method="POST", body=gzip.compress(f"id={key}".encode()),
                              headers={"Content-Encoding": "gzip"}),
        }
        for label, kw in cases.items():
            with self.subTest(label):
                path = kw.pop("path", "/echo")
                self.assert_blocked(self.request(self.proxy, "127.0.0.1", path, **kw), "aws-access-token")

    def test_a_chunked_body_is_scanned_too(self) -> None:
        _, body = self.bodies["github"]
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.https))
        self.assertEqual(status, 200)
        with self.proxy.client_tls().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            reply = recv_all(tls)
        self.assertIn(b" 403 ", reply.split(b"\r\n", 1)[0])
        self.assertIn(b"github-pat", reply)

    def test_the_placeholder_is_masked_before_the_scan(self) -> None:
        # On its own a placeholder looks like a generic API key to gitleaks; masked, it passes.
        status, body, _ = self.request(self.proxy, "127.0.0.1", "/echo", headers=BEARER)
        self.assertEqual(status, 200, body)

    def test_warn_mode_passes_and_logs_the_rule(self) -> None:
        rule, body = self.bodies["aws"]
        status, reply, _ = self.request(self.warn, "127.0.0.1", "/echo", method="POST", body=body)
        self.assertEqual(status, 200, reply)
        found = self.warn.wait_for(lambda: any(e.get("kind") == "dlp" and rule in e.get("rules", [])
                                               for e in self.warn.events("warning")))
        self.assertTrue(found, self.warn.lines[-5:])


class FailClosedScanTest(DlpBase):
    """A scanner that hangs, crashes or gets too much never lets a request through, nor stalls others."""

    proxy: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        fake = cls.tmp / "fake-gitleaks"
        fake.write_text(FAKE_GITLEAKS)
        fake.chmod(0o755)
        env = {"CLAUDE_BOTTLE_GITLEAKS": str(fake), "CLAUDE_BOTTLE_DLP_TIMEOUT": "2",
               "CLAUDE_BOTTLE_DLP_MAX_BYTES": "4096"}
        cls.proxy = cls.start_proxy(cls.policy("scan"), secrets={"version": 1, "values": {"TOKEN": REAL}}, env=env)

    def test_a_scanner_failure_blocks(self) -> None:
        result = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=b"CRASH-THE-SCANNER")
        self.assert_blocked(result, "DLP scan failed: gitleaks failed (exit 1) (failing closed)")

    def test_a_slow_scan_times_out_closed_without_stalling_other_requests(self) -> None:
        results: dict[str, Any] = {}

        def slow() -> None:
            results["slow"] = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=b"SLEEP-FOR-A-WHILE")

        thread = threading.Thread(target=slow)
        started = time.monotonic()
        thread.start()
        time.sleep(0.3)
        status, _, _ = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=b"clean")
        fast = time.monotonic() - started
        thread.join(20)
        self.assertEqual(status, 200)
        self.assertLess(fast, 1.8, "a clean request waited for the slow scan")
        self.assert_blocked(results["slow"], "gitleaks timed out after 2 s")

    def test_a_body_over_the_limit_is_blocked_before_it_is_read(self) -> None:
        result = self.request(self.proxy, "127.0.0.1", "/echo", method="POST", body=b"x" * 5000)
        self.assert_blocked(result, "request body of 5000 bytes is over the 4096-byte DLP scan limit")

    def test_a_chunked_body_over_the_limit_is_blocked(self) -> None:
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.https))
        self.assertEqual(status, 200)
        with self.proxy.client_tls().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            chunks = (b"1000\r\n" + b"y" * 4096 + b"\r\n") * 2 + b"0\r\n\r\n"
            tls.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n" + chunks)
            reply = recv_all(tls)
        self.assertIn(b" 403 ", reply.split(b"\r\n", 1)[0])
        self.assertIn(b"request body of 8192 bytes is over the 4096-byte DLP scan limit", reply)


class StartupFailsClosedTest(unittest.TestCase):
    def run_mitmdump(self, policy: dict[str, Any], **kw: Any) -> Mitmdump:
        return run_until_exit(self, policy, **kw)

    POLICY = {"version": 1, "rules": [], "secrets": [{"name": "TOKEN", "placeholder": PLACEHOLDER,
                                                      "hosts": ["127.0.0.1"], "header": "authorization"}]}

    def test_missing_secret_values_stop_mitmdump(self) -> None:
        proxy = self.run_mitmdump(self.POLICY)
        self.assertNotEqual(proxy.proc.returncode, 0)
        self.assertIn("cannot load secret values", proxy.events("fatal")[0]["reason"])

    def test_a_secret_without_a_value_stops_mitmdump(self) -> None:
        proxy = self.run_mitmdump(self.POLICY, secrets={"version": 1, "values": {"OTHER": REAL}})
        self.assertIn("no usable value for TOKEN", proxy.events("fatal")[0]["reason"])
        self.assertNotIn(REAL, "\n".join(proxy.lines))

    def test_stream_large_bodies_would_bypass_the_scan_so_mitmdump_stops(self) -> None:
        proxy = self.run_mitmdump({"version": 1, "rules": []}, args=("--set", "stream_large_bodies=1m"))
        self.assertIn("stream_large_bodies", proxy.events("fatal")[0]["reason"])

    def test_missing_gitleaks_stops_mitmdump(self) -> None:
        proxy = self.run_mitmdump({"version": 1, "rules": []}, env={"CLAUDE_BOTTLE_GITLEAKS": "/nonexistent/gitleaks"})
        self.assertIn("DLP needs gitleaks", proxy.events("fatal")[0]["reason"])


if __name__ == "__main__":
    unittest.main()
