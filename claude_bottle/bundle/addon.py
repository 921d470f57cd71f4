"""mitmdump 8.1.1 addon: the bundle's host/port gate, credential injection, request DLP (gitleaks), the
route of every server connection through pipelock (tunnel.py), and its SSRF guard when pipelock is absent.

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
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402  (sibling files in the bundle, not a package)
import dlp  # noqa: E402
import policy as pol  # noqa: E402
import tunnel as tun  # noqa: E402

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
STREAM_OVER = 1 << 20  # bigger bodies are passed through as they arrive, not buffered in memory
DETECT_INLINE = 64 << 10  # detect.scan on the event loop below this size, in a worker thread above it
# warn-mode scans in flight (running or waiting for the scanner); more are skipped and logged, each by
# host, port and method, rather than queued without bound. With the scanner at about a millisecond a
# scan, a burst of hundreds of parallel requests is still scanned whole.
MAX_BACKGROUND = 512
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


def _refusal(status: int, text: str) -> http.Response:
    return http.Response.make(status, text + "\n", {"Content-Type": "text/plain; charset=utf-8"})


def _deny(flow: http.HTTPFlow, reason: str, **fields: object) -> None:
    flow.metadata[_DENIED] = True
    flow.request.stream = False  # 8.1.1 refuses a response on a streamed request
    flow.response = _refusal(403, f"claude-bottle: blocked: {reason}")
    emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, reason=reason,
         **fields)


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
            return _deny(flow, d.reason)
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
            mode = flow.metadata[_MODE] = self.policy.dlp.mode(req.host)
            length = _content_length(req)
            if mode == "scan" and length is not None and length > dlp.MAX_SCAN_BYTES:
                return _deny(flow, f"request body of {length} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP scan "
                                   "limit (failing closed)", kind="dlp_error", mode=mode)
            too_big = length is not None and length > dlp.MAX_SCAN_BYTES
            if (mode == "skip" and (length is None or length > STREAM_OVER)) or (mode == "warn" and too_big):
                if mode == "warn":  # the head is still scanned; the body passes unscanned, and we say so
                    self._warn_scan(flow, self._scan_text(flow, b""), f"body of {length} bytes not scanned")
                self._inject(flow)
                flow.metadata[_STREAMED] = True
                if await self._preopen(flow):
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
        # What the server will read, gzip & co undone, in bounded memory: mitmproxy's get_content would
        # inflate a small gzip bomb whole, before any size check. Decoding stops past the scan limit.
        coding = req.headers.get("content-encoding", "")
        limit = dlp.MAX_SCAN_BYTES
        try:
            decoded = dlp.decode_body(raw, coding, limit)
        except ValueError as e:
            if mode == "scan":
                return _deny(flow, f"cannot decode the request body's Content-Encoding to scan it: {e} (failing "
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
                return _deny(flow, pol.placeholder_rule(secret, req.host, req.scheme), kind="placeholder",
                             secret=secret.name)
        if mode == "scan":
            if too_big:
                return _deny(flow, f"{too_big} (failing closed)", kind="dlp_error", mode=mode)
            result = await self.scanner.scan(self._scan_text(flow, body))
            if result.verdict == "leak":
                return _deny(flow, f"secret detected by gitleaks: {', '.join(result.rules)}", kind="dlp",
                             rules=list(result.rules), mode=mode)
            if result.verdict != "clean":
                return _deny(flow, f"DLP scan failed: {result.reason} (failing closed)", kind="dlp_error", mode=mode)
        # After gitleaks, so that what both catch is named by gitleaks' rule id.
        if mode in ("scan", "warn") and not too_big:
            findings = await self._detect(flow, body)
            if findings:
                rules = sorted({f.rule for f in findings})
                reason = f"sensitive data found: {'; '.join(f.describe() for f in findings[:4])}"
                if mode == "scan":
                    return _deny(flow, reason, kind="dlp", rules=rules, mode=mode)
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
        if resp is None or resp.status_code != 502 or flow.metadata.get(_DENIED):
            return
        refused = self.refusals.pop((flow.client_conn.id, req.host, req.port), None)
        if refused is not None and refused.blocked:
            flow.response = _refusal(403, f"claude-bottle: blocked: pipelock: {refused.reason}")
            return
        if refused is not None:
            reason = f"pipelock could not reach {tun.authority(req.host, req.port)}: {refused.reason}"
        else:  # no pipelock: mitmproxy's own connect failed ("Cannot connect to host:port: why")
            reason = resp.get_text(strict=False).strip()[:300] or "cannot connect"
            emit("failed", host=req.host, port=req.port, method="CONNECT", kind="upstream", reason=reason)
        flow.response = _refusal(502, f"claude-bottle: upstream failed: {reason}")

    def error(self, flow: http.HTTPFlow) -> None:
        # An allowed request whose server could not be reached or broke off: the summary must show it.
        msg = flow.error.msg if flow.error is not None else ""
        if flow.metadata.get(_DENIED) or not msg or "killed" in msg.lower() or "client disconnected" in msg.lower():
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
                return _deny(flow, reason, kind="pipelock")
            emit("blocked", host=host, port=port, kind="pipelock", reason=reason)
            return
        reason = f"pipelock could not reach {tun.authority(host, port)}: {refused.reason}"
        if flow is not None:
            flow.metadata[_DENIED] = True
            flow.request.stream = False  # 8.1.1 refuses a response on a streamed request
            flow.response = _refusal(502, f"claude-bottle: upstream failed: {reason}")
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
            _deny(flow, d.reason)
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
            _deny(flow, f"{service}; a rule naming it exactly would allow it", kind="deny_list")
            return True
        mode = self.policy.dlp.mode(req.host)
        for rule in matching:
            # The name as sent: a mixed-case label is itself a sign of base64 (DNS ignores case).
            sent = req.authority.rpartition(":")[0] if req.method == "CONNECT" and req.authority else req.host
            why = detect.label_exfil((sent or req.host).rstrip("."), rule.host) if mode != "skip" else None
            if why is None:
                continue
            if mode == "scan":
                _deny(flow, f"data encoded in the host name: {why}", kind="dlp", rules=["hostname-label"], mode=mode)
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
        if not flow.metadata.get(_LOGGED):
            flow.metadata[_LOGGED] = True
            req = flow.request
            emit("allowed", host=req.host, port=req.port, method=req.method, scheme=req.scheme,
                 mode=flow.metadata.get(_MODE), reason="allowed by rule")

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

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        headers = flow.response.headers
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = headers.get("content-length", "").strip()
        # SSE must reach the client event by event or streamed LLM replies stall.
        if ctype == "text/event-stream" or (length.isdigit() and int(length) > STREAM_OVER):
            flow.response.stream = True
        if not self._scrubbed(flow):
            return
        try:
            self._scrub_head(flow, flow.response)
            if flow.response.stream:
                self._stream_scrubbed(flow, flow.response)
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the reply on as it is
            self._refuse_reply(flow, f"internal error in the addon ({type(e).__name__}); failing closed", True)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return self._connect_reply(flow)
        resp = flow.response
        if resp is None:
            return
        if flow.metadata.get(self._REFUSED):
            resp.trailers = None  # our 502 carries nothing of the server's
            return
        try:
            if 100 <= resp.status_code < 200 and resp.status_code != 101:
                # Only when _patch_http1_client could not skip it: 8.1.1 took this head for the final reply,
                # which is lost, so say so rather than hand the agent an empty 1xx as the answer.
                return self._refuse_reply(flow, f"the server sent an informational {resp.status_code} response, "
                                                "which this mitmproxy takes for the final one", False)
            scrubbed = self._scrubbed(flow)
            self._trailers(flow, resp, scrubbed)
            if resp.stream or not scrubbed:
                return
            # A server that echoes what it got (an error page quoting the key) must not hand the agent the value.
            self._scrub_head(flow, resp)
            try:
                content = resp.get_content(strict=True)  # gzip, deflate, br, zstd: mitmproxy's own decoders
            except ValueError:
                coding = resp.headers.get("content-encoding", "")
                return self._refuse_reply(flow, f"cannot decode the response's Content-Encoding {coding!r} to keep "
                                                "secret values out of it (failing closed)", False)
            if content:
                clean = dlp.scrub(content, self._pairs(flow))
                if clean != content:
                    had_length = "content-length" in resp.headers
                    resp.set_content(clean)  # re-encoded as it came, and given a content-length
                    if resp.trailers and not had_length:
                        # HTTP/2, framed by its end of stream: clients such as curl stop at a content-length
                        # and miss the trailers after it (gRPC's status lives there).
                        resp.headers.pop("content-length", None)
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the reply on as it is
            reason = f"internal error in the addon ({type(e).__name__}); failing closed"
            if resp.stream:  # its head and body have left already: cut it
                self._stream_failed(flow, reason)
            else:
                self._refuse_reply(flow, reason, False)

    def _scrubbed(self, flow: http.HTTPFlow) -> bool:
        return bool(self.scrub_pairs) and pol.normalize_host(flow.request.host) in self.bound_hosts

    _REFUSED = "claude_bottle_reply_refused"
    _PAIRS = "claude_bottle_scrub_pairs"

    def _pairs(self, flow: http.HTTPFlow) -> list[tuple[bytes, bytes]]:
        """What to scrub from this flow's reply: the real values, their base64 forms, and the exact Basic
        tokens _inject sent (read back from the request as it left, so every injected form is covered)."""
        pairs = flow.metadata.get(self._PAIRS)
        if pairs is None:
            sent = [value for _, value in flow.request.headers.fields]
            pairs = flow.metadata[self._PAIRS] = dlp.response_pairs(self.scrub_pairs, sent)
        return pairs

    def _scrub_fields(self, flow: http.HTTPFlow, fields: tuple[tuple[bytes, bytes], ...]
                      ) -> tuple[tuple[bytes, bytes], ...]:
        pairs = self._pairs(flow)

        def name(key: bytes) -> bytes:
            clean = dlp.scrub(key, pairs)
            return key if clean == key else clean.lower()  # HTTP/2 refuses upper case (trailers aren't normalized)

        return tuple((name(k), dlp.scrub(v, pairs)) for k, v in fields)

    def _scrub_head(self, flow: http.HTTPFlow, resp: http.Response) -> None:
        """The status line's reason phrase, and header names as well as values."""
        resp.data.reason = dlp.scrub(resp.data.reason, self._pairs(flow))
        resp.headers.fields = self._scrub_fields(flow, resp.headers.fields)

    def _trailers(self, flow: http.HTTPFlow, resp: http.Response, scrubbed: bool) -> None:
        # Runs in the response hook, before mitmproxy sends the trailers (streamed or not).
        if not resp.trailers:
            return
        if not flow.request.is_http2:
            # 8.1.1's HTTP/1 server side has no way to send them (it fails the flow on them): drop them.
            resp.trailers = None
            emit("warning", host=flow.request.host, port=flow.request.port, method=flow.request.method,
                 kind="trailers", reason="response trailers dropped (mitmproxy can't send them over HTTP/1)")
        elif scrubbed:
            resp.trailers.fields = self._scrub_fields(flow, resp.trailers.fields)

    def _stream_scrubbed(self, flow: http.HTTPFlow, resp: http.Response) -> None:
        """A streamed reply from a secret's host: decoded on the fly if compressed, then scrubbed."""
        header = resp.headers.get("content-encoding", "")
        codings = dlp.content_codings(header)
        coding = None
        if flow.request.method != "HEAD" and resp.status_code not in (204, 304):  # these have no body
            if codings and (len(codings) != 1 or codings[0] not in dlp.STREAM_CODINGS):
                # br and zstd need libraries outside the stdlib, and an unknown coding can't be read at all.
                # Passing the bytes on would let the agent inflate what the scrubber never saw, and a stream
                # (SSE) can't be buffered to decode later. No byte of the body has left yet, so the agent gets
                # a plain 502 now, which it can act on, rather than a body cut at some random point.
                return self._refuse_reply(flow, f"the streamed response is compressed as {header!r}, which the "
                                                "proxy cannot decode to keep secret values out of it (failing "
                                                "closed)", True)
            if codings:
                coding = codings[0]
                del resp.headers["content-encoding"]  # passed on decoded
            # A scrubbed value is not as long as the real one, and a decoded body not as long as it was sent:
            # the server's length would be wrong (and too short a one spills into the next reply).
            resp.headers.pop("content-length", None)
            chunked = "chunked" in resp.headers.get("transfer-encoding", "").lower()
            if flow.request.http_version == "HTTP/1.1" and resp.http_version != "HTTP/1.0" and not chunked:
                # Rather than delimited by closing the connection, where a reply cut by _stream_failed would
                # look whole (an HTTP/1.0 reply can't be chunked, so it stays that way).
                resp.headers["transfer-encoding"] = "chunked"
        resp.stream = dlp.ResponseStream(self._pairs(flow), coding, lambda reason: self._stream_failed(flow, reason))

    def _stream_failed(self, flow: http.HTTPFlow, reason: str) -> None:
        """Mid-stream, the head has left: nothing more is passed on, and when the server's reply ends
        mitmproxy sees the kill and closes the agent's connection, short of the end of the body."""
        emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, kind="response",
             reason=f"{reason}; the rest of the response is dropped and the reply cut (failing closed)")
        if flow.killable:
            flow.kill()

    def _refuse_reply(self, flow: http.HTTPFlow, reason: str, before_body: bool) -> None:
        """Answer the agent with a 502 instead of the server's reply (not sent yet)."""
        emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, kind="response",
             reason=reason)
        reply = _refusal(502, f"claude-bottle: blocked: {reason}")
        if not flow.request.is_http2:
            reply.headers["connection"] = "close"  # the server's reply may still be arriving on this flow
        if before_body:
            # From responseheaders: mitmproxy still reads the server's body into flow.response, so stream
            # it into nothing and send our own body instead.
            reply.stream = dlp.Replacement(reply.raw_content or b"")
        flow.response = reply
        flow.metadata[self._REFUSED] = True

    def load(self, loader: Any) -> None:
        self._patch_http1_client()

    @staticmethod
    def _patch_http1_client() -> None:
        """Two legal replies that mitmproxy 8.1.1's HTTP/1 client side (reading servers) mishandles, where
        no hook can help: it parses the body as it arrives, without waiting for the responseheaders hook.

        - Trailers after a chunked body: read_body raises NotImplementedError and the flow hangs. They are
          dropped here. (An HTTP/1 server always has an HTTP/1 client: mitmproxy offers the agent the ALPN
          the server chose, and 8.1.1 cannot send trailers over HTTP/1 anyway.)
        - A 1xx informational head (103 Early Hints; 100 or 102): taken for the final reply, which is lost.
          Skipped here, as mitmproxy's own HTTP/2 layer does (101 is left alone).
        If this mitmproxy is not 8.1, nothing is patched; response() then answers a 1xx with a clear 502.
        """
        import h11
        from mitmproxy import version
        from mitmproxy.proxy import events
        from mitmproxy.proxy.layers.http import _http1

        client: Any = _http1.Http1Client
        if getattr(client, "_claude_bottle_patched", False):
            return
        if not version.VERSION.startswith("8.1."):
            emit("warning", kind="mitmproxy", reason=f"mitmproxy {version.VERSION} is not 8.1: HTTP/1 trailers and "
                                                     "1xx replies are left to it")
            return
        informational = re.compile(rb"HTTP/\d\.\d 1(\d\d)[ \r]")
        read_headers, read_body = client.read_headers, client.read_body

        def where(conn: connection.Server) -> dict[str, Any]:
            host, port = conn.address or (None, None)
            return {"host": host, "port": port}

        class DropTrailers:
            def __init__(self, reader: Any, conn: connection.Server) -> None:
                self.reader, self.conn = reader, conn

            def __call__(self, buf: Any) -> Any:
                return self.end(self.reader(buf))

            def read_eof(self) -> Any:
                return self.end(self.reader.read_eof())

            def end(self, event: Any) -> Any:
                if isinstance(event, h11.EndOfMessage) and event.headers:
                    emit("warning", kind="trailers", reason="HTTP/1 response trailers dropped", **where(self.conn))
                    return h11.EndOfMessage()
                return event

        def patched_read_body(self: Any, event: Any) -> Any:
            if not isinstance(self.body_reader, DropTrailers):
                self.body_reader = DropTrailers(self.body_reader, self.conn)
            yield from read_body(self, event)

        def patched_read_headers(self: Any, event: Any) -> Any:
            if isinstance(event, events.DataReceived) and self.request is not None:
                while (m := informational.match(bytes(self.buf)[:16])) and m.group(1) != b"01":
                    # Not logged: CDNs send 103 Early Hints routinely, and skipping one loses nothing.
                    if self.buf.maybe_extract_lines() is None:
                        return  # the rest of that head is still to come
            yield from read_headers(self, event)

        client.read_headers, client.read_body = patched_read_headers, patched_read_body
        client._claude_bottle_patched = True

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
        if _is_ip(host) and not pol.peer_allowed(self.policy, host):
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

    _WS_CLOSE = "claude_bottle_ws_close"  # (close code, reason to the client): the addon closes this WebSocket
    _WS_LIMIT = "claude_bottle_ws_limit"  # the most a client message may hold (in memory, decompressed)
    _WS_CONTROL = "claude_bottle_ws_control"  # (kind, payload) of the client's ping or pong being checked
    WS_MAX_MESSAGE = 64 << 20  # every message, either way: mitmproxy 8.1.1 holds each one whole in memory
    WS_PIECE = 4096  # bytes fed to wsproto at a time under permessage-deflate: at most ~4 MiB inflated

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        mode = flow.metadata[_MODE] = flow.metadata.get(_MODE) or self.policy.dlp.mode(flow.request.host)
        flow.metadata[self._WS_LIMIT] = dlp.MAX_SCAN_BYTES if mode == "scan" else self.WS_MAX_MESSAGE
        if not self._patch_websocket_layer():
            emit("warning", **self._ws_where(flow), kind="mitmproxy",
                 reason="this mitmproxy is not 8.1: a refused WebSocket message is dropped with every later one, "
                        "and the connection is not closed; message sizes are not bounded")

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        """Runs once a message is whole (fragments joined, permessage-deflate undone by wsproto). The layer
        waits for this hook, in both directions, so the scan keeps the order of messages."""
        assert flow.websocket is not None
        # mitmproxy keeps every message of a flow, for as long as it lives; only the last one is read.
        del flow.websocket.messages[:-1]
        message = flow.websocket.messages[-1]
        if flow.metadata.get(self._WS_CLOSE):
            message.drop()  # the WebSocket is being closed: nothing after a refused message passes
            return
        try:
            if message.from_client:
                what = f"WebSocket {'text' if message.is_text else 'binary'} message"
                await self._ws_check(flow, message.content, what, message)
            elif self._scrubbed(flow):  # a server quoting the credential of its handshake
                clean = dlp.scrub(message.content, self._pairs(flow))
                if clean != message.content:
                    message.content = clean
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the message on
            self._ws_refuse(flow, message, 1011, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def claude_bottle_websocket_control(self, flow: http.HTTPFlow) -> None:
        """A ping or pong from the client to a scan or warn host, with a payload (up to 125 bytes of the
        agent's choosing), checked like a message. Only the patched layer raises this hook, and waits for it."""
        kind, payload = flow.metadata.pop(self._WS_CONTROL, ("control frame", b""))
        try:
            await self._ws_check(flow, payload, f"WebSocket {kind}", None)
        except Exception as e:  # noqa: BLE001 - the patched layer would pass the frame on
            self._ws_refuse(flow, None, 1011, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def _ws_check(self, flow: http.HTTPFlow, data: bytes, what: str, message: Any | None) -> None:
        """Placeholders and the DLP scan for what the client sends: a refusal drops `message` (if any) and
        closes the WebSocket."""
        req = flow.request
        mode = flow.metadata.get(_MODE) or self.policy.dlp.mode(req.host)
        secret = self._misplaced(flow, data.decode("latin-1"), None)  # frames are never injected
        if secret is not None:
            return self._ws_refuse(flow, message, 1008, f"{what}: {pol.placeholder_rule(secret, req.host, req.scheme)}",
                                   kind="placeholder", secret=secret.name)
        if mode == "skip" or not data:
            return
        where = {**self._ws_where(flow), "mode": mode}
        if len(data) > dlp.MAX_SCAN_BYTES:
            reason = f"{what} of {len(data)} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP scan limit"
            if mode == "scan":
                return self._ws_refuse(flow, message, 1009, f"{reason} (failing closed)", kind="dlp_error", mode=mode)
            return emit("warning", kind="dlp_limit", reason=f"{reason}: not scanned", **where)
        text = dlp.mask(data, self.placeholders)
        if mode == "warn":
            await self._ws_detect(flow, message, data, what, mode, where)
            if len(self.background) >= MAX_BACKGROUND:
                return emit("warning", kind="dlp_error", reason=f"{what} not scanned: the scanner is busy", **where)
            task = asyncio.get_running_loop().create_task(self._warn_result(text, where))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return
        result = await self.scanner.scan(text)
        if result.verdict == "leak":
            self._ws_refuse(flow, message, 1008, f"{what}: secret detected by gitleaks: {', '.join(result.rules)}",
                            kind="dlp", rules=list(result.rules), mode=mode)
        elif result.verdict != "clean":
            self._ws_refuse(flow, message, 1011, f"{what}: DLP scan failed: {result.reason} (failing closed)",
                            kind="dlp_error", mode=mode)
        else:  # after gitleaks, as for requests: what both catch is named by gitleaks' rule id
            await self._ws_detect(flow, message, data, what, mode, where)

    async def _ws_detect(self, flow: http.HTTPFlow, message: Any | None, data: bytes, what: str, mode: str,
                         where: dict[str, Any]) -> None:
        findings = await asyncio.to_thread(detect.scan, "", [], data, placeholders=self.placeholders)
        if not findings:
            return
        rules = sorted({f.rule for f in findings})
        reason = f"{what}: sensitive data found: {'; '.join(f.describe() for f in findings[:4])}"
        if mode == "scan":
            return self._ws_refuse(flow, message, 1008, reason, kind="dlp", rules=rules, mode=mode)
        emit("warning", kind="dlp", rules=rules, reason=f"{reason} (passed: warn mode)", **where)

    @staticmethod
    def _ws_where(flow: http.HTTPFlow) -> dict[str, Any]:
        req = flow.request
        return {"host": req.host, "port": req.port, "method": req.method, "scheme": "wss" if req.scheme == "https"
                else "ws"}

    @classmethod
    def _ws_close_later(cls, flow: http.HTTPFlow, code: int, reason: str, **fields: Any) -> None:
        """Log the refusal and have the WebSocket closed, both ways, with `code` (the patched layer does it
        once the current hook is done); the client's close frame says why."""
        fields = {**cls._ws_where(flow), **fields}
        emit("blocked", reason=f"{reason}; the WebSocket is closed ({code})", **fields)
        flow.metadata[cls._WS_CLOSE] = (code, f"claude-bottle: blocked: {reason}")

    def _ws_refuse(self, flow: http.HTTPFlow, message: Any | None, code: int, reason: str, **fields: Any) -> None:
        if message is not None:
            message.drop()
        self._ws_close_later(flow, code, reason, **fields)

    @classmethod
    def _patch_websocket_layer(cls) -> bool:
        """mitmproxy 8.1.1's WebSocket layer, with what no hook can do:

        - Close on a refusal: a hook can drop a message, but flow.kill() does nothing to a WebSocket and no
          API closes one. After the hook that asked for it, both sides get a close frame with its code and
          the connection ends, as when a side closes.
        - Bound memory: wsproto inflates permessage-deflate data unbounded, and mitmproxy holds a message
          whole until it ends. Data under deflate is fed to wsproto in small pieces, and a message
          that outgrows its limit (while it is still arriving) closes the WebSocket with 1009. The frame
          being read grows in place (mitmproxy's `bytes +=` copies it whole for every piece of data).
        - Control frames carry data too: a client's ping or pong with a payload is held back and checked
          by the claude_bottle_websocket_control hook before it is passed on, and the reason in a
          client's close frame to a scan host is dropped (its code is kept).
        True when patched (now or before); False when this mitmproxy is not 8.1.
        """
        import time
        from dataclasses import dataclass

        import wsproto.events
        from mitmproxy import version
        from mitmproxy.proxy import commands, events
        from mitmproxy.proxy.layers import websocket as ws_layer
        from wsproto import ConnectionState

        layer_cls: Any = ws_layer.WebsocketLayer
        if getattr(layer_cls, "_claude_bottle_patched", False):
            return True
        if not version.VERSION.startswith("8.1."):
            return False
        relay = layer_cls.relay_messages

        @dataclass
        class ClaudeBottleWebsocketControlHook(commands.StartHook):
            flow: http.HTTPFlow  # the frame's kind and payload are in its metadata: hooks take one argument
            name = "claude_bottle_websocket_control"

        def holding(ws: Any, held: list[Any], strip_reasons: bool) -> Any:
            for ev in type(ws).events(ws):
                if isinstance(ev, (wsproto.events.Ping, wsproto.events.Pong)) and ev.payload:
                    held.append(ev)
                elif strip_reasons and isinstance(ev, wsproto.events.CloseConnection) and ev.reason:
                    yield wsproto.events.CloseConnection(ev.code)
                else:
                    yield ev

        def pass_held(self: Any, held: list[Any]) -> Any:
            for ev in held:
                if self.flow.metadata.get(cls._WS_CLOSE):
                    return
                self.flow.metadata[cls._WS_CONTROL] = (type(ev).__name__.lower(), bytes(ev.payload))
                yield ClaudeBottleWebsocketControlHook(self.flow)
                if not self.flow.metadata.get(cls._WS_CLOSE):
                    yield self.server_ws.send2(ev)

        def pieces(self: Any, event: Any) -> Any:
            deflate = "permessage-deflate" in self.flow.response.headers.get("sec-websocket-extensions", "").lower()
            if not (isinstance(event, events.DataReceived) and deflate and len(event.data) > cls.WS_PIECE):
                yield event
                return
            for i in range(0, len(event.data), cls.WS_PIECE):
                yield events.DataReceived(event.connection, event.data[i : i + cls.WS_PIECE])

        def over_limit(self: Any, event: Any) -> None:
            from_client = event.connection == self.context.client
            buf = (self.client_ws if from_client else self.server_ws).frame_buf
            limit = self.flow.metadata.get(cls._WS_LIMIT, cls.WS_MAX_MESSAGE) if from_client else cls.WS_MAX_MESSAGE
            if sum(map(len, buf)) + 64 * len(buf) > limit:  # 64: what each fragment costs beside its bytes
                who = "client" if from_client else "server"
                scan = from_client and limit == dlp.MAX_SCAN_BYTES
                cls._ws_close_later(self.flow, 1009, f"a WebSocket message from the {who} is over the {limit}-byte "
                                    f"{'DLP scan' if scan else 'message'} limit{' (failing closed)' if scan else ''}",
                                    kind="dlp_error" if scan else "websocket")

        def close(self: Any) -> Any:
            code, reason = self.flow.metadata[cls._WS_CLOSE]
            for ws, why in ((self.server_ws, "policy violation"), (self.client_ws, reason)):
                if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    yield ws.send2(wsproto.events.CloseConnection(code, why))  # reason cut to 123 bytes
                yield commands.CloseConnection(ws.conn)
                ws.frame_buf = [b""]  # a message cut short is not kept
            data = self.flow.websocket
            data.timestamp_end, data.closed_by_client = time.time(), False
            data.close_code, data.close_reason = code, reason
            yield ws_layer.WebsocketEndHook(self.flow)
            self.flow.live = False
            self._handle_event = self.done

        def relay_messages(self: Any, event: Any) -> Any:
            for piece in pieces(self, event):
                for ws in (self.client_ws, self.server_ws):
                    if type(ws.frame_buf[-1]) is bytes:  # grown in place, not copied whole for every piece
                        ws.frame_buf[-1] = bytearray(ws.frame_buf[-1])
                held: list[Any] = []
                if isinstance(piece, events.DataReceived) and piece.connection == self.context.client:
                    strip = self.flow.metadata.get(_MODE) == "scan"
                    self.client_ws.events = lambda: holding(self.client_ws, held, strip)
                try:
                    yield from relay(self, piece)
                finally:
                    self.client_ws.__dict__.pop("events", None)
                if self._handle_event != self.relay_messages:
                    return  # a side closed it
                yield from pass_held(self, held)
                if isinstance(piece, events.DataReceived) and not self.flow.metadata.get(cls._WS_CLOSE):
                    over_limit(self, piece)
                if self.flow.metadata.get(cls._WS_CLOSE):
                    yield from close(self)
                    return

        layer_cls.relay_messages = relay_messages
        layer_cls._claude_bottle_patched = True
        return True

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
