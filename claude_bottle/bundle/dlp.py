"""Request DLP and credential injection for the bundle's addon: gitleaks on asyncio, and pure helpers.

Stdlib only and free of mitmproxy, so unit tests drive it directly (with the real gitleaks binary when
one is present). Nothing here ever logs or returns a secret value or a gitleaks match: a scan yields
rule ids, and the report is asked for with --redact anyway.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
# The bundle's environment comes from its image alone; these overrides exist for the tests on loopback.
GITLEAKS = os.environ.get("CLAUDE_BOTTLE_GITLEAKS", "/usr/local/bin/gitleaks")
CONFIG = os.environ.get("CLAUDE_BOTTLE_GITLEAKS_CONFIG", os.path.join(HERE, "gitleaks.toml"))
TIMEOUT_S = float(os.environ.get("CLAUDE_BOTTLE_DLP_TIMEOUT", "10"))
# gitleaks reads about 1 MiB a second on one core: 4 MiB stays well inside the timeout.
MAX_SCAN_BYTES = int(os.environ.get("CLAUDE_BOTTLE_DLP_MAX_BYTES", str(4 << 20)))
QUEUE_WAIT_S = 30.0  # waiting for a free scanner slot; then the request fails closed ("scanner busy")
# The bundle's long-running scanner (scanner/main.go: gitleaks' engine, rules loaded once), set by the
# supervisor when the image has it. Unset: one `gitleaks stdin` per scan, as the loopback tests run it.
SCANNER_SOCKET = os.environ.get("CLAUDE_BOTTLE_SCANNER_SOCKET", "")
MAX_REPLY_BYTES = 1 << 20  # a reply is rule ids: anything bigger is not our scanner
LEAK_EXIT = 99
MASK = b"CLAUDE_BOTTLE_PLACEHOLDER"  # what a placeholder becomes before a scan (it looks like a key itself)
_RULE_ID = re.compile(r"[^A-Za-z0-9_.:-]")


def gitleaks_argv(binary: str = GITLEAKS, config: str = CONFIG) -> list[str]:
    """`gitleaks stdin` with our config only: -c beats GITLEAKS_CONFIG and any .gitleaks.toml, allow
    comments in the scanned text are ignored, and the report is redacted JSON on stdout."""
    return [binary, "stdin", "-c", config, "--ignore-gitleaks-allow", "--redact", "--exit-code", str(LEAK_EXIT),
            "-f", "json", "-r", "-", "--no-banner", "-l", "error"]


@dataclass(frozen=True)
class ScanResult:
    verdict: str  # "clean", "leak" or "error"
    rules: tuple[str, ...] = ()
    reason: str = ""


def parse_report(out: bytes) -> tuple[str, ...]:
    """Rule ids from a gitleaks JSON report; a report we can't read still counts as a leak."""
    try:
        findings = json.loads(out.decode("utf-8", "replace"))
        ids = {_RULE_ID.sub("", str(f.get("RuleID", "")))[:80] for f in findings if isinstance(f, dict)}
    except (ValueError, TypeError, AttributeError):
        return ("unreadable-report",)
    return tuple(sorted(i for i in ids if i)) or ("unnamed-rule",)


async def run_gitleaks(data: bytes, argv: list[str], timeout: float, cwd: str = "/") -> ScanResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # error text could quote what it scanned: never kept
            cwd=cwd,  # gitleaks looks for a .gitleaksignore here: only the image's files are there
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
    except OSError as e:
        return ScanResult("error", reason=f"cannot run gitleaks ({e.strerror or type(e).__name__})")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        return ScanResult("error", reason=f"gitleaks timed out after {timeout:g} s")
    except OSError as e:  # a broken pipe when gitleaks dies early
        await proc.wait()
        return ScanResult("error", reason=f"gitleaks failed ({e.strerror or type(e).__name__})")
    if proc.returncode == 0:
        return ScanResult("clean")
    if proc.returncode == LEAK_EXIT:
        return ScanResult("leak", parse_report(out))
    return ScanResult("error", reason=f"gitleaks failed (exit {proc.returncode})")


def parse_reply(payload: bytes) -> ScanResult:
    """The scanner's JSON reply: {"rules": [...]} (empty: clean) or {"error": "..."}; anything else is
    an error, so a scanner gone wrong fails closed."""
    try:
        reply = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return ScanResult("error", reason="unreadable reply from the scanner")
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return ScanResult("error", reason=f"scanner: {reply['error'][:200]}")
    rules = reply.get("rules") if isinstance(reply, dict) else None
    if not isinstance(rules, list):
        return ScanResult("error", reason="unreadable reply from the scanner")
    if not rules:
        return ScanResult("clean")
    ids = {_RULE_ID.sub("", str(r))[:80] for r in rules}
    return ScanResult("leak", tuple(sorted(i for i in ids if i)) or ("unnamed-rule",))


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Scanner:
    """Scans through the bundle's scanner on its Unix socket (`socket_path`, default $CLAUDE_BOTTLE_SCANNER_SOCKET)
    over a small pool of kept-open connections; without a socket, one `gitleaks stdin` per scan.

    At most `slots` scans at once: with gitleaks processes one per core, so a burst of big bodies can't
    starve the rest; with the scanner a few per core (it scans on every core, a small request in well
    under a millisecond). Every failure (scanner down, timed out, a broken reply) is an "error" verdict: the
    addon fails closed on it.
    """

    def __init__(self, argv: list[str] | None = None, timeout: float = TIMEOUT_S, slots: int | None = None,
                 queue_wait: float = QUEUE_WAIT_S, socket_path: str | None = None) -> None:
        self.socket_path = SCANNER_SOCKET if socket_path is None else socket_path
        self.argv = argv or gitleaks_argv()
        self.cwd = os.path.dirname(CONFIG) or "/"
        self.timeout = timeout
        self.queue_wait = queue_wait
        cores = os.cpu_count() or 2
        self.slots = asyncio.Semaphore(slots or (max(4, 2 * cores) if self.socket_path else max(2, cores)))
        self.idle: list[Connection] = []  # open connections to the scanner, none of them mid-request

    async def scan(self, data: bytes) -> ScanResult:
        try:
            await asyncio.wait_for(self.slots.acquire(), self.queue_wait)
        except asyncio.TimeoutError:
            return ScanResult("error", reason=f"scanner busy for {self.queue_wait:g} s")
        try:
            if self.socket_path:
                return await self._scan_socket(data)
            return await run_gitleaks(data, self.argv, self.timeout, self.cwd)
        finally:
            self.slots.release()

    async def _scan_socket(self, data: bytes) -> ScanResult:
        if len(data) >= 1 << 32:
            return ScanResult("error", reason=f"{len(data)} bytes is more than one scan can carry")
        while True:
            reused = bool(self.idle)
            if reused:
                conn = self.idle.pop()
            else:
                waited: list[OSError] = []
                try:
                    conn = await asyncio.wait_for(self._connect(waited), self.timeout)
                except (OSError, asyncio.TimeoutError) as e:
                    failure = waited[-1] if waited and isinstance(e, asyncio.TimeoutError) else e
                    why = failure.strerror if isinstance(failure, OSError) and failure.strerror else "timed out"
                    if waited:
                        why += f", after waiting {self.timeout:g} s for it to start"
                    return ScanResult("error", reason=f"the scanner is not answering on {self.socket_path} ({why})")
            try:
                result = await asyncio.wait_for(self._exchange(conn, data), self.timeout)
            except asyncio.TimeoutError:
                conn[1].close()  # its reply may still come: the connection is out of step, never reused
                return ScanResult("error", reason=f"the scanner timed out after {self.timeout:g} s")
            except (OSError, EOFError, ValueError) as e:  # IncompleteReadError is an EOFError
                conn[1].close()
                if reused:  # the scanner closed it while idle (it restarted): so are the others; once more, anew
                    self._drop_idle()
                    continue
                return ScanResult("error", reason=f"the scanner connection failed ({type(e).__name__})")
            except BaseException:  # cancelled mid-request
                conn[1].close()
                raise
            if result.verdict == "error":
                conn[1].close()  # the scanner may hang up after an error reply: start afresh next time
            else:
                self.idle.append(conn)
            return result

    async def _connect(self, waited: list[OSError]) -> Connection:
        """A new connection; while the scanner is still starting (or restarting: its socket is missing
        or refuses), wait for it, up to the caller's timeout, keeping in `waited` why. The agent starts
        beside the bundle, so its first request can come before the scanner has loaded its rules."""
        while True:
            try:
                return await asyncio.open_unix_connection(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                waited[:] = [e]
                await asyncio.sleep(0.02)

    @staticmethod
    async def _exchange(conn: Connection, data: bytes) -> ScanResult:
        reader, writer = conn
        writer.write(len(data).to_bytes(4, "big"))
        writer.write(data)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(4), "big")
        if size > MAX_REPLY_BYTES:
            raise ValueError("reply too big")
        return parse_reply(await reader.readexactly(size))

    def _drop_idle(self) -> None:
        while self.idle:
            self.idle.pop()[1].close()

    def close(self) -> None:
        """Close the kept-open connections (before their event loop ends)."""
        self._drop_idle()


# ---------- placeholders and injection ----------

_BASIC = re.compile(rb"^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$", re.IGNORECASE)


def basic_decoded(value: bytes) -> bytes | None:
    """The user:password of a `Basic` credential (git sends tokens this way), or None."""
    m = _BASIC.match(value)
    if m is None:
        return None
    raw = m.group(1)
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_" if b"-" in raw or b"_" in raw else None)
    except (binascii.Error, ValueError):
        return None


def header_views(value: bytes) -> list[bytes]:
    """A header value as sent, plus its decoded Basic credential when it is one."""
    decoded = basic_decoded(value)
    return [value] if decoded is None else [value, decoded]


def swap(value: str, placeholder: str, real: str) -> str:
    """`value` with the placeholder replaced by the real value, inside a Basic credential too."""
    if placeholder in value:
        return value.replace(placeholder, real)
    decoded = basic_decoded(value.encode("utf-8", "surrogateescape"))
    if decoded is not None and placeholder.encode() in decoded:
        swapped = decoded.replace(placeholder.encode(), real.encode("utf-8"))
        return "Basic " + base64.b64encode(swapped).decode("ascii")
    return value


def mask(data: bytes, placeholders: list[bytes]) -> bytes:
    for p in placeholders:
        data = data.replace(p, MASK)
    return data


def scan_text(url: str, headers: list[tuple[bytes, bytes]], body: bytes, placeholders: list[bytes]) -> bytes:
    """What gitleaks reads for one request: URL, headers and body, placeholders masked.

    Headers are one line each (Basic credentials decoded), a valid Sec-WebSocket-Key left out
    (websocket_key_views), and a header sent more than once is also one line of its values run
    together: gitleaks' rules never span lines, so a value cut in two over two lines is seen whole.
    """
    lines = [url.encode("utf-8", "surrogateescape")]
    names = [name.lower() for name, _ in headers]
    for (name, value), low in zip(headers, names):
        views = websocket_key_views(value) if low == b"sec-websocket-key" and names.count(low) == 1 else None
        lines += [name + b": " + view for view in (header_views(value) if views is None else views)]
    lines += joined_repeats(headers)
    return mask(b"\n".join(lines) + b"\n\n" + body, placeholders)


def websocket_key_views(value: bytes) -> list[bytes] | None:
    """What to scan of a Sec-WebSocket-Key, or None when the value is not one RFC 6455 allows (it is
    then scanned like any header).

    A valid key is 16 random bytes in base64: 22 characters, the last of them one with its low 4 bits
    clear, then "==". gitleaks takes it for a generic API key, so every handshake to a scanned host was
    refused; exactly that shape is left out. Its 16 bytes are scanned instead when they are printable
    text, which a random key practically never is (about 1 in 10^7) and one chosen to carry data is.
    """
    if re.fullmatch(rb"[A-Za-z0-9+/]{21}[AQgw]==", value) is None:
        return None
    raw = base64.b64decode(value)
    return [raw] if all(0x20 <= b < 0x7F for b in raw) else []


def joined_repeats(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """For each header name sent more than once: one `name: v1v2...` line of its values run together."""
    values: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    return [name + b": " + b"".join(vs) for name, vs in values.items() if len(vs) > 1]


# ---------- request bodies: Content-Encoding undone within a bound ----------


@dataclass(frozen=True)
class Decoded:
    body: bytes  # the decoded body; when `over`, only its first limit + 1 bytes
    over: bool  # decoded, the body is longer than the limit


def decode_body(raw: bytes, content_encoding: str, limit: int = MAX_SCAN_BYTES) -> Decoded:
    """A request body with its Content-Encoding undone (codings in the reverse of the order they were
    applied), in bounded memory: no stage ever holds more than `limit` + 1 decoded bytes, so a small
    gzip bomb stops early instead of inflating to gigabytes.

    Raises ValueError, with a reason that names no data and quotes nothing the client sent, for a
    coding the stdlib cannot undo within a bound (br, zstd), an unknown one, or corrupt or cut-off data.
    """
    data = raw
    for coding in reversed(content_codings(content_encoding)):
        if coding == "none":  # not a registered coding, but mitmproxy (and some servers) take it for identity
            continue
        if coding in ("br", "zstd", "compress", "x-compress"):
            raise ValueError(f"{coding} cannot be decoded within a size bound")
        if coding not in STREAM_CODINGS:
            raise ValueError("an unknown coding")
        data, over = inflate_bounded(data, coding, limit + 1)
        if over:
            return Decoded(data, True)
    return Decoded(data, len(data) > limit)


def inflate_bounded(data: bytes, coding: str, cap: int) -> tuple[bytes, bool]:
    """gzip (members back to back) or deflate (zlib-wrapped or raw) undone until `cap` bytes are out:
    (at most `cap` bytes of output, whether there was more). Bytes after the end of the compressed
    data follow the output as they are, so a scan sees them too (a server that keeps the body as it
    was sent keeps them). Raises ValueError on corrupt or cut-off data."""
    if not data:
        return b"", False
    gzip = coding in ("gzip", "x-gzip")
    wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    if gzip or not wrapped:
        return _inflate(data, 16 + zlib.MAX_WBITS if gzip else -zlib.MAX_WBITS, cap, gzip)
    try:
        return _inflate(data, zlib.MAX_WBITS, cap, False)
    except ValueError:  # as mitmproxy and browsers do: a raw stream whose first bytes look like a header
        return _inflate(data, -zlib.MAX_WBITS, cap, False)


def _inflate(data: bytes, wbits: int, cap: int, gzip: bool) -> tuple[bytes, bool]:
    out = bytearray()
    obj = zlib.decompressobj(wbits)
    rest = data
    try:
        while True:
            out += obj.decompress(rest, cap + 1 - len(out))  # zlib stops once that much is out
            if len(out) > cap:
                return bytes(out[:cap]), True
            if obj.eof:
                rest = obj.unused_data
                if gzip and rest[:2] == b"\x1f\x8b":
                    obj = zlib.decompressobj(wbits)
                    continue
                break
            if not obj.unconsumed_tail:  # all input read, short of the end: zlib gave all it could
                raise ValueError("the compressed body ended early")
            rest = obj.unconsumed_tail
    except zlib.error:
        raise ValueError("corrupt compressed data") from None
    out += rest[: cap + 1 - len(out)]
    if len(out) > cap:
        return bytes(out[:cap]), True
    return bytes(out), False


# ---------- keeping real values out of responses ----------

Pairs = list[tuple[bytes, bytes]]  # (real value, what the agent sees instead), applied in order


def scrub(data: bytes, pairs: Pairs) -> bytes:
    for real, placeholder in pairs:
        data = data.replace(real, placeholder)
    return data


def _base64_core(value: bytes, offset: int, encode: Callable[[bytes], bytes]) -> bytes:
    """The base64 characters that only `value`'s bits decide when it starts `offset` bytes into a longer
    encoded string: the same whatever surrounds it (padding, neighbours) at that alignment."""
    encoded = encode(b"\0" * offset + value)
    return encoded[-(-8 * offset // 6) : 8 * (offset + len(value)) // 6]


def encoded_pairs(pairs: Pairs) -> Pairs:
    """Each real value as it shows inside any base64 text (standard or URL-safe, all three alignments),
    mapped to the placeholder's form at the same alignment. Cores under 12 characters (from values
    under 9 bytes) are left out: too short to be told from chance."""
    out: Pairs = []
    for real, placeholder in pairs:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            for offset in range(3):
                core = _base64_core(real, offset, encode)
                if len(core) >= 12 and core not in (c for c, _ in out):  # the alphabets differ only in +/ vs -_
                    out.append((core, _base64_core(placeholder, offset, encode)))
    return out


def basic_pairs(header_values: Iterable[bytes], pairs: Pairs) -> Pairs:
    """For each `Basic` credential in a request as it was sent (after injection): the exact base64
    token, which a server quoting the header echoes, mapped to the token of the placeholder form."""
    out: Pairs = []
    for value in header_values:
        m = _BASIC.match(value)
        decoded = basic_decoded(value)
        if m is None or decoded is None:
            continue
        shown = scrub(decoded, pairs)
        if shown != decoded:
            out.append((m.group(1), base64.b64encode(shown)))
    return out


def response_pairs(pairs: Pairs, request_header_values: Iterable[bytes] = ()) -> Pairs:
    """Everything to scrub from one response: the injected Basic tokens whole first (they contain the
    value's base64 core, which would otherwise be replaced piecemeal), then the raw values, then the
    values' base64 forms."""
    return basic_pairs(request_header_values, pairs) + list(pairs) + encoded_pairs(pairs)


class Scrubber:
    """Swaps real values back to placeholders in a stream of chunks, even across chunk borders.

    Only the tail of a chunk that could start a real value is held back, so server-sent events (which
    end in a blank line) still reach the agent one by one. A chunk may come back as b"" (all held
    back); calling with b"" means the end of the stream and flushes what is held. This catches a
    careless server quoting a credential back; a server that means to hand the agent its credential
    can always encode it first, which no proxy can see through. ResponseStream wraps this for
    mitmproxy, for which an empty chunk is not "nothing yet".
    """

    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs
        self.carry = b""

    def __call__(self, chunk: bytes) -> bytes:
        data = scrub(self.carry + chunk, self.pairs)
        if not chunk:  # end of the stream
            self.carry = b""
            return data
        hold = 0
        for real, _ in self.pairs:
            for k in range(min(len(real) - 1, len(data)), hold, -1):
                if data.endswith(real[:k]):
                    hold = k
                    break
        self.carry = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold]


STREAM_CODINGS = ("gzip", "x-gzip", "deflate")  # what the stdlib can undo as it streams (br, zstd: not)


def content_codings(header: str) -> list[str]:
    """A Content-Encoding header's codings, in the order they were applied; identity left out."""
    return [c for c in (part.strip().lower() for part in header.split(",")) if c and c != "identity"]


class Inflater:
    """gzip or deflate undone on the fly, chunk by chunk; raises zlib.error (or EOFError) on a bad stream.

    Nothing is kept between chunks but zlib's own window. Output comes in pieces of at most PIECE
    bytes; what one chunk inflates to is bounded by deflate's own limit (about 1000:1).
    """

    PIECE = 64 << 10

    def __init__(self, coding: str) -> None:
        self.gzip = coding in ("gzip", "x-gzip")
        self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None
        self.head = b""  # deflate: zlib-wrapped or raw is told by the first two bytes, as browsers do
        self.fed = False
        self.done = False  # the compressed data has ended; bytes after it are dropped

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.fed = self.fed or bool(data)
        if self.obj is None:
            self.head += data
            if len(self.head) < 2:
                return
            data, self.head = self.head, b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self.obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        while data and not self.done:
            if self.obj.eof:
                if not (self.gzip and b"\x1f\x8b".startswith(data[:2])):
                    self.done = True  # trailing bytes after the end: ignored, as browsers do
                    return
                self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip allows members back to back
            out = self.obj.decompress(data, self.PIECE)
            if out:
                yield out
            data = self.obj.unused_data if self.obj.eof else self.obj.unconsumed_tail

    def finish(self) -> Iterator[bytes]:
        if self.fed and not self.done and (self.obj is None or not self.obj.eof):
            raise EOFError("the compressed body ended early")
        yield from ()


class ResponseStream:
    """The stream callable for a response from a secret's host, under mitmproxy 8.1.1: undoes gzip or
    deflate (`coding`), scrubs, and hands back an iterable of non-empty chunks.

    Never b"": mitmproxy passes it on as a chunk, and for an HTTP/1 chunked reply an empty chunk is the
    end marker, so a held-back chunk would end an event stream early. A chunk that cannot be decoded
    calls `on_error` once (with a reason that never quotes the data) and nothing more is passed on.
    Exceptions never reach mitmproxy: this runs inside its protocol layer, not in a hook.
    """

    def __init__(self, pairs: Pairs, coding: str | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.scrubber = Scrubber(pairs)
        self.inflater = Inflater(coding) if coding else None
        self.on_error = on_error
        self.failed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.failed:
            return []
        out: list[bytes] = []
        try:
            if self.inflater is None:
                pieces: Iterable[bytes] = [chunk] if chunk else []
            else:
                pieces = self.inflater.feed(chunk) if chunk else self.inflater.finish()
            for piece in pieces:
                if piece:  # b"" would flush the scrubber's held-back tail: only at the very end
                    out.append(self.scrubber(piece))
            if not chunk:
                out.append(self.scrubber(b""))
        except Exception as e:  # noqa: BLE001 - whatever went wrong, nothing undecoded passes
            self.failed = True
            reason = {EOFError: "it ended early", zlib.error: "corrupt compressed data"}.get(type(e), type(e).__name__)
            if self.on_error is not None:
                try:
                    self.on_error(f"cannot decode the streamed response body ({reason})")
                except Exception:  # noqa: BLE001 - still nothing more is passed on
                    pass
            return []
        return [c for c in out if c]


class Replacement:
    """A stream callable that drops all the server sends and passes `body` on once instead (a refusal
    decided after mitmproxy started reading the server's reply)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __call__(self, chunk: bytes) -> list[bytes]:
        out, self.body = [self.body] if self.body else [], b""
        return out
