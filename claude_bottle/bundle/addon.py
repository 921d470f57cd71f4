"""mitmdump 8.1.1 addon: the bundle's host/port gate, credential injection, request DLP (gitleaks), the
route of every server connection through pipelock (tunnel.py), and its SSRF guard when pipelock is absent.

Run by proxy.py (the bundle's slim mitmdump; plain `mitmdump -s addon.py` works too); the policy
comes from $CLAUDE_BOTTLE_POLICY (default /etc/claude-bottle/policy.json), secret values from
$CLAUDE_BOTTLE_SECRETS. Decisions live in the sibling policy.py, dlp.py and detect.py; this file is
the glue to mitmproxy's connection and request hooks, with the response hooks (addon_responses.py)
and the WebSocket hooks (addon_websockets.py) as mixins of the one Gate, and the shared answers and
log writer in verdicts.py. Every log line is JSON on stdout. mitmproxy swallows exceptions raised in
hooks and lets the flow go on, so every hook that guards a request catches its own and refuses the
request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import sys
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402  (sibling files in the bundle, not a package)
import dlp  # noqa: E402
import policy as pol  # noqa: E402
import tunnel as tun  # noqa: E402
from addon_responses import ResponseHooks  # noqa: E402
from addon_websockets import WebSocketHooks  # noqa: E402
from verdicts import (DENIED, LOGGED, MAX_BACKGROUND, MODE, STREAM_OVER, STREAMED, content_length, deny,  # noqa: E402
                      emit, fatal, is_ip, refusal)

from mitmproxy import connection, ctx, http  # noqa: E402
from mitmproxy.net.tls import is_tls_record_magic  # noqa: E402
from mitmproxy.proxy import layer, layers, server_hooks  # noqa: E402
from mitmproxy.tls import TlsData  # noqa: E402

POLICY_PATH = os.environ.get("CLAUDE_BOTTLE_POLICY", "/etc/claude-bottle/policy.json")
# Set by the supervisor when pipelock runs: every server connection is then a CONNECT through it.
PIPELOCK_URL = os.environ.get("CLAUDE_BOTTLE_PIPELOCK_URL", "")
TUNNEL_TIMEOUT_S = 30.0  # asking pipelock, which dials the target before it answers
PREOPENED_TTL_S = 30.0  # a tunnel opened for a plain-HTTP request that mitmproxy then did not need
SECRETS_PATH = os.environ.get("CLAUDE_BOTTLE_SECRETS", "/etc/claude-bottle/secrets.json")
DETECT_INLINE = 64 << 10  # detect.scan on the event loop below this size, in a worker thread above it
# An HTTP/1 request line ("GET /") or h2's preface ("PRI *"); "GET" alone may still become one.
_HTTP_START = re.compile(rb"[A-Z]{1,20}( |$)")


class Gate(ResponseHooks, WebSocketHooks):
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
        # (client id, host, port) -> a tunnel opened for a plain-HTTP request, for its server_connect
        self.preopened: dict[tuple[str, str, int], tun.Tunnel] = {}
        # server connection id -> (its real target, the tunnel that becomes its streams)
        self.routed: dict[str, tuple[tuple[str, int], tun.Tunnel]] = {}
        self.live: dict[tuple[str, str, int], int] = {}  # routed connections open, per client and target
        self.live_keys: dict[str, tuple[str, str, int]] = {}  # server connection id -> its key in `live`
        self.refusals: dict[tuple[str, str, int], tun.Refused] = {}  # for the CONNECT reply that follows

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
        # Only regular mode dials at CONNECT time, which a server that speaks first and an honest answer
        # to the CONNECT both need; pipelock is reached through server_connect below, not upstream mode.
        # transparent/reverse/socks5 would bypass the CONNECT and request checks.
        if mode != "regular":
            return fatal(f"mode {mode!r} is not supported; run mitmdump in regular mode "
                         "(pipelock comes from $CLAUDE_BOTTLE_PIPELOCK_URL)")
        upstream = None
        if PIPELOCK_URL:
            try:
                upstream = pol.parse_upstream(PIPELOCK_URL)
            except ValueError as e:
                return fatal(str(e))
        if self.policy.upstream is not None and self.policy.upstream != upstream:
            return fatal(f"policy says pipelock is {self.policy.upstream}, the environment says {PIPELOCK_URL!r}")
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
            return deny(flow, d.reason)
        if self._host_refused(flow):
            return
        emit("tunnel_open", host=flow.request.host, port=flow.request.port, reason=d.reason)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Decide on what the head shows before the body is read: the target, placeholders in the URL and
        # headers, and whether the body is buffered for a scan or passes as it arrives.
        try:
            if not self._check(flow) or not self._placeholders_in_head(flow):
                return
            req = flow.request
            mode = flow.metadata[MODE] = self.policy.dlp.mode(req.host)
            length = content_length(req)
            if mode == "scan" and length is not None and length > dlp.MAX_SCAN_BYTES:
                return deny(flow, f"request body of {length} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP scan "
                                   "limit (failing closed)", kind="dlp_error", mode=mode)
            too_big = length is not None and length > dlp.MAX_SCAN_BYTES
            if (mode == "skip" and (length is None or length > STREAM_OVER)) or (mode == "warn" and too_big):
                if mode == "warn":  # the head is still scanned; the body passes unscanned, and we say so
                    self._warn_scan(flow, self._scan_text(flow, b""), f"body of {length} bytes not scanned")
                self._inject(flow)
                flow.metadata[STREAMED] = True
                if await self._preopen(flow):
                    req.stream = True
                    self._allowed(flow)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            deny(flow, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(DENIED) or flow.metadata.get(STREAMED):
            return
        try:
            # Again, in case another addon rewrote the target after requestheaders.
            if not self._check(flow) or not self._placeholders_in_head(flow):
                return
            await self._body(flow)
        except Exception as e:  # noqa: BLE001
            deny(flow, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def _body(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        mode = flow.metadata.get(MODE) or self.policy.dlp.mode(req.host)
        raw = req.raw_content or b""
        # What the server will read, gzip & co undone, in bounded memory: mitmproxy's get_content would
        # inflate a small gzip bomb whole, before any size check. Decoding stops past the scan limit.
        coding = req.headers.get("content-encoding", "")
        limit = dlp.MAX_SCAN_BYTES
        try:
            decoded = dlp.decode_body(raw, coding, limit)
        except ValueError as e:
            if mode == "scan":
                return deny(flow, f"cannot decode the request body's Content-Encoding to scan it: {e} (failing "
                                   "closed)", kind="dlp_error", mode=mode)
            decoded, coding = dlp.Decoded(raw, len(raw) > limit), ""  # warn, skip: the bytes as sent
        body = decoded.body
        too_big = ""
        if decoded.over and dlp.content_codings(coding):
            too_big = f"request body is over the {limit}-byte DLP scan limit after decoding its Content-Encoding"
        elif decoded.over:
            too_big = f"request body of {len(body)} bytes is over the {limit}-byte DLP scan limit"
        for data in {raw, body}:
            secret = self._misplaced(flow, data.decode("latin-1"), None)
            if secret is not None:
                return deny(flow, pol.placeholder_rule(secret, req.host, req.scheme), kind="placeholder",
                             secret=secret.name)
        if mode == "scan":
            if too_big:
                return deny(flow, f"{too_big} (failing closed)", kind="dlp_error", mode=mode)
            result = await self.scanner.scan(self._scan_text(flow, body))
            if result.verdict == "leak":
                return deny(flow, f"secret detected by gitleaks: {', '.join(result.rules)}", kind="dlp",
                             rules=list(result.rules), mode=mode)
            if result.verdict != "clean":
                return deny(flow, f"DLP scan failed: {result.reason} (failing closed)", kind="dlp_error", mode=mode)
        # After gitleaks, so that what both catch is named by gitleaks' rule id.
        if mode in ("scan", "warn") and not too_big:
            findings = await self._detect(flow, body)
            if findings:
                rules = sorted({f.rule for f in findings})
                reason = f"sensitive data found: {'; '.join(f.describe() for f in findings[:4])}"
                if mode == "scan":
                    return deny(flow, reason, kind="dlp", rules=rules, mode=mode)
                emit("warning", host=req.host, port=req.port, method=req.method, kind="dlp", rules=rules, mode=mode,
                     reason=f"{reason} (passed: warn mode)")
        if mode == "warn":
            if too_big:
                self._warn_scan(flow, self._scan_text(flow, b""), f"{too_big}: not scanned")
            else:
                self._warn_scan(flow, self._scan_text(flow, body))
        self._inject(flow)  # after the scan: gitleaks never sees a real value
        if await self._preopen(flow):
            self._allowed(flow)

    async def _preopen(self, flow: http.HTTPFlow) -> bool:
        """Ask pipelock now for a request that will need a new server connection, so its refusal is a 403
        with its reason rather than mitmproxy's 502; False when it refused (the flow is then denied)."""
        req = flow.request
        key = (flow.client_conn.id, req.host, req.port)
        if self.upstream is None or flow.server_conn.connected or self.live.get(key) or key in self.preopened:
            return True
        opened = await tun.open_tunnel(self.upstream, req.host, req.port, TUNNEL_TIMEOUT_S)
        if isinstance(opened, tun.Refused):
            self._refused_by_pipelock(req.host, req.port, opened, flow)
            return False
        self.preopened[key] = opened

        def expire() -> None:
            if self.preopened.get(key) is opened:
                del self.preopened[key]
                opened.close()

        asyncio.get_running_loop().call_later(PREOPENED_TTL_S, expire)
        return True

    def _connect_reply(self, flow: http.HTTPFlow) -> None:
        """mitmproxy answers a CONNECT it could not connect with a 502 naming its own internals: say instead
        what pipelock said (already logged by _route), or that the target could not be reached."""
        resp, req = flow.response, flow.request
        if resp is None or resp.status_code != 502 or flow.metadata.get(DENIED):
            return
        refused = self.refusals.pop((flow.client_conn.id, req.host, req.port), None)
        if refused is not None and refused.blocked:
            flow.response = refusal(403, f"claude-bottle: blocked: pipelock: {refused.reason}")
            return
        if refused is not None:
            reason = f"pipelock could not reach {tun.authority(req.host, req.port)}: {refused.reason}"
        else:  # no pipelock: mitmproxy's own connect failed ("Cannot connect to host:port: why")
            reason = resp.get_text(strict=False).strip()[:300] or "cannot connect"
            emit("failed", host=req.host, port=req.port, method="CONNECT", kind="upstream", reason=reason)
        flow.response = refusal(502, f"claude-bottle: upstream failed: {reason}")

    def error(self, flow: http.HTTPFlow) -> None:
        # An allowed request whose server could not be reached or broke off: the summary must show it.
        msg = flow.error.msg if flow.error is not None else ""
        if flow.metadata.get(DENIED) or not msg or "killed" in msg.lower() or "client disconnected" in msg.lower():
            return
        req = flow.request
        # mitmproxy's text can quote what the server sent ('Bad HTTP response line: b"..."'), which may
        # hold an echoed secret: keep only the words before the first quote.
        reason = re.split(r"""b?["']""", msg, maxsplit=1)[0].strip().rstrip(":")[:200] or "the server broke off"
        emit("failed", host=req.host, port=req.port, method=req.method, kind="upstream", reason=reason)

    def _refused_by_pipelock(self, host: str, port: int, refused: tun.Refused, flow: http.HTTPFlow | None) -> None:
        """One log line per refusal; a 403 (or 502 when pipelock could not reach the target) for the flow."""
        if refused.blocked:
            reason = f"pipelock: {refused.reason}"
            if flow is not None:
                return deny(flow, reason, kind="pipelock")
            emit("blocked", host=host, port=port, kind="pipelock", reason=reason)
            return
        reason = f"pipelock could not reach {tun.authority(host, port)}: {refused.reason}"
        if flow is not None:
            flow.metadata[DENIED] = True
            flow.request.stream = False  # 8.1.1 refuses a response on a streamed request
            flow.response = refusal(502, f"claude-bottle: upstream failed: {reason}")
        emit("failed", host=host, port=port, kind="upstream", reason=reason)

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
        if d.allowed and any(b"\r" in v or b"\n" in v for _, v in req.headers.fields):
            # mitmproxy keeps an obs-fold continuation line inside the value and sends it on as it came;
            # a server that unfolds differently would read headers no check here saw (RFC 9112 5.2).
            d = pol.Decision(False, "folded header lines (obs-fold) are not allowed")
        if d.allowed and req.trailers:
            # mitmproxy sends request trailers after every hook has run: nothing could scan them.
            d = pol.Decision(False, "request trailers are not allowed (they would pass unscanned)")
        if not d.allowed:
            deny(flow, d.reason)
            return False
        return not self._host_refused(flow)

    def _host_refused(self, flow: http.HTTPFlow) -> bool:
        """What only a wildcard let through: a known exfiltration, paste or tunnel service (a deny list
        that beats broad rules; a rule naming the host exactly still allows it), and data encoded into
        the labels left of the wildcard's domain (a DLP finding, so the host's mode decides)."""
        req = flow.request
        host = pol.normalize_host(req.host)
        if host is None:
            return False
        matching = [r for r in self.policy.rules if r.matches(host)]
        if not matching or any(r.host == host and not r.wildcard for r in matching):
            return False  # a rule naming the host exactly: the user's explicit choice
        service = detect.denied_service(host)
        if service is not None:
            deny(flow, f"{service}; a rule naming it exactly would allow it", kind="deny_list")
            return True
        mode = self.policy.dlp.mode(req.host)
        for rule in matching:
            # The name as sent: a mixed-case label is itself a sign of base64 (DNS ignores case).
            sent = req.authority.rpartition(":")[0] if req.method == "CONNECT" and req.authority else req.host
            why = detect.label_exfil((sent or req.host).rstrip("."), rule.host) if mode != "skip" else None
            if why is None:
                continue
            if mode == "scan":
                deny(flow, f"data encoded in the host name: {why}", kind="dlp", rules=["hostname-label"], mode=mode)
                return True
            emit("warning", host=req.host, port=req.port, kind="dlp", rules=["hostname-label"], mode=mode,
                 reason=f"data encoded in the host name: {why} (passed: warn mode)")
            return False
        return False

    async def _detect(self, flow: http.HTTPFlow, body: bytes) -> list[detect.Finding]:
        """The validated detectors (detect.py) on what the server will read, placeholders masked."""
        req = flow.request
        args = (req.url, list(req.headers.fields), body)
        if len(body) < DETECT_INLINE:
            return detect.scan(*args, placeholders=self.placeholders)
        # A megabyte takes a few hundred ms: off the event loop, so other flows keep moving.
        return await asyncio.to_thread(lambda: detect.scan(*args, placeholders=self.placeholders))

    def _allowed(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(LOGGED):
            flow.metadata[LOGGED] = True
            req = flow.request
            emit("allowed", host=req.host, port=req.port, method=req.method, scheme=req.scheme,
                 mode=flow.metadata.get(MODE), reason="allowed by rule")

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
        deny(flow, pol.placeholder_rule(found, req.host, req.scheme), kind="placeholder", secret=found.name)
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
                     reason=f"header {secret.header}")

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
            emit("warning", kind="dlp_error", reason=f"not scanned ({len(text)} bytes): {len(self.background)} "
                 f"warn-mode scans are already in flight, the limit (passed: warn mode)", **where)
            return
        task = asyncio.get_running_loop().create_task(self._warn_result(text, where))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _warn_result(self, text: bytes, where: dict[str, object]) -> None:
        result = await self.scanner.scan(text)
        if result.verdict == "leak":
            found = ", ".join(result.rules)
            emit("warning", kind="dlp", rules=list(result.rules),
                 reason=f"secret detected by gitleaks: {found} (passed: warn mode)", **where)
        elif result.verdict != "clean":
            emit("warning", kind="dlp_error", reason=f"scan failed: {result.reason} (passed: warn mode)", **where)

    # ---------- responses ----------

    def tls_start_server(self, data: TlsData) -> None:
        # Runs before mitmproxy's tlsconfig, which would copy the client's SNI: pin SNI (and thus the
        # certificate check) to the vetted target so a ClientHello can't name another site.
        if isinstance(data.conn, connection.Server) and data.conn.address is not None:
            data.conn.sni = data.conn.address[0]

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is None:
            return
        if self.upstream is not None:
            return await self._route(data)
        # Cheap early refusal for IP literals; server_connected is the check that counts.
        host, port = data.server.address
        if is_ip(host) and not pol.peer_allowed(self.policy, host):
            reason = f"address {host} is private or reserved (SSRF)"
            data.server.error = f"claude-bottle: blocked: {reason}"
            emit("blocked", host=host, port=port, kind="ssrf", reason=reason)

    async def _route(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Send this connection through a pipelock tunnel: open it (or take the one a request opened), then
        let mitmproxy's own connect reach a stand-in, whose streams server_connected swaps for the tunnel's."""
        assert self.upstream is not None and data.server.address is not None
        host, port = data.server.address
        opened = self.preopened.pop((data.client.id, host, port), None)
        if opened is None:
            opened = await tun.open_tunnel(self.upstream, host, port, TUNNEL_TIMEOUT_S)
        if isinstance(opened, tun.Refused):
            self._refused_by_pipelock(host, port, opened, None)
            self.refusals[(data.client.id, host, port)] = opened
            data.server.error = f"claude-bottle: refused by pipelock: {opened.reason}"
            return
        stand_in = tun.StandIn()
        try:
            address = await stand_in.start()
        except OSError as e:
            opened.close()
            data.server.error = f"claude-bottle: cannot route through pipelock: {e}"
            return
        self.routed[data.server.id] = ((host, port), opened)
        data.server.address = address

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        assert data.server.peername is not None and data.server.address is not None
        ip, port = data.server.peername[0], data.server.peername[1]
        if self.upstream is not None:
            # Every connection must be a pipelock tunnel, which does the SSRF checks on the real targets.
            routed = self.routed.pop(data.server.id, None)
            if routed is not None and self._swap_in(data, *routed):
                return
            if routed is not None:
                routed[1].close()
            ok, reason = False, f"peer {ip}:{port} is not a pipelock tunnel"
        else:
            ok = pol.peer_allowed(self.policy, ip)
            reason = f"{data.server.address[0]} resolved to private or reserved address {ip} (SSRF)"
        if ok:
            return
        data.server.error = f"claude-bottle: blocked: {reason}"
        emit("blocked", host=data.server.address[0], port=data.server.address[1], peer=ip, kind="ssrf", reason=reason)
        if not self._abort(data):
            fatal("cannot abort a blocked server connection on this mitmproxy version")

    def _swap_in(self, data: server_hooks.ServerConnectionHookData, target: tuple[str, int], opened: tun.Tunnel) -> bool:
        """The stand-in connection's streams become the tunnel's, and the connection gets its real target
        back. mitmproxy forbids changing an open connection's address, for a reason that does not hold
        here (the socket behind it is replaced as well), so the guard is stepped around on purpose."""
        io = self._transport(data)
        if io is None or io.writer is None:
            return False
        io.writer.close()  # the stand-in's, which nothing has read from or written to
        io.reader, io.writer = opened.reader, opened.writer
        object.__setattr__(data.server, "address", target)
        data.server.peername = opened.writer.get_extra_info("peername")
        key = self.live_keys[data.server.id] = (data.client.id, *target)
        self.live[key] = self.live.get(key, 0) + 1
        return True

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        key = self.live_keys.pop(data.server.id, None)
        if key is not None and self.live.get(key):
            self.live[key] -= 1
            if not self.live[key]:
                del self.live[key]

    def client_disconnected(self, client: connection.Client) -> None:
        for key in [k for k in self.preopened if k[0] == client.id]:
            self.preopened.pop(key).close()
        for key in [k for k in self.refusals if k[0] == client.id]:
            del self.refusals[key]

    @staticmethod
    def _transport(data: server_hooks.ServerConnectionHookData) -> Any:
        """The streams the proxy server holds for a server connection (no public API reaches them)."""
        proxyserver = ctx.master.addons.get("proxyserver")
        for handler in getattr(proxyserver, "_connections", {}).values():
            io = handler.transports.get(data.server)
            if io is not None:
                return io
        return None

    @staticmethod
    def _abort(data: server_hooks.ServerConnectionHookData) -> bool:
        # 8.1.1 reads server.error only before connecting, and no public API drops a live connection,
        # so abort the socket the proxy server holds for it. This hook runs before mitmproxy hands the
        # connection to a layer, so no byte of the request has been written yet; later writes are dropped.
        io = Gate._transport(data)
        if io is None or io.writer is None:
            return False
        io.writer.transport.abort()
        return True

    # ---------- WebSockets ----------

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
                 reason=f"raw TCP to port {port} needs a {host}:{port} or ssh:// rule")
            return
        # ignore=True: no TCPFlow that would keep every message of a long SSH session in memory.
        nextlayer.layer = layers.TCPLayer(c, ignore=True)
        emit("tunnel_open", host=host, port=port, kind="tcp", reason="raw tcp passthrough")


addons = [Gate()]
