"""WebSockets and compressed request bodies through the bundle's addon, under the real mitmdump and gitleaks.

A stdlib WebSocket origin (TLS, RFC 6455 framing, fragmentation, control frames, permessage-deflate
with context takeover) records every message and ping it gets and echoes messages back; a stdlib
client speaks to it through the proxy. As in test_addon_dlp, "127.0.0.1" is the host a secret is bound to (DLP `scan`) and "localhost"
another allowed host (DLP `skip`). The bombs are made of zeros compressed piece by piece: the tests
never hold the inflated bytes, and check that mitmdump's peak memory stays far below them.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socketserver
import ssl
import struct
import threading
import time
import zlib
from typing import Any, BinaryIO, Callable

from tests.integration import secret_shapes
from tests.integration.test_addon_dlp import PLACEHOLDER, REAL, DlpBase
from tests.integration.test_addon_mitmdump import (  # noqa: F401  (setUpModule skips without the tools)
    TIMEOUT,
    Mitmdump,
    proxy_connect,
    setUpModule,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
MiB = 1 << 20


# ---------- RFC 6455 framing, both ends ----------


def xor_mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool = False) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + xor_mask(payload, key)
    return head + payload


def read_exactly(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return data


def read_frame(f: BinaryIO) -> tuple[bool, bool, int, bytes]:
    b0, b1 = read_exactly(f, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exactly(f, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exactly(f, 8))[0]
    key = read_exactly(f, 4) if b1 & 0x80 else None
    payload = read_exactly(f, n)
    return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, xor_mask(payload, key) if key else payload


def deflate_bomb(size: int) -> bytes:
    """`size` zero bytes as one permessage-deflate payload, compressed a MiB at a time (~1 KB per MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(MiB)
    out = b"".join(c.compress(zeros) for _ in range(size // MiB)) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692: the 00 00 ff ff tail is left off


def gzip_bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    return b"".join(c.compress(zeros) for _ in range(size // MiB)) + c.flush()


class Peer:
    """One end of a WebSocket: sends messages (fragmented, compressed) and reads whole ones."""

    def __init__(self, rfile: BinaryIO, write: Callable[[bytes], Any], *, client: bool, deflate: bool) -> None:
        self.rfile, self.write, self.client = rfile, write, client
        self.on_ping: Callable[[bytes], None] = lambda payload: None
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS) if deflate else None
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflate else None

    def send(self, opcode: int, payload: bytes, fragments: int = 1) -> None:
        data, rsv1 = payload, False
        if self.compressor is not None:
            data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\0\0\xff\xff")
            data, rsv1 = data[:-4], True
        self.send_frames(opcode, data, fragments, rsv1)

    def send_frames(self, opcode: int, data: bytes, fragments: int = 1, rsv1: bool = False) -> None:
        step = -(-len(data) // fragments) if data else 1
        parts = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        frames = b"".join(
            encode_frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1, rsv1=rsv1 and i == 0,
                         mask=self.client)
            for i, part in enumerate(parts)
        )
        self.write(frames)

    def close(self, code: int, reason: str = "") -> None:
        self.write(encode_frame(CLOSE, struct.pack("!H", code) + reason.encode(), mask=self.client))

    def control(self, opcode: int, payload: bytes) -> None:
        self.write(encode_frame(opcode, payload, mask=self.client))

    def recv(self) -> tuple[str, Any]:
        """("text" | "binary" | "pong", bytes), ("close", (code, reason)) or ("eof", None); pings are
        answered (and handed to on_ping)."""
        parts: list[bytes] = []
        opcode, compressed = 0, False
        try:
            while True:
                fin, rsv1, op, payload = read_frame(self.rfile)
                if op == PING:
                    self.on_ping(payload)
                    self.write(encode_frame(PONG, payload, mask=self.client))
                    continue
                if op == PONG:
                    return "pong", payload
                if op == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return "close", (code, payload[2:].decode("utf-8", "replace"))
                if op:
                    opcode, compressed = op, rsv1
                parts.append(payload)
                if fin:
                    break
        except (EOFError, OSError, ssl.SSLError):
            return "eof", None
        data = b"".join(parts)
        if compressed:
            assert self.inflater is not None
            data = self.inflater.decompress(data + b"\0\0\xff\xff")
        return ("text" if opcode == TEXT else "binary"), data


def read_head(rfile: BinaryIO) -> tuple[str, dict[str, str]]:
    first = rfile.readline().decode("latin-1").rstrip("\r\n")
    headers: dict[str, str] = {}
    while (line := rfile.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# ---------- the origin ----------


class WsOrigin(socketserver.ThreadingTCPServer):
    """Records, per connection id (the `id` query parameter), what arrived: ("text"|"binary", bytes),
    ("close", (code, reason)) or ("eof", None); echoes every message. /reflect first sends the
    Authorization header it got, as a careless server might."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ssl_ctx: ssl.SSLContext) -> None:
        self.ssl_ctx = ssl_ctx
        self.log: dict[str, list[tuple[str, Any]]] = {}
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", 0), WsHandler)

    def record(self, conn_id: str, event: tuple[str, Any]) -> None:
        with self.cond:
            self.log.setdefault(conn_id, []).append(event)
            self.cond.notify_all()

    def wait_end(self, conn_id: str, timeout: float = TIMEOUT) -> list[tuple[str, Any]]:
        """What the connection got, once it ended (a close or EOF)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(kind in ("close", "eof") for kind, _ in self.log.get(conn_id, [])):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.log.get(conn_id, []))


class WsHandler(socketserver.BaseRequestHandler):
    server: WsOrigin

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        try:
            with self.server.ssl_ctx.wrap_socket(self.request, server_side=True) as tls:
                self.serve(tls)
        except (OSError, ssl.SSLError, EOFError):
            pass

    def serve(self, tls: ssl.SSLSocket) -> None:
        rfile = tls.makefile("rb")
        first, headers = read_head(rfile)
        if not first:  # the proxy connected, then refused the handshake
            return
        path, _, query = first.split(" ")[1].partition("?")
        conn_id = dict(p.partition("=")[::2] for p in query.split("&") if p).get("id", "")
        deflate = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        tls.sendall((
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(headers['sec-websocket-key'])}\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else "") + "\r\n"
        ).encode())
        peer = Peer(rfile, tls.sendall, client=False, deflate=deflate)
        peer.on_ping = lambda payload: self.server.record(conn_id, ("ping", payload))
        if path == "/reflect":
            peer.send(TEXT, f"you sent {headers.get('authorization', '')}".encode())
        while True:
            kind, data = peer.recv()
            self.server.record(conn_id, (kind, data))
            if kind == "eof":
                return
            if kind == "close":
                peer.close(data[0])
                return
            if kind == "pong":
                continue
            peer.send(TEXT if kind == "text" else BINARY, data)


class WsClient:
    """A WebSocket client through the proxy's CONNECT; `status` is 101 or the refusal's, with its body."""

    def __init__(self, proxy: Mitmdump, host: str, port: int, path: str, *, deflate: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        status, body, raw = proxy_connect(proxy.port, host, port)
        assert status == 200, (status, body)
        self.sock = proxy.client_tls().wrap_socket(raw, server_hostname=host)
        self.rfile = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        first, self.headers = read_head(self.rfile)
        self.status = int(first.split(" ")[1])
        self.body = b""
        if self.status != 101:
            self.body = self.rfile.read(int(self.headers.get("content-length", "0")))
            return
        assert self.headers["sec-websocket-accept"] == accept_for(key)
        accepted = "permessage-deflate" in self.headers.get("sec-websocket-extensions", "")
        self.peer = Peer(self.rfile, self.sock.sendall, client=True, deflate=accepted)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def peak_memory(proxy: Mitmdump) -> int:
    """mitmdump's peak resident memory so far, in bytes (VmHWM)."""
    with open(f"/proc/{proxy.proc.pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# ---------- the tests ----------


class WebSocketBase(DlpBase):
    ws: WsOrigin
    proxy: Mitmdump  # 127.0.0.1: scan, localhost: skip

    @classmethod
    def setUpProxies(cls) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cls.tmp / "server.pem", cls.tmp / "server.key")
        cls.ws = cls.start_server(WsOrigin(ctx))
        cls.proxy = cls.start_proxy(cls.ws_policy("scan", [{"host": "localhost", "wildcard": False, "mode": "skip"}]),
                                    secrets={"version": 1, "values": {"TOKEN": REAL}})

    @classmethod
    def ws_policy(cls, default: str, hosts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        policy = cls.policy(default, hosts)
        for rule in policy["rules"]:
            rule["ports"].append(cls.port(cls.ws))
        return policy

    def connect(self, proxy: Mitmdump | None = None, host: str = "127.0.0.1", path: str = "/echo", **kw: Any
                ) -> tuple[WsClient, str]:
        conn_id = os.urandom(8).hex()
        client = WsClient(proxy or self.proxy, host, self.port(self.ws), f"{path}?id={conn_id}", **kw)
        self.addCleanup(client.close)
        return client, conn_id

    def assert_closed(self, client: WsClient, code: int, *fragments: str) -> None:
        kind, data = client.peer.recv()
        self.assertEqual(kind, "close", data)
        self.assertEqual(data[0], code, data)
        self.assertTrue(data[1].startswith("claude-bottle: blocked: "), data)
        for fragment in fragments:
            self.assertIn(fragment, data[1])
        self.assertEqual(client.peer.recv()[0], "eof")

    def blocked(self, proxy: Mitmdump, kind: str) -> list[dict[str, Any]]:
        return [e for e in proxy.events("blocked") if e.get("kind") == kind and e.get("scheme") == "wss"]


class WebSocketScanTest(WebSocketBase):
    def tearDown(self) -> None:
        self.assert_no_real_value_logged(self.proxy)

    def test_handshakes_to_a_scanned_host_pass_whatever_their_random_key(self) -> None:
        for _ in range(8):  # each key is random; before, each looked like a generic API key to gitleaks
            client, _ = self.connect()
            self.assertEqual(client.status, 101, client.body)
            client.close()

    def test_a_key_that_is_not_rfc_shaped_is_still_scanned(self) -> None:
        # A Sec-WebSocket-Key carrying a token is not 16 bytes of base64: scanned like any header.
        token = secret_shapes.github_token()
        conn_id = os.urandom(8).hex()
        status, _, raw = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.ws))
        self.assertEqual(status, 200)
        with self.proxy.client_tls().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET /echo?id={conn_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {token}\r\nSec-WebSocket-Version: 13\r\n"
                        "\r\n".encode())
            first, _ = read_head(tls.makefile("rb"))
        self.assertIn(" 403 ", first)

    def test_clean_text_and_binary_messages_pass_both_ways(self) -> None:
        client, conn_id = self.connect()
        self.assertEqual(client.status, 101, client.body)
        payloads = [(TEXT, "def f():\n    return 1\n".encode() * 50), (BINARY, bytes(range(256)) * 4),
                    (TEXT, json.dumps({"id": "4f1c6c1e-8e0a-4b1e-9f59-0d2b7e0c9a11"}).encode())]
        for opcode, payload in payloads:
            client.peer.send(opcode, payload)
            self.assertEqual(client.peer.recv(), ("text" if opcode == TEXT else "binary", payload))
        client.peer.close(1000)
        self.assertEqual(client.peer.recv()[0], "close")
        got = self.ws.wait_end(conn_id)
        self.assertEqual([d for k, d in got if k in ("text", "binary")], [p for _, p in payloads])

    def test_a_secret_in_a_text_message_closes_the_websocket(self) -> None:
        client, conn_id = self.connect()
        token = secret_shapes.github_token()
        client.peer.send(TEXT, json.dumps({"type": "auth", "note": f"token={token}"}).encode())
        self.assert_closed(client, 1008, "secret detected by gitleaks", "github-pat")
        got = self.ws.wait_end(conn_id)
        self.assertEqual(got[-1][0], "close")
        self.assertEqual(got[-1][1][0], 1008)
        self.assertFalse(any(token.encode() in (d if isinstance(d, bytes) else b"") for _, d in got))
        self.assertTrue(self.proxy.wait_for(lambda: any(
            "github-pat" in e.get("rules", []) and "WebSocket text message" in e["reason"]
            for e in self.blocked(self.proxy, "dlp"))))
        self.assertTrue(all(token not in line for line in self.proxy.lines))

    def test_a_secret_split_across_fragments_is_found(self) -> None:
        client, conn_id = self.connect()
        token = secret_shapes.github_token()
        client.peer.send(TEXT, f"deploy token={token} for ci".encode(), fragments=6)
        self.assert_closed(client, 1008, "github-pat")
        self.assertFalse(any(k == "text" for k, _ in self.ws.wait_end(conn_id)))

    def test_a_secret_in_a_binary_message_is_found(self) -> None:
        client, _ = self.connect()
        client.peer.send(BINARY, b"\x00\x01\xff" + f"aws_access_key_id={secret_shapes.aws_access_key()}".encode())
        self.assert_closed(client, 1008, "aws-access-token", "binary message")

    def test_permessage_deflate_is_decompressed_for_the_scan(self) -> None:
        client, conn_id = self.connect(deflate=True)
        self.assertIn("permessage-deflate", client.headers.get("sec-websocket-extensions", ""))
        clean = b'{"messages": ["hello", "world"]}' * 40
        client.peer.send(TEXT, clean)
        self.assertEqual(client.peer.recv(), ("text", clean))
        token = secret_shapes.github_token()
        client.peer.send(TEXT, f"token={token}".encode() * 3, fragments=3)  # compressed, then fragmented
        self.assert_closed(client, 1008, "github-pat")
        got = self.ws.wait_end(conn_id)
        self.assertEqual([d for k, d in got if k == "text"], [clean])

    def test_message_order_is_kept_and_nothing_after_a_refusal_passes(self) -> None:
        client, conn_id = self.connect()
        clean = [f"message {i}: {'x' * i}".encode() for i in range(12)]
        token = secret_shapes.github_token()
        after = [b"after 1", b"after 2"]
        for payload in clean:
            client.peer.send(TEXT, payload)  # all sent before any echo is read
        client.peer.send(TEXT, f"token={token}".encode())
        for payload in after:
            client.peer.send(TEXT, payload)
        got = self.ws.wait_end(conn_id)
        self.assertEqual([d for k, d in got if k == "text"], clean)  # in order, and none after the secret
        self.assertEqual(got[-1], ("close", (1008, "policy violation")))
        echoes = []
        while (reply := client.peer.recv())[0] == "text":
            echoes.append(reply[1])
        # Echoes still on their way back when the proxy closed are cut: the ones that came are in order.
        self.assertEqual(echoes, clean[: len(echoes)])
        self.assertEqual(reply[0], "close")
        self.assertEqual(reply[1][0], 1008)

    def test_a_placeholder_in_a_message_is_refused_even_to_its_own_host(self) -> None:
        for host in ("127.0.0.1", "localhost"):
            with self.subTest(host):
                client, conn_id = self.connect(host=host)
                client.peer.send(TEXT, json.dumps({"key": PLACEHOLDER}).encode())
                self.assert_closed(client, 1008, "placeholder for secret TOKEN")
                self.assertFalse(any(k == "text" for k, _ in self.ws.wait_end(conn_id)))
        self.assertTrue(self.proxy.wait_for(lambda: any(e.get("secret") == "TOKEN"
                                                        for e in self.blocked(self.proxy, "placeholder"))))

    def test_ping_and_pong_payloads_are_checked_too(self) -> None:
        client, conn_id = self.connect()
        client.peer.control(PING, b"keepalive \x01\x02")
        self.assertEqual(client.peer.recv(), ("pong", b"keepalive \x01\x02"))
        client.peer.control(PING, b"")
        self.assertEqual(client.peer.recv(), ("pong", b""))
        token = secret_shapes.github_token()
        client.peer.control(PING, f"token={token}".encode())
        self.assert_closed(client, 1008, "WebSocket ping: secret detected by gitleaks", "github-pat")
        got = self.ws.wait_end(conn_id)
        self.assertEqual([d for k, d in got if k == "ping"], [b"keepalive \x01\x02", b""])
        cases = [("127.0.0.1", f"token={token}", "WebSocket pong: secret detected"),
                 ("localhost", PLACEHOLDER, "WebSocket pong: placeholder for secret TOKEN")]
        for host, payload, fragment in cases:
            with self.subTest(host):
                client, conn_id = self.connect(host=host)
                client.peer.control(PONG, payload.encode())  # unsolicited, which RFC 6455 allows
                self.assert_closed(client, 1008, fragment)
                self.assertEqual(self.ws.wait_end(conn_id)[-1], ("close", (1008, "policy violation")))

    def test_the_reason_of_a_client_close_reaches_only_a_skip_host(self) -> None:
        reason = f"token={secret_shapes.github_token()}"
        for host, expected in (("127.0.0.1", ""), ("localhost", reason)):
            with self.subTest(host):
                client, conn_id = self.connect(host=host)
                client.peer.close(4000, reason)
                self.assertEqual(client.peer.recv()[0], "close")
                self.assertEqual(self.ws.wait_end(conn_id)[-1], ("close", (4000, expected)))

    def test_a_skip_host_gets_every_message(self) -> None:
        client, _ = self.connect(host="localhost")
        payload = f"token={secret_shapes.github_token()}".encode()
        client.peer.send(TEXT, payload)
        self.assertEqual(client.peer.recv(), ("text", payload))

    def test_the_handshake_credential_is_injected_and_scrubbed_from_server_messages(self) -> None:
        client, _ = self.connect(path="/reflect", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
        self.assertEqual(client.status, 101, client.body)
        self.assertEqual(client.peer.recv(), ("text", f"you sent Bearer {PLACEHOLDER}".encode()))
        self.assertTrue(self.proxy.wait_for(lambda: any(e.get("secret") == "TOKEN"
                                                        for e in self.proxy.events("injected"))))

    def test_a_message_over_the_scan_limit_fails_closed(self) -> None:
        client, conn_id = self.connect()
        client.peer.send(BINARY, os.urandom(4 * MiB + 10), fragments=3)
        self.assert_closed(client, 1009, "over the 4194304-byte DLP scan limit")
        self.assertFalse(any(k == "binary" for k, _ in self.ws.wait_end(conn_id)))

    def test_a_deflate_bomb_is_cut_off_in_bounded_memory(self) -> None:
        bomb = deflate_bomb(256 * MiB)  # ~256 KB on the wire
        for host, fragment in (("127.0.0.1", "DLP scan limit"), ("localhost", "67108864-byte message limit")):
            with self.subTest(host):
                before = peak_memory(self.proxy)
                client, conn_id = self.connect(host=host, deflate=True)
                started = time.monotonic()
                client.peer.send_frames(BINARY, bomb, fragments=4, rsv1=True)
                self.assert_closed(client, 1009, fragment)
                self.assertLess(time.monotonic() - started, 10)
                self.assertFalse(any(k == "binary" for k, _ in self.ws.wait_end(conn_id)))
                self.assertLess(peak_memory(self.proxy) - before, 120 * MiB)
        client, _ = self.connect()
        client.peer.send(TEXT, b"still here")
        self.assertEqual(client.peer.recv(), ("text", b"still here"))


class WebSocketWarnTest(WebSocketBase):
    warn: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        super().setUpProxies()
        cls.warn = cls.start_proxy(cls.ws_policy("warn"), secrets={"version": 1, "values": {"TOKEN": REAL}})

    def test_warn_mode_passes_and_logs_the_rule(self) -> None:
        client, _ = self.connect(self.warn)
        payload = f"token={secret_shapes.github_token()}".encode()
        client.peer.send(TEXT, payload)
        self.assertEqual(client.peer.recv(), ("text", payload))
        self.assertTrue(self.warn.wait_for(lambda: any(
            e.get("kind") == "dlp" and "github-pat" in e.get("rules", []) and e.get("scheme") == "wss"
            for e in self.warn.events("warning"))), self.warn.lines[-5:])
        self.assertFalse(self.warn.events("blocked"))


class CompressedBodyTest(WebSocketBase):
    """Request bodies under Content-Encoding: decoded within the scan limit, whatever they inflate to."""

    warn: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        super().setUpProxies()
        cls.warn = cls.start_proxy(cls.ws_policy("warn"), secrets={"version": 1, "values": {"TOKEN": REAL}})
        cls.bomb = gzip_bomb(200 * MiB)  # ~200 KB

    def post(self, proxy: Mitmdump, host: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
        started = time.monotonic()
        status, reply, _ = self.request(proxy, host, "/echo", method="POST", body=body, headers=headers)
        return status, reply, time.monotonic() - started

    def test_a_gzip_bomb_is_refused_in_bounded_time_and_memory(self) -> None:
        before = peak_memory(self.proxy)
        status, reply, took = self.post(self.proxy, "127.0.0.1", self.bomb, {"Content-Encoding": "gzip"})
        self.assertEqual(status, 403, reply)
        self.assertIn(b"request body is over the 4194304-byte DLP scan limit after decoding its Content-Encoding "
                      b"(failing closed)", reply)
        self.assertLess(took, 5)
        self.assertLess(peak_memory(self.proxy) - before, 60 * MiB)
        self.assertTrue(self.proxy.wait_for(lambda: any(
            "after decoding" in e["reason"] for e in self.proxy.events("blocked") if e.get("kind") == "dlp_error")))

    def test_a_gzip_bomb_to_a_skip_or_warn_host_passes_as_sent_without_inflating(self) -> None:
        for proxy, host in ((self.proxy, "localhost"), (self.warn, "127.0.0.1")):
            with self.subTest(host):
                before = peak_memory(proxy)
                status, reply, took = self.post(proxy, host, self.bomb, {"Content-Encoding": "gzip"})
                self.assertEqual(status, 200, reply)
                self.assertEqual(json.loads(reply)["body"], hashlib.sha256(self.bomb).hexdigest())
                self.assertLess(took, 5)
                self.assertLess(peak_memory(proxy) - before, 60 * MiB)
        self.assertTrue(self.warn.wait_for(lambda: any(
            "after decoding its Content-Encoding: not scanned" in e["reason"] for e in self.warn.events("warning"))))

    def test_raw_gzip_without_content_encoding_neither_crashes_nor_inflates(self) -> None:
        before = peak_memory(self.proxy)
        status, reply, took = self.post(self.proxy, "127.0.0.1", self.bomb, {"Content-Type": "application/gzip"})
        self.assertIn(status, (200, 403), reply)  # passed, or refused by a detector that reads gzip itself
        self.assertLess(took, 10)
        self.assertLess(peak_memory(self.proxy) - before, 300 * MiB)
        self.assertEqual(self.request(self.proxy, "127.0.0.1", "/echo")[0], 200)

    def test_codings_without_a_bounded_stdlib_decoder_fail_closed(self) -> None:
        for coding in ("br", "zstd"):
            with self.subTest(coding):
                body = b"\x0b\x02\x80hello\x03"  # "hello", as brotli
                status, reply, _ = self.post(self.proxy, "127.0.0.1", body, {"Content-Encoding": coding})
                self.assertEqual(status, 403, reply)
                self.assertIn(f"{coding} cannot be decoded within a size bound".encode(), reply)

    def test_stacked_codings_and_bytes_after_the_gzip_end_are_scanned(self) -> None:
        key = secret_shapes.aws_access_key()
        cases = {
            "gzip, gzip": (zlib_gzip(zlib_gzip(f"id={key}".encode())), "gzip, gzip"),
            "trailing bytes": (zlib_gzip(b"hello") + f"\nid={key}".encode(), "gzip"),
            "deflate": (zlib.compress(f"id={key}".encode()), "deflate"),
        }
        for label, (body, coding) in cases.items():
            with self.subTest(label):
                status, reply, _ = self.post(self.proxy, "127.0.0.1", body, {"Content-Encoding": coding})
                self.assertEqual(status, 403, reply)
                self.assertIn(b"aws-access-token", reply)
        status, reply, _ = self.post(self.proxy, "127.0.0.1", zlib_gzip(b"clean " * 1000), {"Content-Encoding": "gzip"})
        self.assertEqual(status, 200, reply)

    def test_a_value_split_across_two_headers_of_one_name_is_found(self) -> None:
        token = secret_shapes.github_token()
        status, _, raw = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.https))
        self.assertEqual(status, 200)
        with self.proxy.client_tls().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            conn = http.client.HTTPConnection("127.0.0.1")
            conn.sock = tls
            conn.putrequest("GET", "/echo")
            conn.putheader("X-Note", token[:18])
            conn.putheader("X-Note", token[18:])
            conn.endheaders()
            resp = conn.getresponse()
            self.assertEqual(resp.status, 403)
            self.assertIn(b"github-pat", resp.read())


def zlib_gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


if __name__ == "__main__":
    import unittest

    unittest.main()
