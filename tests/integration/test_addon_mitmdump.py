"""The bundle addon under the real mitmdump (Debian bookworm ships 8.1.1), all on loopback.

Small stdlib servers stand in for the internet: plain HTTP, HTTPS (a throwaway CA made with the
openssl CLI), raw TCP echo servers (one greets first like sshd, one waits for the client), a sink
that records what reaches it, and a CONNECT-only upstream proxy standing in for pipelock.
Skipped when mitmdump or openssl is missing, unless CLAUDE_BOTTLE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.tools import find_gitleaks

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "claude_bottle" / "bundle" / "addon.py"
PROXY = ROOT / "claude_bottle" / "bundle" / "proxy.py"  # the bundle's mitmdump: what the tests run
TIMEOUT = 10.0  # every socket operation; a hang is a failure, not a stuck CI job
MITMDUMP = shutil.which("mitmdump")


def mitmdump_python() -> str | None:
    """The interpreter mitmdump runs on: the one with mitmproxy (and its h2 library) to run proxy.py."""
    if MITMDUMP is None:
        return None
    with open(MITMDUMP, "rb") as handle:
        first = handle.readline()
    python = first[2:].strip().decode() if first.startswith(b"#!") else ""
    ok = python and subprocess.run([python, "-c", "import mitmproxy, h2"], capture_output=True).returncode == 0
    return python if ok else None


MITM_PYTHON = mitmdump_python()
OPENSSL = shutil.which("openssl")


GITLEAKS = find_gitleaks()  # the addon scans with the real gitleaks
REQUIRED = os.environ.get("CLAUDE_BOTTLE_REQUIRE_DOCKER") == "1"
BINARY = bytes(range(256))  # raw tunnels must carry every byte value unchanged


def setUpModule() -> None:
    missing = [name for name, path in (("mitmdump", MITM_PYTHON), ("openssl", OPENSSL), ("gitleaks", GITLEAKS))
               if path is None]
    if missing and REQUIRED:
        raise RuntimeError(f"CLAUDE_BOTTLE_REQUIRE_DOCKER=1 but {', '.join(missing)} not installed")
    if missing:
        raise unittest.SkipTest(f"{', '.join(missing)} not installed (apt-get install mitmproxy openssl; "
                                "gitleaks: .ci/build-images)")


# ---------- certificates ----------


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server cert for 127.0.0.1 / localhost signed by it."""

    def run(*args: str) -> None:
        subprocess.run([OPENSSL or "openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=claude-bottle test CA",
        "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


# ---------- origin servers ----------

# server names the HTTPS origin was asked for in ClientHellos (None: no SNI, as for an IP target)
SNIS: list[str | None] = []
# token -> set by the client once it has seen the first part of a streamed response
SIGNALS: dict[str, threading.Event] = {}
# token -> True when the server saw that signal before it sent the rest
ORDER: dict[str, bool] = {}


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited bodies: no chunking to get in the way

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path, _, token = self.path.partition("?")
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        if path.endswith("/hello"):
            body = f"hello over {scheme}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.endswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self._in_two_parts(b"data: 1\n\n", b"data: 2\n\n", token)
        elif path.endswith("/echo"):  # what arrived, as digests: a test compares, nothing is echoed
            body = self._body()
            seen = {k.lower(): hashlib.sha256(v.encode("latin-1")).hexdigest() for k, v in self.headers.items()}
            self._reply(json.dumps({"headers": seen, "body": hashlib.sha256(body).hexdigest(),
                                    "length": len(body)}).encode())
        elif path.endswith("/reflect"):  # a careless server quoting the credential it was sent
            value = self.headers.get("authorization", "")
            self._reply(f"you sent {value}".encode("latin-1"), {"X-Reflect": value})
        elif path.endswith("/sse-reflect"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            value = self.headers.get("authorization", "").encode("latin-1")
            self.wfile.write(b"data: " + value[:20])
            self.wfile.flush()
            time.sleep(0.3)  # the value split across two chunks
            self.wfile.write(value[20:] + b"\n\ndata: end\n\n")
        elif path.endswith("/big"):
            first, rest = b"a" * (1 << 20), b"b" * (1 << 20)  # content-length 2 MiB > the 1 MiB threshold
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(first) + len(rest)))
            self.end_headers()
            self._in_two_parts(first, rest, token)
        else:
            self.send_error(404)

    do_POST = do_GET

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _reply(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _in_two_parts(self, first: bytes, rest: bytes, token: str) -> None:
        self.wfile.write(first)
        self.wfile.flush()
        # A buffering proxy holds part one back, so the client can't signal until we give up.
        ORDER[token] = SIGNALS[token].wait(5)
        time.sleep(0.2)
        self.wfile.write(rest)


class TLSOrigin(ThreadingHTTPServer):
    daemon_threads = True
    ssl_ctx: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(TIMEOUT)
        with self.ssl_ctx.wrap_socket(request, server_side=True) as tls:
            self.RequestHandlerClass(tls, client_address, self)


class PlainOrigin(ThreadingHTTPServer):
    daemon_threads = True


class Recorder(socketserver.ThreadingTCPServer):
    """Raw TCP servers: echo (optionally greeting first, like sshd) or a sink that only records."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.connections = 0
        self.received = b""
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), RecorderHandler)


class RecorderHandler(socketserver.BaseRequestHandler):
    server: Recorder

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(TIMEOUT)
        with self.server.lock:
            self.server.connections += 1
        if self.server.kind == "banner":
            sock.sendall(b"SSH-2.0-BannerFirstServer\r\n")
        try:
            while data := sock.recv(65536):
                with self.server.lock:
                    self.server.received += data
                if self.server.kind != "sink":
                    sock.sendall(data)
        except OSError:
            pass


class UpstreamProxy(socketserver.ThreadingTCPServer):
    """CONNECT-only forward proxy standing in for pipelock; records the targets it was asked for, refuses
    those in `refuse` as pipelock does (403, its reason in the body) and dials before it answers 200."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.refuse: set[str] = set()
        super().__init__(("127.0.0.1", 0), UpstreamHandler)


class UpstreamHandler(socketserver.BaseRequestHandler):
    server: UpstreamProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        head, _, early = head.partition(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.targets.append(target)
        if target in self.server.refuse:
            body = b"CONNECT blocked: domain blocklisted (stand-in)\n"
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        host, _, port = target.rpartition(":")
        try:
            origin = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
        except OSError:
            body = b"tunnel dial failed\n"
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        with origin:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                origin.sendall(early)
            relay(client, origin)


def relay(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select(list(peers), [], [], 1.0)
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            peers[s].sendall(data)


def serve(server: socketserver.BaseServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    return t


# ---------- mitmdump ----------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mitmdump:
    """One mitmdump with the addon and a policy; JSON lines from stdout are collected as they come."""

    def __init__(self, workdir: Path, policy: dict[str, Any], ca: Path, mode: str = "regular",
                 secrets: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mitm-", dir=workdir))
        self.policy_file = self.dir / "policy.json"
        self.policy_file.write_text(json.dumps(policy))
        secrets_file = self.dir / "secrets.json"
        if secrets is not None:
            secrets_file.write_text(json.dumps(secrets))
            secrets_file.chmod(0o400)
        self.port = free_port()
        self.lines: list[str] = []
        self.cond = threading.Condition()
        argv = [
            MITM_PYTHON or "python3", str(PROXY), "--mode", mode, "--listen-host", "127.0.0.1", "-p", str(self.port),
            "--set", f"confdir={self.dir / 'conf'}", "--set", f"ssl_verify_upstream_trusted_ca={ca}",
            "--set", "termlog_verbosity=warn", *args, "-s", str(ADDON),
        ]
        env = {**os.environ, "CLAUDE_BOTTLE_POLICY": str(self.policy_file), "CLAUDE_BOTTLE_SECRETS": str(secrets_file),
               "CLAUDE_BOTTLE_GITLEAKS": GITLEAKS or "gitleaks", **(env or {})}
        self.stderr = open(self.dir / "stderr.txt", "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The addon's records so far. The addon logs a decision before it answers, but the line reaches
        us through a pipe and a reader thread: wait until the log has been quiet for a moment first."""
        with self.cond:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                seen = len(self.lines)
                self.cond.wait(0.03)
                if len(self.lines) == seen:
                    break
            lines = list(self.lines)
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("source") == "addon" and event in (None, rec.get("event")):
                out.append(rec)
        return out

    def wait_for(self, pred: Callable[[], bool], timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return pred()
                self.cond.wait(min(left, 0.5))
        return True

    def wait_ready(self) -> None:
        if not self.wait_for(lambda: bool(self.events("ready"))):
            self.stop()
            raise RuntimeError(f"mitmdump did not start: {self.diagnostics()}")

    def diagnostics(self) -> str:
        err = (self.dir / "stderr.txt").read_text(errors="replace")[-3000:]
        return f"rc={self.proc.poll()} stdout={self.lines[-20:]} stderr={err}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.reader.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()

    @property
    def ca_file(self) -> Path:
        return self.dir / "conf" / "mitmproxy-ca-cert.pem"

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


# ---------- client helpers (stdlib only) ----------


def proxy_connect(proxy_port: int, host: str, port: int) -> tuple[int, bytes, socket.socket]:
    """Send CONNECT by hand so a refusal's body can be read; returns (status, body, socket)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=TIMEOUT)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        # One byte at a time: a server that greets first (sshd) may send right behind the 200, and
        # those bytes belong to the tunnel, not to this response.
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    body = b""
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return status, body, sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_all(sock: socket.socket) -> bytes:
    buf = b""
    try:
        while chunk := sock.recv(65536):
            buf += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return buf


def proxied_get(proxy_port: int, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=TIMEOUT)
    try:
        conn.request("GET", url, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------- the tests ----------


class AddonTestBase(unittest.TestCase):
    tmp: Path
    ca: Path
    servers: list[socketserver.BaseServer]
    proxies: list[Mitmdump]
    http: PlainOrigin
    https: TLSOrigin
    banner: Recorder
    echo: Recorder
    sink: Recorder

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="claude-bottle-addon-"))
        cls.servers, cls.proxies = [], []
        try:
            cls.ca, cert, key = make_certs(cls.tmp)
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(cert, key)
            server_ctx.sni_callback = lambda _sock, name, _ctx: SNIS.append(name)
            cls.http = cls.start_server(PlainOrigin(("127.0.0.1", 0), Origin))
            https = TLSOrigin(("127.0.0.1", 0), Origin)
            https.ssl_ctx = server_ctx
            cls.https = cls.start_server(https)
            cls.banner = cls.start_server(Recorder("banner"))
            cls.echo = cls.start_server(Recorder("echo"))
            cls.sink = cls.start_server(Recorder("sink"))
            cls.setUpProxies()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setUpProxies(cls) -> None:
        raise NotImplementedError

    @classmethod
    def start_server(cls, server: Any) -> Any:
        cls.servers.append(server)
        serve(server)
        return server

    @classmethod
    def start_proxy(cls, policy: dict[str, Any], mode: str = "regular", **kw: Any) -> Mitmdump:
        proxy = Mitmdump(cls.tmp, policy, cls.ca, mode, **kw)
        cls.proxies.append(proxy)
        proxy.wait_ready()
        return proxy

    @classmethod
    def tearDownClass(cls) -> None:
        for proxy in cls.proxies:
            proxy.stop()
        for server in cls.servers:
            server.shutdown()
            server.server_close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def port(server: socketserver.TCPServer) -> int:
        return int(server.server_address[1])

    def https_get(self, proxy: Mitmdump, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=TIMEOUT, context=proxy.client_tls())
        try:
            conn.set_tunnel("127.0.0.1", self.port(self.https))
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def assert_streams(self, proxy: Mitmdump, tls: bool, path: str, first: bytes, second: bytes) -> None:
        token = uuid.uuid4().hex
        SIGNALS[token] = threading.Event()
        origin = self.https if tls else self.http
        port = self.port(origin)
        if tls:
            status, _, raw = proxy_connect(proxy.port, "127.0.0.1", port)
            self.assertEqual(status, 200)
            sock: socket.socket = proxy.client_tls().wrap_socket(raw, server_hostname="127.0.0.1")
            target = f"{path}?{token}"
        else:
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
            target = f"http://127.0.0.1:{port}{path}?{token}"
        with sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            got = recv_until(sock, first)
            self.assertIn(first, got, "first part never arrived")
            SIGNALS[token].set()
            got += recv_all(sock)
        self.assertTrue(ORDER.get(token), "the proxy held the first part back until the rest was sent")
        self.assertTrue(got.endswith(second))


class RegularModeTest(AddonTestBase):
    """mitmdump connects directly (no pipelock): the addon's port gate and SSRF guard both apply."""

    proxy: Mitmdump
    ssrf_proxy: Mitmdump
    web_only_proxy: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        ports = [cls.port(s) for s in (cls.http, cls.https, cls.banner, cls.echo)]
        raw = [cls.port(s) for s in (cls.banner, cls.echo)]
        cls.proxy = cls.start_proxy({
            "version": 1,
            "rules": [{"host": "127.0.0.1", "wildcard": False, "ports": ports, "raw_ports": raw}],
            "ssrf_allow": ["127.0.0.0/8"],
            "upstream": None,
        })
        # The echo port as a web rule would allow it (TLS/HTTP only): raw bytes must not pass.
        cls.web_only_proxy = cls.start_proxy({
            "version": 1,
            "rules": [{"host": "127.0.0.1", "wildcard": False, "ports": [cls.port(cls.echo)]}],
            "ssrf_allow": ["127.0.0.0/8"],
            "upstream": None,
        })
        # No ssrf_allow: loopback is named by rules, yet must stay unreachable.
        sink = cls.port(cls.sink)
        cls.ssrf_proxy = cls.start_proxy({
            "version": 1,
            "rules": [{"host": "127.0.0.1", "wildcard": False, "ports": [sink], "raw_ports": [sink]},
                      {"host": "localhost", "wildcard": False, "ports": [sink], "raw_ports": [sink]}],
            "ssrf_allow": [],
            "upstream": None,
        })

    def test_ready_line_is_json_from_the_addon(self) -> None:
        ready = self.proxy.events("ready")
        self.assertEqual(len(ready), 1)
        self.assertTrue(ready[0]["ts"].endswith("Z"))

    def test_allowed_plain_http(self) -> None:
        status, body = proxied_get(self.proxy.port, f"http://127.0.0.1:{self.port(self.http)}/hello")
        self.assertEqual((status, body), (200, b"hello over http"))
        self.assertTrue(any(e["port"] == self.port(self.http) for e in self.proxy.events("allowed")))

    def test_allowed_https_through_connect_with_upstream_verification(self) -> None:
        status, body = self.https_get(self.proxy, "/hello")
        self.assertEqual((status, body), (200, b"hello over https"))

    def test_client_sni_cannot_front_for_another_site(self) -> None:
        # The tunnel is to an allowed target, but the ClientHello names another site: the upstream
        # handshake must still name (and verify) the target, or a CDN would route by the client's SNI.
        status, _, raw = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.https))
        self.assertEqual(status, 200)
        del SNIS[:]
        with self.proxy.client_tls().wrap_socket(raw, server_hostname="fronted.example") as sock:
            sock.sendall(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{self.port(self.https)}\r\n"
                         "Connection: close\r\n\r\n".encode())
            reply = recv_all(sock)
        self.assertIn(b" 200 OK\r\n", reply.split(b"\r\n\r\n", 1)[0] + b"\r\n", reply[:200])
        self.assertTrue(reply.endswith(b"hello over https"))
        self.assertEqual(SNIS, [None])  # an IP target: no SNI at all, and never "fronted.example"

    def test_connect_to_unlisted_host_is_403(self) -> None:
        status, body, sock = proxy_connect(self.proxy.port, "blocked.example", 443)
        sock.close()
        self.assertEqual(status, 403)
        self.assertEqual(body, b"claude-bottle: blocked: host not in allowlist\n")
        self.assertTrue(any(e["host"] == "blocked.example" for e in self.proxy.events("blocked")))

    def test_plain_http_to_unlisted_host_is_403(self) -> None:
        status, body = proxied_get(self.proxy.port, "http://blocked.example/x")
        self.assertEqual((status, body), (403, b"claude-bottle: blocked: host not in allowlist\n"))

    def test_host_header_cannot_redirect_a_request(self) -> None:
        port = self.port(self.http)
        status, body = proxied_get(self.proxy.port, f"http://127.0.0.1:{port}/hello", {"Host": "blocked.example"})
        self.assertEqual(status, 403)
        self.assertIn(b"Host header does not match", body)

    def test_absolute_form_request_line_inside_a_tunnel_cannot_front(self) -> None:
        # The tunnel goes to an allowed target, but the request line names another site: refused.
        port = self.port(self.http)
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", port)
        with sock:
            self.assertEqual(status, 200)
            sock.sendall(f"GET http://evil.example/steal HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            reply = recv_all(sock)
        self.assertTrue(reply.startswith(b"HTTP/1.1 403"), reply[:200])
        self.assertIn(b"request authority does not match", reply)

    def test_connect_to_unlisted_port_of_allowed_host_is_403(self) -> None:
        port = self.port(self.sink)  # not in this proxy's rule
        status, body, sock = proxy_connect(self.proxy.port, "127.0.0.1", port)
        sock.close()
        self.assertEqual(status, 403)
        self.assertEqual(body, f"claude-bottle: blocked: port {port} not allowed for 127.0.0.1\n".encode())

    def test_folded_header_line_is_refused(self) -> None:
        port = self.port(self.http)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-A: a\r\n"
                         b" Host: elsewhere.example\r\nConnection: close\r\n\r\n" % (port, port))
            reply = recv_all(sock)
        self.assertTrue(reply.startswith(b"HTTP/1.1 403"), reply[:200])
        self.assertIn(b"obs-fold", reply)

    def test_raw_tcp_server_greets_first(self) -> None:
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.banner))
        with sock:
            self.assertEqual(status, 200)
            self.assertEqual(recv_until(sock, b"\r\n"), b"SSH-2.0-BannerFirstServer\r\n")
            payload = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + BINARY
            sock.sendall(payload)
            self.assertEqual(recv_exactly(sock, len(payload)), payload)

    def test_raw_tcp_on_a_web_only_port_is_not_relayed(self) -> None:
        # Otherwise any allowed HTTPS host would be a raw pipe past the DLP scan.
        status, _, sock = proxy_connect(self.web_only_proxy.port, "127.0.0.1", self.port(self.echo))
        with sock:
            self.assertEqual(status, 200)
            payload = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + BINARY
            sock.sendall(payload)
            sock.settimeout(5)
            got = b""
            try:
                while len(got) < len(payload):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except (socket.timeout, ConnectionError):
                pass
        self.assertNotIn(b"OpenSSH_9.2p1", got, "raw bytes were relayed to a web-only port")
        blocked = [e for e in self.web_only_proxy.events("blocked") if e.get("kind") == "tcp"]
        self.assertTrue(blocked, self.web_only_proxy.events("blocked"))

    def test_raw_tcp_client_speaks_first_like_ssh(self) -> None:
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.echo))
        with sock:
            self.assertEqual(status, 200)
            payload = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
            sock.sendall(payload)  # "SSH" looks like an HTTP verb to mitmproxy's own guess
            self.assertEqual(recv_exactly(sock, len(payload)), payload)
            sock.sendall(BINARY)
            self.assertEqual(recv_exactly(sock, len(BINARY)), BINARY)
        self.assertTrue(any(e.get("kind") == "tcp" for e in self.proxy.events("tunnel_open")))

    def test_sse_streams_over_plain_http(self) -> None:
        self.assert_streams(self.proxy, False, "/sse", b"data: 1\n\n", b"data: 2\n\n")

    def test_sse_streams_over_https(self) -> None:
        self.assert_streams(self.proxy, True, "/sse", b"data: 1\n\n", b"data: 2\n\n")

    def test_large_response_streams(self) -> None:
        self.assert_streams(self.proxy, True, "/big", b"a" * 1024, b"b" * (1 << 20))

    def test_ssrf_ip_literal_never_connects(self) -> None:
        before = self.sink.connections
        status, body, sock = proxy_connect(self.ssrf_proxy.port, "127.0.0.1", self.port(self.sink))
        sock.close()
        self.assertEqual(status, 502)
        self.assertIn(b"claude-bottle: blocked: address 127.0.0.1 is private or reserved (SSRF)", body)
        self.assertEqual(self.sink.connections, before)

    def test_ssrf_name_resolving_to_loopback_is_cut_before_any_byte(self) -> None:
        # "localhost" passes the host/port gate and resolves to 127.0.0.1: only the check of the
        # connected peer (server_connected) can catch it.
        sink = self.port(self.sink)
        connections, received = self.sink.connections, len(self.sink.received)
        try:
            status, _ = proxied_get(self.ssrf_proxy.port, f"http://localhost:{sink}/secret-path")
        except OSError:  # a leak makes the sink hold the request unanswered; judged below
            status = 0
        cstatus, _, sock = proxy_connect(self.ssrf_proxy.port, "localhost", sink)
        with sock:
            try:
                sock.sendall(b"SSH-2.0-must-not-arrive\r\n" + BINARY)
                tail = recv_all(sock)
            except OSError:
                tail = b""
        time.sleep(0.5)  # give a leaked byte time to show up at the sink
        self.assertGreater(self.sink.connections, connections, "the name was never connected to")
        self.assertEqual(self.sink.received[received:], b"", "bytes reached a loopback peer")
        # What the client sees: mitmproxy's 502 for the request; for CONNECT (opened eagerly, before
        # the peer is known) a 200 and then a closed tunnel.
        self.assertEqual((status, cstatus, tail), (502, 200, b""))
        blocked = [e for e in self.ssrf_proxy.events("blocked") if e.get("kind") == "ssrf" and e["host"] == "localhost"]
        self.assertGreaterEqual(len(blocked), 2)
        self.assertEqual(blocked[0]["peer"], "127.0.0.1")

    def test_log_lines_carry_no_paths_or_headers(self) -> None:
        proxied_get(self.proxy.port, f"http://127.0.0.1:{self.port(self.http)}/hello?token=s3cr3t",
                    {"Authorization": "Bearer s3cr3t"})
        for line in self.proxy.lines + self.ssrf_proxy.lines:
            self.assertNotIn("s3cr3t", line)
            self.assertNotIn("secret-path", line)


class UpstreamModeTest(AddonTestBase):
    """Chained to a stand-in for pipelock: every connection must be a CONNECT through it, asked before
    the agent's CONNECT is answered."""

    upstream: UpstreamProxy
    proxy: Mitmdump

    @classmethod
    def setUpProxies(cls) -> None:
        cls.upstream = cls.start_server(UpstreamProxy())
        cls.closed = free_port()  # nothing listens here: the upstream's dial fails
        ports = [cls.port(s) for s in (cls.https, cls.http, cls.echo, cls.banner)] + [cls.closed]
        url = f"http://127.0.0.1:{cls.port(cls.upstream)}"
        # No ssrf_allow: the peer is the upstream on loopback, and SSRF is the upstream's job.
        cls.proxy = cls.start_proxy(
            {"version": 1, "rules": [{"host": "127.0.0.1", "wildcard": False, "ports": ports,
                                      "raw_ports": [cls.port(cls.echo), cls.port(cls.banner)]}], "upstream": url},
            env={"CLAUDE_BOTTLE_PIPELOCK_URL": url},
        )

    def test_plain_http_goes_through_the_upstream_as_connect(self) -> None:
        status, body = proxied_get(self.proxy.port, f"http://127.0.0.1:{self.port(self.http)}/hello")
        self.assertEqual(status, 200, body)
        self.assertIn(f"127.0.0.1:{self.port(self.http)}", self.upstream.targets)

    def test_server_speaks_first_through_the_upstream(self) -> None:
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.banner))
        with sock:
            self.assertEqual(status, 200)
            self.assertEqual(recv_until(sock, b"\r\n"), b"SSH-2.0-BannerFirstServer\r\n")
            sock.sendall(b"after the banner\r\n")
            self.assertEqual(recv_exactly(sock, 18), b"after the banner\r\n")

    def test_upstream_refusal_is_a_403_with_its_reason(self) -> None:
        target = f"127.0.0.1:{self.port(self.echo)}"
        self.upstream.refuse.add(target)
        try:
            status, body, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.echo))
            sock.close()
            pstatus, pbody = proxied_get(self.proxy.port, f"http://127.0.0.1:{self.port(self.echo)}/x")
        finally:
            self.upstream.refuse.discard(target)
        self.assertEqual(status, 403)
        self.assertEqual(body, b"claude-bottle: blocked: pipelock: domain blocklisted (stand-in)\n")
        self.assertEqual((pstatus, pbody), (403, body))
        def found() -> list[dict[str, Any]]:
            return [e for e in self.proxy.events("blocked") if e.get("kind") == "pipelock"
                    and e["port"] == self.port(self.echo)]

        self.proxy.wait_for(lambda: len(found()) >= 2, timeout=5)
        time.sleep(0.3)  # a duplicate line would come right behind
        self.assertEqual(len(found()), 2, "each refusal is logged exactly once")

    def test_unreachable_target_is_a_502_saying_so_and_logged(self) -> None:
        status, body, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.closed)
        sock.close()
        self.assertEqual(status, 502)
        self.assertIn(b"claude-bottle: upstream failed: pipelock could not reach", body)
        self.assertTrue(self.proxy.wait_for(lambda: any(e["port"] == self.closed for e in self.proxy.events("failed"))))

    def test_origin_form_request_never_reaches_the_upstream_itself(self) -> None:
        # mitmproxy used to pass such a request to pipelock as it is, and pipelock's own endpoints answered.
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                         % self.port(self.upstream))
            reply = recv_all(sock)
        self.assertTrue(reply.startswith(b"HTTP/1.1 403"), reply[:200])
        self.assertNotIn(b"127.0.0.1:%d" % self.port(self.upstream), "\n".join(self.upstream.targets).encode())

    def test_https_goes_through_the_upstream(self) -> None:
        status, body = self.https_get(self.proxy, "/hello")
        self.assertEqual((status, body), (200, b"hello over https"))
        self.assertIn(f"127.0.0.1:{self.port(self.https)}", self.upstream.targets)

    def test_raw_tcp_client_first_through_the_upstream(self) -> None:
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", self.port(self.echo))
        with sock:
            self.assertEqual(status, 200)
            payload = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + BINARY
            sock.sendall(payload)
            self.assertEqual(recv_exactly(sock, len(payload)), payload)
        self.assertIn(f"127.0.0.1:{self.port(self.echo)}", self.upstream.targets)

    def test_unlisted_port_is_refused_before_the_upstream_is_asked(self) -> None:
        port = self.port(self.sink)
        status, _, sock = proxy_connect(self.proxy.port, "127.0.0.1", port)
        sock.close()
        self.assertEqual(status, 403)
        self.assertNotIn(f"127.0.0.1:{port}", self.upstream.targets)


def run_until_exit(case: unittest.TestCase, policy: Any, mode: str = "regular", **kw: Any) -> Mitmdump:
    """Start mitmdump with a policy it must refuse, and wait for it to exit (failing the test if not)."""
    tmp = Path(tempfile.mkdtemp(prefix="claude-bottle-addon-"))
    case.addCleanup(shutil.rmtree, tmp, True)
    proxy = Mitmdump(tmp, policy, tmp / "no-ca.pem", mode, **kw)
    case.addCleanup(proxy.stop)
    try:
        proxy.proc.wait(30)
    except subprocess.TimeoutExpired:
        case.fail(f"mitmdump kept running: {proxy.diagnostics()}")
    proxy.reader.join(5)
    return proxy


class FailClosedTest(unittest.TestCase):
    """A policy the addon can't trust must stop mitmdump, not leave an open proxy running."""

    def run_mitmdump(self, policy: Any, mode: str = "regular") -> Mitmdump:
        return run_until_exit(self, policy, mode)

    def test_bad_policy_exits(self) -> None:
        proxy = self.run_mitmdump({"version": 2, "rules": []})
        self.assertNotEqual(proxy.proc.returncode, 0)
        self.assertFalse(proxy.events("ready"))
        self.assertIn("version", proxy.events("fatal")[0]["reason"])

    def test_upstream_mode_is_refused(self) -> None:
        proxy = run_until_exit(self, {"version": 1, "rules": []}, "upstream:http://127.0.0.1:8888")
        self.assertNotEqual(proxy.proc.returncode, 0)
        self.assertIn("regular mode", proxy.events("fatal")[0]["reason"])

    def test_policy_upstream_disagreeing_with_mode_exits(self) -> None:
        proxy = self.run_mitmdump({"version": 1, "rules": [], "upstream": "http://127.0.0.1:8888"})
        self.assertNotEqual(proxy.proc.returncode, 0)
        self.assertIn("pipelock", proxy.events("fatal")[0]["reason"])


if __name__ == "__main__":
    unittest.main()
