"""mitmdump 8.1.1 addon: the bundle's host/port gate, credential injection, request DLP (gitleaks), and
its SSRF guard when pipelock is absent.

Run as `mitmdump -s addon.py`; the policy comes from $CLAUDE_BOTTLE_POLICY (default
/etc/claude-bottle/policy.json), secret values from $CLAUDE_BOTTLE_SECRETS. Decisions live in the
sibling policy.py and dlp.py; this file is only the glue to mitmproxy's hooks. Every log line is JSON
on stdout. mitmproxy swallows exceptions raised in hooks and lets the flow go on, so every hook that
guards a request catches its own and refuses the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlp  # noqa: E402  (sibling files in the bundle, not a package)
import policy as pol  # noqa: E402

from mitmproxy import connection, ctx, http  # noqa: E402
from mitmproxy.net.tls import is_tls_record_magic  # noqa: E402
from mitmproxy.proxy import layer, layers, server_hooks  # noqa: E402
from mitmproxy.tls import TlsData  # noqa: E402

POLICY_PATH = os.environ.get("CLAUDE_BOTTLE_POLICY", "/etc/claude-bottle/policy.json")
SECRETS_PATH = os.environ.get("CLAUDE_BOTTLE_SECRETS", "/etc/claude-bottle/secrets.json")
STREAM_OVER = 1 << 20  # bigger bodies are passed through as they arrive, not buffered in memory
MAX_BACKGROUND = 8  # warn-mode scans in flight; more are skipped (and logged) rather than queued
# An HTTP/1 request line ("GET /") or h2's preface ("PRI *"); "GET" alone may still become one.
_HTTP_START = re.compile(rb"[A-Z]{1,20}( |$)")
_DENIED = "claude_bottle_denied"
_LOGGED = "claude_bottle_logged"
_MODE = "claude_bottle_dlp_mode"
_STREAMED = "claude_bottle_streamed"


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


def _deny(flow: http.HTTPFlow, reason: str, **fields: object) -> None:
    flow.metadata[_DENIED] = True
    flow.request.stream = False  # 8.1.1 refuses a response on a streamed request
    flow.response = http.Response.make(
        403, f"claude-bottle: blocked: {reason}\n", {"Content-Type": "text/plain; charset=utf-8"}
    )
    emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, reason=reason,
         **fields)  # fmt: skip


def _content_length(req: http.Request) -> int | None:
    """The body's announced size: 0 for none, None when it is chunked (unknown until it has arrived)."""
    if "transfer-encoding" in req.headers:
        return None
    length = req.headers.get("content-length", "0").strip()
    return int(length) if length.isdigit() else None


class Gate:
    def __init__(self) -> None:
        try:
            self.policy = pol.load_policy_file(POLICY_PATH)
        except (OSError, ValueError) as e:
            fatal(f"cannot load policy {POLICY_PATH}: {e}")
        self.upstream: tuple[str, int] | None = None
        self.values: dict[str, str] = {}
        if self.policy.secrets:
            try:
                with open(SECRETS_PATH, encoding="utf-8") as handle:
                    self.values = pol.load_secret_values(json.load(handle), self.policy)
            except (OSError, ValueError) as e:
                # Our own messages name secrets, never values; a decoder's could quote the file: not shown.
                detail = e.strerror if isinstance(e, OSError) else str(e) if str(e).startswith("secrets file:") else ""
                fatal(f"cannot load secret values {SECRETS_PATH}: {type(e).__name__} {detail or ''}".strip())
        self.placeholders = [s.placeholder.encode() for s in self.policy.secrets]
        self.scrub_pairs = [(self.values[s.name].encode(), s.placeholder.encode()) for s in self.policy.secrets]
        self.bound_hosts = frozenset(h for s in self.policy.secrets for h in s.hosts)
        modes = {self.policy.dlp.default, *(m for _, _, m in self.policy.dlp.hosts)}
        if modes != {"skip"} and not os.access(dlp.GITLEAKS, os.X_OK):
            fatal(f"DLP needs gitleaks, and {dlp.GITLEAKS} is not an executable")
        self.scanner = dlp.Scanner()
        self.background: set[asyncio.Task[None]] = set()

    def configure(self, updated: set[str]) -> None:
        if ctx.options.rawtcp:
            # mitmproxy's own layer choice would relay any non-HTTP, non-TLS tunnel as raw TCP, past
            # the DLP scan; raw relaying is this addon's decision alone (next_layer, per rule).
            ctx.options.update(rawtcp=False)
        if ctx.options.stream_large_bodies:
            # mitmproxy would then send big request bodies on before the `request` hook could scan them.
            return fatal("stream_large_bodies must not be set: it lets request bodies past the DLP scan")
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
        dlp_hosts = ", ".join(f"{'*.' if w else ''}{h}={m}" for h, w, m in self.policy.dlp.hosts) or "none"
        emit("ready", reason=f"{len(self.policy.rules)} rules, upstream {up}, {len(self.policy.secrets)} secrets, "
                             f"dlp default {self.policy.dlp.default} (hosts: {dlp_hosts})")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        d = pol.decide(self.policy, flow.request.host, flow.request.port)
        if not d.allowed:
            return _deny(flow, d.reason)
        emit("tunnel_open", host=flow.request.host, port=flow.request.port, reason=d.reason)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Decide on what the head shows before the body is read: the target, placeholders in the URL and
        # headers, and whether the body is buffered for a scan or passes as it arrives.
        try:
            if not self._check(flow) or not self._placeholders_in_head(flow):
                return
            req = flow.request
            mode = flow.metadata[_MODE] = self.policy.dlp.mode(req.host)
            length = _content_length(req)
            if mode == "scan" and length is not None and length > dlp.MAX_SCAN_BYTES:
                return _deny(flow, f"request body of {length} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP scan "
                                   "limit (failing closed)", kind="dlp_error", mode=mode)  # fmt: skip
            too_big = length is not None and length > dlp.MAX_SCAN_BYTES
            if (mode == "skip" and (length is None or length > STREAM_OVER)) or (mode == "warn" and too_big):
                if mode == "warn":  # the head is still scanned; the body passes unscanned, and we say so
                    self._warn_scan(flow, self._scan_text(flow, b""), f"body of {length} bytes not scanned")
                self._inject(flow)
                flow.metadata[_STREAMED] = True
                req.stream = True
                self._allowed(flow)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            _deny(flow, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(_DENIED) or flow.metadata.get(_STREAMED):
            return
        try:
            # Again, in case another addon rewrote the target after requestheaders.
            if not self._check(flow) or not self._placeholders_in_head(flow):
                return
            await self._body(flow)
        except Exception as e:  # noqa: BLE001
            _deny(flow, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def _body(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        mode = flow.metadata.get(_MODE) or self.policy.dlp.mode(req.host)
        raw = req.raw_content or b""
        try:
            body = req.get_content(strict=True) or b""  # what the server will read: gzip & co undone
        except ValueError:
            if mode == "scan":
                return _deny(flow, "cannot decode the request body's Content-Encoding to scan it (failing closed)",
                             kind="dlp_error", mode=mode)  # fmt: skip
            body = raw
        for data in {raw, body}:
            secret = self._misplaced(flow, data.decode("latin-1"), None)
            if secret is not None:
                return _deny(flow, pol.placeholder_rule(secret, req.host, req.scheme), kind="placeholder",
                             secret=secret.name)  # fmt: skip
        if mode == "scan":
            if len(body) > dlp.MAX_SCAN_BYTES:
                return _deny(flow, f"request body of {len(body)} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP "
                                   "scan limit (failing closed)", kind="dlp_error", mode=mode)  # fmt: skip
            result = await self.scanner.scan(self._scan_text(flow, body))
            if result.verdict == "leak":
                return _deny(flow, f"secret detected by gitleaks: {', '.join(result.rules)}", kind="dlp",
                             rules=list(result.rules), mode=mode)  # fmt: skip
            if result.verdict != "clean":
                return _deny(flow, f"DLP scan failed: {result.reason} (failing closed)", kind="dlp_error", mode=mode)
        elif mode == "warn":
            if len(body) > dlp.MAX_SCAN_BYTES:
                self._warn_scan(flow, self._scan_text(flow, b""), f"body of {len(body)} bytes not scanned")
            else:
                self._warn_scan(flow, self._scan_text(flow, body))
        self._inject(flow)  # after the scan: gitleaks never sees a real value
        self._allowed(flow)

    def _check(self, flow: http.HTTPFlow) -> bool:
        req = flow.request
        # req.host is where mitmproxy will connect: the CONNECT target inside a tunnel, the URL's host
        # for a proxy request. The Host header is the client's say-so, so it may only agree with it.
        d = pol.decide(self.policy, req.host, req.port)
        header = req.host_header
        target = pol.normalize_host(req.host)
        if d.allowed and header is not None and pol.authority_host(header) != target:
            # Otherwise a CDN-hosted allowed name could front for any other site on that CDN.
            d = pol.Decision(False, f"Host header does not match target {req.host}")
        if d.allowed and req.method != "CONNECT" and req.authority and pol.authority_host(req.authority) != target:
            # Inside a tunnel mitmproxy keeps an absolute-form request line's authority ("GET http://other/"),
            # and the server may route by it: the same fronting by another door.
            d = pol.Decision(False, f"request authority does not match target {req.host}")
        if d.allowed and req.trailers:
            # mitmproxy sends request trailers after every hook has run: nothing could scan them.
            d = pol.Decision(False, "request trailers are not allowed (they would pass unscanned)")
        if not d.allowed:
            _deny(flow, d.reason)
        return d.allowed

    def _allowed(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(_LOGGED):
            flow.metadata[_LOGGED] = True
            req = flow.request
            emit("allowed", host=req.host, port=req.port, method=req.method, scheme=req.scheme,
                 mode=flow.metadata.get(_MODE), reason="allowed by rule")  # fmt: skip

    # ---------- secrets ----------

    def _misplaced(self, flow: http.HTTPFlow, text: str, header: str | None) -> pol.Secret | None:
        if not self.placeholders:
            return None
        return pol.misplaced_placeholder(self.policy, flow.request.host, flow.request.scheme, text, header)

    def _placeholders_in_head(self, flow: http.HTTPFlow) -> bool:
        """Refuse a placeholder anywhere but its own header to its own hosts over HTTPS; True if none is."""
        if not self.placeholders:
            return True
        req = flow.request
        found = self._misplaced(flow, req.url, None) or self._misplaced(flow, urllib.parse.unquote(req.url), None)
        for name, value in req.headers.fields:
            if found:
                break
            found = self._misplaced(flow, name.decode("latin-1"), None)  # in a header's name: never allowed
            header = name.decode("latin-1").lower()
            for view in dlp.header_views(value):
                found = found or self._misplaced(flow, view.decode("latin-1"), header)
        if found is None:
            return True
        _deny(flow, pol.placeholder_rule(found, req.host, req.scheme), kind="placeholder", secret=found.name)
        return False

    def _inject(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if req.scheme != "https":  # never in the clear (plain HTTP with a placeholder was refused already)
            return
        host = pol.normalize_host(req.host)
        for secret in self.policy.secrets:
            if host not in secret.hosts:
                continue
            # The response scrubber reads raw bytes, and a streamed reply keeps its Content-Encoding:
            # ask a bound host for an uncompressed reply so an echoed value is always seen.
            req.headers["accept-encoding"] = "identity"
            values = req.headers.get_all(secret.header)
            swapped = [dlp.swap(v, secret.placeholder, self.values[secret.name]) for v in values]
            if swapped != values:
                req.headers.set_all(secret.header, swapped)
                emit("injected", host=req.host, port=req.port, method=req.method, secret=secret.name,
                     reason=f"header {secret.header}")  # fmt: skip

    # ---------- DLP ----------

    def _scan_text(self, flow: http.HTTPFlow, body: bytes) -> bytes:
        return dlp.scan_text(flow.request.url, list(flow.request.headers.fields), body, self.placeholders)

    def _warn_scan(self, flow: http.HTTPFlow, text: bytes, note: str = "") -> None:
        """warn mode: the request goes on at once; the scan runs beside it and only logs what it finds."""
        req = flow.request
        where = {"host": req.host, "port": req.port, "method": req.method, "mode": "warn"}
        if note:
            emit("warning", kind="dlp_limit", reason=note, **where)
        if len(self.background) >= MAX_BACKGROUND:
            emit("warning", kind="dlp_error", reason="not scanned: the scanner is busy", **where)
            return
        task = asyncio.get_running_loop().create_task(self._warn_result(text, where))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _warn_result(self, text: bytes, where: dict[str, object]) -> None:
        result = await self.scanner.scan(text)
        if result.verdict == "leak":
            found = ", ".join(result.rules)
            emit("warning", kind="dlp", rules=list(result.rules),
                 reason=f"secret detected by gitleaks: {found} (passed: warn mode)", **where)  # fmt: skip
        elif result.verdict != "clean":
            emit("warning", kind="dlp_error", reason=f"scan failed: {result.reason} (passed: warn mode)", **where)

    # ---------- responses ----------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        headers = flow.response.headers
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = headers.get("content-length", "").strip()
        # SSE must reach the client event by event or streamed LLM replies stall.
        if ctype == "text/event-stream" or (length.isdigit() and int(length) > STREAM_OVER):
            flow.response.stream = True
        if self._scrubbed(flow):
            self._scrub_headers(flow.response)
            if flow.response.stream:
                flow.response.stream = dlp.Scrubber(self.scrub_pairs)

    def response(self, flow: http.HTTPFlow) -> None:
        # A server that echoes what it got (an error page quoting the key) must not hand the agent the value.
        resp = flow.response
        if resp is None or resp.stream or not self._scrubbed(flow):
            return
        self._scrub_headers(resp)
        try:
            content = resp.get_content(strict=True)
            if content:
                resp.set_content(dlp.scrub(content, self.scrub_pairs))
        except ValueError:
            resp.raw_content = dlp.scrub(resp.raw_content or b"", self.scrub_pairs)

    def _scrubbed(self, flow: http.HTTPFlow) -> bool:
        return bool(self.scrub_pairs) and pol.normalize_host(flow.request.host) in self.bound_hosts

    def _scrub_headers(self, resp: http.Response) -> None:
        resp.headers.fields = tuple((k, dlp.scrub(v, self.scrub_pairs)) for k, v in resp.headers.fields)

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
        if not tcp:
            return
        host, port = c.server.address
        if not pol.raw_allowed(self.policy, host, port):
            # Left to the HTTP layer (rawtcp is off), which answers 400 and closes: nothing is relayed.
            emit("blocked", host=host, port=port, kind="tcp",
                 reason=f"raw TCP to port {port} needs a {host}:{port} or ssh:// rule")  # fmt: skip
            return
        # ignore=True: no TCPFlow that would keep every message of a long SSH session in memory.
        nextlayer.layer = layers.TCPLayer(c, ignore=True)
        emit("tunnel_open", host=host, port=port, kind="tcp", reason="raw tcp passthrough")


addons = [Gate()]
