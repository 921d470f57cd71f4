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
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
# The bundle's environment comes from its image alone; these overrides exist for the tests on loopback.
GITLEAKS = os.environ.get("CLAUDE_BOTTLE_GITLEAKS", "/usr/local/bin/gitleaks")
CONFIG = os.environ.get("CLAUDE_BOTTLE_GITLEAKS_CONFIG", os.path.join(HERE, "gitleaks.toml"))
TIMEOUT_S = float(os.environ.get("CLAUDE_BOTTLE_DLP_TIMEOUT", "10"))
# gitleaks reads about 1 MiB a second on one core: 4 MiB stays well inside the timeout.
MAX_SCAN_BYTES = int(os.environ.get("CLAUDE_BOTTLE_DLP_MAX_BYTES", str(4 << 20)))
QUEUE_WAIT_S = 30.0  # waiting for a free scanner slot; then the request fails closed ("scanner busy")
LEAK_EXIT = 99
MASK = b"CLAUDE_BOTTLE_PLACEHOLDER"  # what a placeholder becomes before a scan (it looks like a key itself)
_RULE_ID = re.compile(r"[^A-Za-z0-9_.:-]")


def gitleaks_argv(binary: str = GITLEAKS, config: str = CONFIG) -> list[str]:
    """`gitleaks stdin` with our config only: -c beats GITLEAKS_CONFIG and any .gitleaks.toml, allow
    comments in the scanned text are ignored, and the report is redacted JSON on stdout."""
    return [binary, "stdin", "-c", config, "--ignore-gitleaks-allow", "--redact", "--exit-code", str(LEAK_EXIT),
            "-f", "json", "-r", "-", "--no-banner", "-l", "error"]  # fmt: skip


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
        )  # fmt: skip
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


class Scanner:
    """At most `slots` gitleaks at once (one per core), so a burst of big bodies can't starve the rest."""

    def __init__(self, argv: list[str] | None = None, timeout: float = TIMEOUT_S, slots: int | None = None,
                 queue_wait: float = QUEUE_WAIT_S) -> None:  # fmt: skip
        self.argv = argv or gitleaks_argv()
        self.cwd = os.path.dirname(CONFIG) or "/"
        self.timeout = timeout
        self.queue_wait = queue_wait
        self.slots = asyncio.Semaphore(slots or max(2, os.cpu_count() or 2))

    async def scan(self, data: bytes) -> ScanResult:
        try:
            await asyncio.wait_for(self.slots.acquire(), self.queue_wait)
        except asyncio.TimeoutError:
            return ScanResult("error", reason=f"scanner busy for {self.queue_wait:g} s")
        try:
            return await run_gitleaks(data, self.argv, self.timeout, self.cwd)
        finally:
            self.slots.release()


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
    """What gitleaks reads for one request: URL, headers (Basic credentials decoded) and body, placeholders masked."""
    lines = [url.encode("utf-8", "surrogateescape")]
    for name, value in headers:
        lines += [name + b": " + view for view in header_views(value)]
    return mask(b"\n".join(lines) + b"\n\n" + body, placeholders)


# ---------- keeping real values out of responses ----------


def scrub(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    for real, placeholder in pairs:
        data = data.replace(real, placeholder)
    return data


class Scrubber:
    """A response stream callable that swaps real values back to placeholders, even across chunks.

    Only the tail of a chunk that could start a real value is held back, so server-sent events (which
    end in a blank line) still reach the agent one by one. As in mitmproxy's stream contract, b"" ends
    the stream. This catches a careless server quoting a credential back; a server that means to hand
    the agent its credential can always encode it first, which no proxy can see through.
    """

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
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
