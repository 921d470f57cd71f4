"""What the bundle addon lets back to the agent from a secret's host, under the real mitmdump.

A hostile origin (stdlib, HTTPS on loopback, raw bytes on the wire) plays the attacks of a bottle
against an upstream of its own: echoing the injected credential in every form and place the addon
might miss (a Basic token, a status line, a header name, a trailer, a compressed stream, a stream the
scrubber holds back), and replies mitmproxy 8.1.1 mishandles on its own (trailers, 103 Early Hints).
"127.0.0.1" is the host the secret is bound to; "localhost" (same origin) is allowed but unbound.
Skipped like test_addon_mitmdump when mitmdump, openssl or gitleaks is missing, unless
CLAUDE_BOTTLE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.integration.test_addon_mitmdump import (  # noqa: F401  (setUpModule skips without the tools)
    MITM_PYTHON,
    TIMEOUT,
    AddonTestBase,
    Mitmdump,
    TLSOrigin,
    setUpModule,
)

PLACEHOLDER = "claude-bottle-placeholder-TOKEN-" + "0123456789abcdef" * 2
REAL = "real-" + hashlib.sha256(str(time.time()).encode()).hexdigest()  # never on any argv or in any log
USER = "x-access-token"
BEARER = {"Authorization": f"Bearer {PLACEHOLDER}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PLACEHOLDER}".encode()).decode()}
REAL_BASIC = base64.b64encode(f"{USER}:{REAL}".encode())  # the token the addon sends, and a server echoes
# The forms of the real value a client could read: raw, and the exact injected Basic token.
LEAKS = (REAL.encode(), REAL_BASIC)

SIGNALS: dict[str, threading.Event] = {}  # token -> set by the client once it has the first part
ORDER: dict[str, bool] = {}  # token -> True when the client had the first part before the rest was sent


def compressor(coding: str) -> Any:
    if coding == "gzip":
        return zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return zlib.compressobj(wbits=zlib.MAX_WBITS if coding == "deflate" else -zlib.MAX_WBITS)


class Hostile(BaseHTTPRequestHandler):
    """Writes its replies byte by byte; the query carries options (coding, token)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.opts = dict(urllib.parse.parse_qsl(query))
        self.auth = self.headers.get("authorization", "").encode("latin-1")
        self.token = self.auth.split(b" ", 1)[-1]  # what follows "Bearer " or "Basic "
        self.close_connection = True
        getattr(self, "r_" + path.strip("/").replace("-", "_"))()
        self.wfile.flush()

    # ----- helpers -----

    def head(self, status: str | bytes, *headers: str | bytes) -> None:
        lines = [b"HTTP/1.1 " + status if isinstance(status, bytes) else f"HTTP/1.1 {status}".encode("latin-1")]
        lines += [h.encode("latin-1") if isinstance(h, str) else h for h in headers]
        self.wfile.write(b"\r\n".join(lines) + b"\r\n\r\n")
        self.wfile.flush()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunks(self, trailers: bytes = b"") -> None:
        self.wfile.write(b"0\r\n" + trailers + b"\r\n")

    def wait_for_client(self) -> None:
        token = self.opts["run"]
        # A buffering proxy holds the first part back, so the client can't signal until we give up.
        ORDER[token] = SIGNALS[token].wait(5)
        time.sleep(0.1)

    # ----- echoes -----

    def r_echo(self) -> None:
        """The credential as it arrived: in the body (alone, and inside JSON) and in a header."""
        quoted = json.dumps({"headers": {"authorization": self.auth.decode()}}).encode()
        body = b"you sent " + self.auth + b"\n" + quoted
        self.head("200 OK", "Content-Type: text/plain", f"Content-Length: {len(body)}", b"X-Echo: " + self.auth)
        self.wfile.write(body)

    def r_echo_base64(self) -> None:
        """A debug dump, base64-encoded, with the credential at each of base64's three alignments."""
        lines = [base64.b64encode(b"#" * k + b'{"authorization": "' + self.auth + b'"}') for k in range(3)]
        body = b"\n".join(lines) + b"\n"
        self.head("200 OK", "Content-Type: text/plain", f"Content-Length: {len(body)}")
        self.wfile.write(body)

    def r_sse_echo(self) -> None:
        self.head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked")
        line = b"data: you sent " + self.auth
        self.chunk(line[:30])
        time.sleep(0.3)  # the credential split across two chunks
        self.chunk(line[30:] + b"\n\ndata: end\n\n")
        self.end_chunks()

    def r_status_and_names(self) -> None:
        """The token in the reason phrase and in a header's name, not its value."""
        self.head(b"200 you sent " + self.token, b"X-" + self.token + b": yes", "Content-Type: text/plain",
                  "Content-Length: 2")
        self.wfile.write(b"ok")

    def r_status_and_names_sse(self) -> None:
        self.head(b"200 you sent " + self.token, b"X-" + self.token + b": yes", "Content-Type: text/event-stream",
                  "Transfer-Encoding: chunked")
        self.chunk(b"data: ok\n\n")
        self.end_chunks()

    # ----- compressed, whatever accept-encoding says -----

    def r_gzip_big(self) -> None:
        """Over 1 MiB compressed (so mitmproxy streams it), echoing at both ends, in two parts."""
        filler = os.urandom(1 << 19).hex().encode()  # 1 MiB of hex, about 600 KiB compressed...
        plain = b"you sent " + self.auth + b"\n" + filler + os.urandom(1 << 19) + b"\nyou sent " + self.auth + b"\n"
        body = gzip.compress(plain)  # ...plus 512 KiB that won't compress: over 1 MiB in all
        assert len(body) > 1 << 20
        self.head("200 OK", "Content-Type: application/octet-stream", "Content-Encoding: gzip",
                  f"Content-Length: {len(body)}", f"X-Plain-Sha256: {hashlib.sha256(plain).hexdigest()}")
        half = len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        self.wait_for_client()
        self.wfile.write(body[half:])

    def r_compressed_sse(self) -> None:
        """Events compressed as they go (sync-flushed, so each one can be inflated on arrival)."""
        coding = self.opts.get("coding", "gzip")
        comp = compressor(coding)
        name = "deflate" if coding == "rawdeflate" else coding
        self.head("200 OK", "Content-Type: text/event-stream", f"Content-Encoding: {name}",
                  "Transfer-Encoding: chunked")
        self.chunk(comp.compress(b"data: you sent " + self.auth + b"\n\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        self.wait_for_client()
        if self.opts.get("corrupt"):
            self.chunk(b"\xff" * 64)  # not deflate data
            time.sleep(0.3)
        self.chunk(comp.compress(b"data: end " + self.auth + b"\n\n") + comp.flush())
        self.end_chunks()

    def r_undecodable(self) -> None:
        """A coding the stdlib cannot undo (the bytes themselves don't matter: no one may read them)."""
        coding, sse = self.opts["coding"], self.opts.get("sse")
        body = b"SERVER-BYTES " + self.token
        if sse:
            self.head("200 OK", "Content-Type: text/event-stream", f"Content-Encoding: {coding}",
                      "Transfer-Encoding: chunked")
            self.chunk(body)
            time.sleep(0.2)
            self.chunk(body)
            self.end_chunks()
        else:
            self.head("200 OK", "Content-Type: text/plain", f"Content-Encoding: {coding}",
                      f"Content-Length: {len(body)}")
            self.wfile.write(body)

    # ----- streams the scrubber holds back -----

    def r_big_tail(self) -> None:
        """Over 1 MiB, uncompressed, ending in what could be the start of the credential."""
        body = b"x" * (1 << 20) + b" you sent " + self.auth + b" " + self.token[:5]
        self.head("200 OK", "Content-Type: application/octet-stream", f"Content-Length: {len(body)}")
        self.wfile.write(body[: 1 << 19])
        self.wfile.flush()
        time.sleep(0.2)
        self.wfile.write(body[1 << 19 :])

    def r_held_sse(self) -> None:
        """A chunk that is nothing but the start of the credential: all of it must wait, and then go."""
        self.head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked")
        self.chunk(b"data: 1\n\n")
        time.sleep(0.2)
        self.chunk(self.token[:12])
        time.sleep(0.2)
        self.chunk(self.token[12:] + b"\n\ndata: end\n\n")
        self.end_chunks()

    # ----- what mitmproxy 8.1.1 mishandles -----

    def r_trailers(self) -> None:
        sse = self.opts.get("sse")
        self.head("200 OK", f"Content-Type: {'text/event-stream' if sse else 'text/plain'}",
                  "Transfer-Encoding: chunked", "Trailer: X-Echo")
        self.chunk(b"data: body\n\n")
        self.end_chunks(b"X-Echo: " + self.auth + b"\r\nX-" + self.token + b": yes\r\n")

    def r_early_hints(self) -> None:
        body = b"final " + self.auth
        hints = [b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"]
        if self.opts.get("many"):
            hints = [b"HTTP/1.1 100 Continue\r\n\r\n", hints[0], b"HTTP/1.1 102 Processing\r\n\r\n", hints[0]]
        for hint in hints:
            self.wfile.write(hint)
            self.wfile.flush()
            time.sleep(0.1)  # each in its own read
        self.head("200 OK", "Content-Type: text/plain", f"Content-Length: {len(body)}")
        self.wfile.write(body)


class QuietOrigin(TLSOrigin):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # the proxy hanging up on a refused reply is expected
            super().handle_error(request, client_address)


def lenient_b64decode(text: bytes) -> bytes:
    text = text.strip()
    text = text[: len(text) - (len(text) % 4 == 1)]
    return base64.b64decode(text + b"=" * (-len(text) % 4))


def policy(ports: list[int], hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Any]:
    return {
        "version": 1,
        "rules": [{"host": h, "wildcard": False, "ports": ports} for h in hosts],
        "ssrf_allow": ["127.0.0.0/8"],
        "upstream": None,
        "secrets": [{"name": "TOKEN", "placeholder": PLACEHOLDER, "hosts": ["127.0.0.1"], "header": "authorization"}],
        "dlp": {"default": "scan", "hosts": [{"host": "localhost", "wildcard": False, "mode": "skip"}]},
    }


class ResponseTest(AddonTestBase):
    proxy: Mitmdump
    hostile: TLSOrigin

    @classmethod
    def setUpProxies(cls) -> None:
        hostile = QuietOrigin(("127.0.0.1", 0), Hostile)
        hostile.ssl_ctx = cls.https.ssl_ctx  # the same test CA and certificate
        cls.hostile = cls.start_server(hostile)
        cls.proxy = cls.start_proxy(policy([cls.port(hostile)]), secrets={"version": 1, "values": {"TOKEN": REAL}})

    def tearDown(self) -> None:
        for line in self.proxy.lines:
            self.assertNotIn(REAL, line)

    def connect(self, host: str = "127.0.0.1") -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=TIMEOUT,
                                           context=self.proxy.client_tls())
        conn.set_tunnel(host, self.port(self.hostile))
        return conn

    def fetch(self, path: str, headers: dict[str, str] = BEARER, host: str = "127.0.0.1"
              ) -> tuple[http.client.HTTPResponse, bytes]:
        conn = self.connect(host)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()

    def assert_no_leak(self, resp: http.client.HTTPResponse, body: bytes) -> None:
        head = f"{resp.status} {resp.reason}\n".encode("latin-1") + b"".join(
            f"{k}: {v}\n".encode("latin-1") for k, v in resp.getheaders())
        for leak in LEAKS:
            self.assertNotIn(leak, head)
            self.assertNotIn(leak, body)

    def signal(self) -> str:
        token = uuid.uuid4().hex
        SIGNALS[token] = threading.Event()
        return token

    @staticmethod
    def read_until(resp: http.client.HTTPResponse, marker: bytes) -> bytes:
        got = b""
        while marker not in got:
            data = resp.read1(65536)
            if not data:
                break
            got += data
        return got

    def blocked(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.proxy.events("blocked") if e.get("kind") == kind]

    # ---------- hole 1: the Basic form the addon itself injects ----------

    def test_an_echoed_basic_credential_comes_back_as_the_agent_sent_it(self) -> None:
        resp, body = self.fetch("/echo", BASIC)
        self.assertEqual(resp.status, 200, body)
        self.assert_no_leak(resp, body)
        self.assertEqual(resp.getheader("x-echo"), BASIC["Authorization"])
        self.assertTrue(body.startswith(f"you sent {BASIC['Authorization']}\n".encode()), body[:200])
        self.assertEqual(json.loads(body.split(b"\n", 1)[1])["headers"]["authorization"], BASIC["Authorization"])

    def test_an_echoed_basic_credential_split_across_streamed_chunks_is_scrubbed(self) -> None:
        resp, body = self.fetch("/sse-echo", BASIC)
        self.assert_no_leak(resp, body)
        self.assertEqual(body, f"data: you sent {BASIC['Authorization']}\n\ndata: end\n\n".encode())

    def test_the_value_base64_encoded_inside_a_longer_echo_is_scrubbed_at_every_alignment(self) -> None:
        resp, body = self.fetch("/echo-base64", BEARER)
        self.assertEqual(resp.status, 200, body)
        lines = body.split()
        self.assertEqual(len(lines), 3)
        for line in lines:
            self.assertNotIn(REAL.encode(), lenient_b64decode(line))

    # ---------- hole 2: compressed replies, streamed ----------

    def test_a_big_gzip_reply_is_inflated_scrubbed_and_still_streamed(self) -> None:
        token = self.signal()
        conn = self.connect()
        try:
            conn.request("GET", f"/gzip-big?run={token}", headers=BEARER)
            resp = conn.getresponse()
            first = self.read_until(resp, b"\n")  # the first line is the echo
            SIGNALS[token].set()
            body = first + resp.read()
        finally:
            conn.close()
        self.assertEqual(resp.status, 200)
        if resp.getheader("content-encoding") == "gzip":  # what the agent's client would inflate
            body = gzip.decompress(body)
        self.assert_no_leak(resp, body)
        self.assertIsNone(resp.getheader("content-encoding"))
        self.assertTrue(ORDER.get(token), "the proxy held the first part back until the rest was sent")
        self.assertTrue(body.startswith(f"you sent Bearer {PLACEHOLDER}\n".encode()), body[:100])
        self.assertTrue(body.endswith(f"\nyou sent Bearer {PLACEHOLDER}\n".encode()), body[-100:])
        plain = body.replace(PLACEHOLDER.encode(), REAL.encode())  # undo the scrub: the server's exact bytes
        self.assertEqual(hashlib.sha256(plain).hexdigest(), resp.getheader("x-plain-sha256"))

    def test_compressed_event_streams_are_inflated_event_by_event(self) -> None:
        for coding in ("gzip", "deflate", "rawdeflate"):
            with self.subTest(coding):
                token = self.signal()
                conn = self.connect()
                try:
                    conn.request("GET", f"/compressed-sse?coding={coding}&run={token}", headers=BEARER)
                    resp = conn.getresponse()
                    first = self.read_until(resp, b"\n\n")
                    SIGNALS[token].set()
                    body = first + resp.read()
                finally:
                    conn.close()
                if resp.getheader("content-encoding"):
                    body = zlib.decompressobj(wbits=47 if coding != "rawdeflate" else -15).decompress(body)
                self.assert_no_leak(resp, body)
                self.assertIsNone(resp.getheader("content-encoding"))
                self.assertTrue(ORDER.get(token), "an event waited for the next one")
                self.assertEqual(body, f"data: you sent Bearer {PLACEHOLDER}\n\ndata: end Bearer {PLACEHOLDER}\n\n"
                                 .encode())

    def test_an_encoding_the_proxy_cannot_decode_fails_closed(self) -> None:
        for coding in ("br", "zstd", "x-unknown", "gzip, br"):
            for sse in ("", "1"):
                with self.subTest(coding=coding, streamed=bool(sse)):
                    path = f"/undecodable?coding={urllib.parse.quote(coding)}&sse={sse}"
                    resp, body = self.fetch(path)
                    self.assertEqual(resp.status, 502, body[:200])
                    self.assertNotIn(b"SERVER-BYTES", body)
                    self.assertIsNone(resp.getheader("content-encoding"))
                    self.assertIn(b"claude-bottle: blocked: ", body)
                    self.assertIn(b"cannot decode", body)
        self.assertTrue(self.blocked("response"))

    def test_a_corrupt_compressed_stream_is_cut(self) -> None:
        token = self.signal()
        conn = self.connect()
        try:
            conn.request("GET", f"/compressed-sse?coding=gzip&corrupt=1&run={token}", headers=BEARER)
            resp = conn.getresponse()
            first = self.read_until(resp, b"\n\n")
            SIGNALS[token].set()
            with self.assertRaises((http.client.IncompleteRead, ConnectionError, OSError)):
                first += resp.read()
        finally:
            conn.close()
        self.assertEqual(first, f"data: you sent Bearer {PLACEHOLDER}\n\n".encode())
        self.assertTrue(self.proxy.wait_for(lambda: bool(self.blocked("response"))))

    # ---------- hole 3: the status line and header names ----------

    def test_the_value_in_a_reason_phrase_or_a_header_name_is_scrubbed(self) -> None:
        for path in ("/status-and-names", "/status-and-names-sse"):
            with self.subTest(path):
                resp, body = self.fetch(path)
                self.assertEqual(resp.status, 200)
                self.assert_no_leak(resp, body)
                self.assertEqual(resp.reason, f"you sent {PLACEHOLDER}")
                self.assertEqual(resp.getheader(f"x-{PLACEHOLDER}"), "yes")

    # ---------- hole 4: a chunk held back whole ----------

    def test_a_held_back_chunk_does_not_end_an_event_stream(self) -> None:
        resp, body = self.fetch("/held-sse")
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, f"data: 1\n\n{PLACEHOLDER}\n\ndata: end\n\n".encode())

    def test_a_held_back_tail_still_arrives_at_the_end_of_a_stream(self) -> None:
        resp, body = self.fetch("/big-tail")
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, b"x" * (1 << 20) + f" you sent Bearer {PLACEHOLDER} {REAL[:5]}".encode())

    # ---------- hole 5: trailers and informational responses ----------

    def test_response_trailers_let_the_flow_complete_and_never_leak(self) -> None:
        for host in ("127.0.0.1", "localhost"):
            for sse in ("", "1"):
                with self.subTest(host=host, streamed=bool(sse)):
                    resp, body = self.fetch(f"/trailers?sse={sse}", BEARER if host == "127.0.0.1" else {}, host)
                    self.assertEqual((resp.status, body), (200, b"data: body\n\n"))
                    self.assert_no_leak(resp, body)
                    # the proxy is still fine afterwards
                    self.assertEqual(self.fetch("/status-and-names")[0].status, 200)

    def test_early_hints_are_skipped_and_the_final_response_arrives(self) -> None:
        for host in ("127.0.0.1", "localhost"):
            for many in ("", "1"):
                with self.subTest(host=host, many=bool(many)):
                    headers = BEARER if host == "127.0.0.1" else {"Authorization": "Bearer public"}
                    resp, body = self.fetch(f"/early-hints?many={many}", headers, host)
                    self.assertEqual(resp.status, 200, body[:200])
                    self.assert_no_leak(resp, body)
                    self.assertEqual(body, b"final " + headers["Authorization"].encode())


# ---------- HTTP/2: trailers go on to the agent, so they are scrubbed ----------

H2_SERVER = r"""
import socket, ssl, sys, threading
import h2.config, h2.connection, h2.events

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.set_alpn_protocols(["h2"])
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)

def serve(raw):
    with ctx.wrap_socket(raw, server_side=True) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        headers = {}
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers[event.stream_id] = dict(event.headers)
                if isinstance(event, h2.events.StreamEnded):
                    request = headers.pop(event.stream_id)
                    auth, path = request.get(b"authorization", b""), request.get(b":path", b"")
                    token = auth.split(b" ", 1)[-1]
                    conn.send_headers(event.stream_id, [(b":status", b"200"), (b"content-type", b"text/plain")])
                    echo = path.endswith(b"/trailers-echo")
                    conn.send_data(event.stream_id, b"body " + auth + b"\n" if echo else b"body\n")
                    conn.send_headers(event.stream_id, [(b"x-echo", auth), (b"x-" + token.lower(), b"yes")],
                                      end_stream=True)
            sock.sendall(conn.data_to_send())

while True:
    raw, _ = listener.accept()
    raw.settimeout(10)
    threading.Thread(target=serve, args=(raw,), daemon=True).start()
"""


CURL = shutil.which("curl")


@unittest.skipUnless(MITM_PYTHON and CURL, "needs curl and the h2 library mitmproxy runs with")
class Http2TrailersTest(AddonTestBase):
    """curl speaks HTTP/2 to mitmdump, and mitmdump to an h2 origin (mitmproxy's own h2 library)."""

    proxy: Mitmdump
    h2: subprocess.Popen[bytes]
    h2_port: int

    @classmethod
    def setUpProxies(cls) -> None:
        script = cls.tmp / "h2_server.py"
        script.write_text(H2_SERVER)
        cls.h2 = subprocess.Popen([MITM_PYTHON or "python3", str(script), str(cls.tmp / "server.pem"),
                                   str(cls.tmp / "server.key")], stdout=subprocess.PIPE)
        assert cls.h2.stdout is not None
        cls.h2_port = int(cls.h2.stdout.readline())
        cls.proxy = cls.start_proxy(policy([cls.h2_port], ("127.0.0.1",)),
                                    secrets={"version": 1, "values": {"TOKEN": REAL}})

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, "h2", None) is not None:
            cls.h2.kill()
            cls.h2.wait(10)
            if cls.h2.stdout:
                cls.h2.stdout.close()
        super().tearDownClass()

    def test_http2_trailers_reach_the_agent_scrubbed(self) -> None:
        for path, body in (("/trailers", "body\n"), ("/trailers-echo", f"body Bearer {PLACEHOLDER}\n")):
            with self.subTest(path):
                out = Path(self.proxy.dir) / "curl-headers.txt"
                run = subprocess.run(
                    [CURL or "curl", "-sS", "--http2", "--max-time", "20", "--proxy",
                     f"http://127.0.0.1:{self.proxy.port}", "--cacert", str(self.proxy.ca_file),
                     "-H", f"Authorization: {BEARER['Authorization']}", "-D", str(out),
                     f"https://127.0.0.1:{self.h2_port}{path}"],
                    capture_output=True, timeout=30)
                self.assertEqual(run.returncode, 0, run.stderr)
                self.assertEqual(run.stdout, body.encode())
                head = out.read_bytes().split(b"\r\n\r\n", 1)[1]  # after the CONNECT reply
                self.assertTrue(head.startswith(b"HTTP/2 200"), head[:100])
                for leak in LEAKS:
                    self.assertNotIn(leak, head)
                # The trailers, scrubbed (a body scrubbed too must not cost them: curl stops at a length).
                self.assertIn(f"x-echo: Bearer {PLACEHOLDER}".encode(), head)
                self.assertIn(f"x-{PLACEHOLDER.lower()}: yes".encode(), head)  # h2 names are lower case
        for line in self.proxy.lines:
            self.assertNotIn(REAL, line)


if __name__ == "__main__":
    unittest.main()
