"""mitmdump 8.1.1 addon: the bundle's host/port gate, and its SSRF guard when pipelock is absent.

Run as `mitmdump -s addon.py`; the policy comes from $CLAUDE_BOTTLE_POLICY (default
/etc/claude-bottle/policy.json). Decisions live in the sibling policy.py; this file is only the glue
to mitmproxy's hooks. Every log line is JSON on stdout.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy as pol  # noqa: E402  (a sibling file in the bundle, not a package)

from mitmproxy import connection, ctx, http  # noqa: E402
from mitmproxy.net.tls import is_tls_record_magic  # noqa: E402
from mitmproxy.proxy import layer, layers, server_hooks  # noqa: E402
from mitmproxy.tls import TlsData  # noqa: E402

POLICY_PATH = os.environ.get("CLAUDE_BOTTLE_POLICY", "/etc/claude-bottle/policy.json")
STREAM_OVER = 1 << 20  # bigger bodies are passed through as they arrive, not buffered in memory
# An HTTP/1 request line ("GET /") or h2's preface ("PRI *"); "GET" alone may still become one.
_HTTP_START = re.compile(rb"[A-Z]{1,20}( |$)")
_DENIED = "claude_bottle_denied"
_LOGGED = "claude_bottle_logged"


def emit(event: str, **fields: object) -> None:
    print(pol.log_line(event, **fields), flush=True)


def fatal(reason: str) -> None:
    # mitmproxy's script loader swallows every exception (even SystemExit) and then runs on without
    # the addon, i.e. as an open proxy. Exiting the process is the only way to fail closed.
    emit("fatal", reason=reason)
    sys.stdout.flush()
    os._exit(3)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _deny(flow: http.HTTPFlow, reason: str) -> None:
    flow.metadata[_DENIED] = True
    flow.request.stream = False  # stream_large_bodies may have set it; 8.1.1 refuses a response then
    flow.response = http.Response.make(
        403, f"claude-bottle: blocked: {reason}\n", {"Content-Type": "text/plain; charset=utf-8"}
    )
    emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, reason=reason)


class Gate:
    def __init__(self) -> None:
        try:
            self.policy = pol.load_policy_file(POLICY_PATH)
        except (OSError, ValueError) as e:
            fatal(f"cannot load policy {POLICY_PATH}: {e}")
        self.upstream: tuple[str, int] | None = None

    def configure(self, updated: set[str]) -> None:
        if "mode" not in updated:
            return
        mode: str = ctx.options.mode
        if mode == "regular":
            upstream = None
        elif mode.startswith("upstream:"):
            try:
                upstream = pol.parse_upstream(mode[len("upstream:") :])
            except ValueError as e:
                return fatal(str(e))
        else:  # transparent/reverse/socks5 would bypass the CONNECT and request checks below
            return fatal(f"mode {mode!r} is not supported; use regular or upstream:http://HOST:PORT")
        if self.policy.upstream is not None and self.policy.upstream != upstream:
            return fatal(f"policy says upstream {self.policy.upstream}, mitmdump runs in mode {mode!r}")
        self.upstream = upstream

    def running(self) -> None:
        up = "%s:%d" % self.upstream if self.upstream else "none (SSRF guard on)"
        # The supervisor's health check needs proof that this addon loaded and is enforcing: mitmdump
        # keeps serving, with no checks at all, when a script fails to import.
        marker = os.environ.get("CLAUDE_BOTTLE_ADDON_READY")
        if marker:
            try:
                with open(marker, "w", encoding="ascii") as handle:
                    handle.write(f"{os.getpid()}\n")
            except OSError as e:
                return fatal(f"cannot write the readiness marker {marker}: {e}")
        emit("ready", reason=f"{len(self.policy.rules)} rules, upstream {up}")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        d = pol.decide(self.policy, flow.request.host, flow.request.port)
        if not d.allowed:
            return _deny(flow, d.reason)
        emit("tunnel_open", host=flow.request.host, port=flow.request.port, reason=d.reason)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Decide before the body is read: a streamed request body would otherwise be sent before `request`.
        self._check(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        # Again, in case another addon rewrote the target after requestheaders.
        if not flow.metadata.get(_DENIED):
            self._check(flow)

    def _check(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        # req.host is where mitmproxy will connect: the CONNECT target inside a tunnel, the URL's host
        # for a proxy request. The Host header is the client's say-so, so it may only agree with it.
        d = pol.decide(self.policy, req.host, req.port)
        header = req.host_header
        if d.allowed and header is not None and pol.authority_host(header) != pol.normalize_host(req.host):
            # Otherwise a CDN-hosted allowed name could front for any other site on that CDN.
            d = pol.Decision(False, f"Host header does not match target {req.host}")
        if not d.allowed:
            return _deny(flow, d.reason)
        if not flow.metadata.get(_LOGGED):
            flow.metadata[_LOGGED] = True
            emit("allowed", host=req.host, port=req.port, method=req.method, scheme=req.scheme, reason=d.reason)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        headers = flow.response.headers
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = headers.get("content-length", "").strip()
        # SSE must reach the client event by event or streamed LLM replies stall.
        if ctype == "text/event-stream" or (length.isdigit() and int(length) > STREAM_OVER):
            flow.response.stream = True

    def tls_start_server(self, data: TlsData) -> None:
        # Runs before mitmproxy's tlsconfig, which would copy the client's SNI: pin SNI (and thus the
        # certificate check) to the vetted target so a ClientHello can't name another site.
        if isinstance(data.conn, connection.Server) and data.conn.address is not None:
            data.conn.sni = data.conn.address[0]

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        # Cheap early refusal for IP literals; server_connected is the check that counts.
        if self.upstream is not None or data.server.address is None:
            return
        host, port = data.server.address
        if _is_ip(host) and not pol.peer_allowed(self.policy, host):
            reason = f"address {host} is private or reserved (SSRF)"
            data.server.error = f"claude-bottle: blocked: {reason}"
            emit("blocked", host=host, port=port, kind="ssrf", reason=reason)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        assert data.server.peername is not None and data.server.address is not None
        ip, port = data.server.peername[0], data.server.peername[1]
        if self.upstream is not None:
            # Everything must go through pipelock, which does the SSRF checks on the real targets.
            up_host, up_port = self.upstream
            ok = port == up_port and (not _is_ip(up_host) or pol.normalize_host(ip) == up_host)
            reason = f"peer {ip}:{port} is not the upstream proxy"
        else:
            ok = pol.peer_allowed(self.policy, ip)
            reason = f"{data.server.address[0]} resolved to private or reserved address {ip} (SSRF)"
        if ok:
            return
        data.server.error = f"claude-bottle: blocked: {reason}"
        emit("blocked", host=data.server.address[0], port=data.server.address[1], peer=ip, kind="ssrf", reason=reason)
        if not self._abort(data):
            fatal("cannot abort a blocked server connection on this mitmproxy version")

    @staticmethod
    def _abort(data: server_hooks.ServerConnectionHookData) -> bool:
        # 8.1.1 reads server.error only before connecting, and no public API drops a live connection,
        # so abort the socket the proxy server holds for it. This hook runs before mitmproxy hands the
        # connection to a layer, so no byte of the request has been written yet; later writes are dropped.
        proxyserver = ctx.master.addons.get("proxyserver")
        for handler in getattr(proxyserver, "_connections", {}).values():
            io = handler.transports.get(data.server)
            if io is not None and io.writer is not None:
                io.writer.transport.abort()
                return True
        return False

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        # Inside a CONNECT tunnel (server address known), mitmproxy 8.1.1 takes any client greeting
        # whose first 3 bytes are letters for HTTP, so SSH's "SSH-2.0-..." breaks. Anything that is
        # neither TLS nor an HTTP request line, or where the server spoke first, is relayed untouched.
        c = nextlayer.context
        if nextlayer.layer is not None or not c.layers or c.server.address is None:
            return
        client, server = nextlayer.data_client(), nextlayer.data_server()
        tcp = (bool(server) and not client) or (
            len(client) >= 3 and not is_tls_record_magic(client) and not _HTTP_START.match(client)
        )
        if tcp:
            # ignore=True: no TCPFlow that would keep every message of a long SSH session in memory.
            nextlayer.layer = layers.TCPLayer(c, ignore=True)
            host, port = c.server.address
            emit("tunnel_open", host=host, port=port, kind="tcp", reason="raw tcp passthrough")


addons = [Gate()]
