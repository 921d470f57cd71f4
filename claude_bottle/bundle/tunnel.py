"""CONNECT tunnels through pipelock that the addon opens itself, before mitmproxy connects anywhere.

Why not mitmproxy's upstream mode: it answers the agent's CONNECT with 200 before it has asked
pipelock anything and only dials when the client speaks, so a server that speaks first (SMTP, MySQL)
hangs, and pipelock's refusal reaches the agent as an opaque 502 or EOF with pipelock's reason lost.
So mitmdump runs in regular mode, which dials at CONNECT time, and the addon routes that dial here:
a CONNECT to pipelock whose answer (200, or a refusal with pipelock's own words) comes first.

Stdlib asyncio only, free of mitmproxy, so unit tests drive it against a stand-in proxy.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

HEAD_LIMIT = 16 << 10  # a CONNECT reply's head; pipelock's are a few hundred bytes
BODY_LIMIT = 4 << 10  # of a refusal's body: pipelock puts its reason there
REASON_LIMIT = 300
_STATUS = re.compile(rb"^HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\r\n")
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*\r\n", re.IGNORECASE)
# pipelock's own prefix on a refused CONNECT; the addon says "pipelock:" instead.
_PREFIXES = ("CONNECT blocked: ", "blocked: ")


@dataclass(frozen=True)
class Refused:
    """pipelock's answer was not 2xx (status 0: it could not be asked at all)."""

    status: int
    reason: str

    @property
    def blocked(self) -> bool:
        """A policy refusal (403, or 429 for its rate limit) rather than a failure to reach the target."""
        return self.status in (403, 429)


@dataclass(frozen=True)
class Tunnel:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(host: str, port: int) -> bytes:
    """The CONNECT pipelock gets; an international name goes as its IDNA form (UnicodeError if it has none)."""
    target = authority(host if host.isascii() else host.encode("idna").decode("ascii"), port)
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii")


def reason_text(status: int, phrase: bytes, body: bytes) -> str:
    """One printable line saying why: the body's first line without pipelock's prefix, else the phrase."""
    text = body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    text = text or phrase.decode("latin-1").strip() or f"status {status}"
    return "".join(c if c.isprintable() else "?" for c in text)[:REASON_LIMIT]


def parse_head(head: bytes) -> tuple[int, bytes, int]:
    """(status, reason phrase, content length) of a reply head; ValueError when it is no HTTP reply."""
    match = _STATUS.match(head)
    if match is None:
        raise ValueError("not an HTTP reply")
    length = _LENGTH.search(head)
    return int(match.group(1)), match.group(2) or b"", int(length.group(1)) if length else 0


async def open_tunnel(proxy: tuple[str, int], host: str, port: int, timeout: float) -> Tunnel | Refused:
    """A CONNECT tunnel to host:port through the proxy, or why not. pipelock dials the target before it
    answers 200 (with its SNI check off), so a server's greeting may already be buffered in the reader."""
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy, limit=HEAD_LIMIT), timeout)
        writer.write(connect_request(host, port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status, phrase, length = parse_head(head)
        if 200 <= status < 300:
            return Tunnel(reader, writer)
        body = b""
        if length:
            body = await asyncio.wait_for(reader.readexactly(min(length, BODY_LIMIT)), timeout)
        writer.close()
        return Refused(status, reason_text(status, phrase, body))
    except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        if writer is not None:
            writer.close()
        what = "timed out" if isinstance(e, asyncio.TimeoutError) else type(e).__name__
        return Refused(0, f"pipelock did not answer the CONNECT for {authority(host, port)} ({what})")


class StandIn:
    """A one-shot loopback listener that mitmproxy's own connect can reach; the addon then swaps the
    tunnel in as that connection's streams (no byte is ever copied through here)."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> tuple[str, int]:
        def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()
            self.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0, backlog=1)
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
