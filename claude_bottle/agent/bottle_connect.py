#!/usr/bin/env python3
"""bottle-connect HOST PORT: a TCP connection to HOST:PORT through the bottle's proxy, on stdin/stdout.

Installed in the agent as /etc/claude-bottle/bottle-connect and used as ssh's ProxyCommand
(`ProxyCommand /etc/claude-bottle/bottle-connect %h %p`). It asks the proxy named by $HTTPS_PROXY
(the bundle) for an HTTP CONNECT tunnel, then copies bytes both ways until either side closes.
On failure it prints one line, `bottle-connect: ...`, on stderr and exits 1: the bundle refused the
target (403: no rule names that host and port), the proxy is unreachable, or it answered something
that is not an HTTP reply. Exit 2 is a usage error. Python 3 standard library only.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import urllib.parse

TIMEOUT = 60.0  # connecting to the proxy, and waiting for its answer (it connects to the target first)
MAX_HEAD = 16384
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
_STATUS = re.compile(r"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")
_HOST = re.compile(r"[A-Za-z0-9._:%-]{1,255}")  # names and IP literals; nothing that could end a line


class Failure(Exception):
    """One line for stderr."""


def proxy_address(environ: dict[str, str]) -> tuple[str, int]:
    for var in PROXY_VARS:
        value = environ.get(var, "").strip()
        if value:
            break
    else:
        raise Failure("no proxy is configured (HTTPS_PROXY is not set); this runs inside a claude-bottle agent")
    parts = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise Failure(f"{var}={value!r} is not a proxy URL of the form http://HOST:PORT")
    return parts.hostname, port


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(host: str, port: str) -> tuple[str, int]:
    host = host.strip("[]")
    if not _HOST.fullmatch(host):
        raise ValueError(f"invalid host {host[:80]!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port[:20]!r}")
    return host, int(port)


def _read_body(sock: socket.socket, head: bytes, early: bytes) -> str:
    """The first line of a refusal's body (the bundle says why there), read briefly and bounded."""
    match = re.search(rb"(?im)^content-length:\s*([0-9]{1,6})\s*$", head)
    want = min(int(match.group(1)), 4096) if match else 4096
    body = early
    sock.settimeout(2.0)
    try:
        while len(body) < want:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    text = body[:want].decode("utf-8", "replace").strip()
    return text.splitlines()[0][:300] if text else ""


def open_tunnel(proxy: tuple[str, int], host: str, port: int, timeout: float = TIMEOUT) -> tuple[socket.socket, bytes]:
    """A socket tunnelled to host:port, and any bytes the far side already sent after the proxy's 200."""
    where = authority(*proxy)
    try:
        sock = socket.create_connection(proxy, timeout=timeout)
    except OSError as exc:
        raise Failure(f"cannot reach the bottle's proxy at {where}: {exc.strerror or exc}") from None
    target = authority(host, port)
    try:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEAD:
                raise Failure(f"malformed reply from the proxy at {where}: no end of headers in {MAX_HEAD} bytes")
            chunk = sock.recv(4096)
            if not chunk:
                said = f": {head[:80]!r}" if head else ""
                raise Failure(f"the proxy at {where} closed the connection before answering{said}")
            head += chunk
    except socket.timeout:
        sock.close()
        raise Failure(f"the proxy at {where} did not answer within {timeout:g} s") from None
    except OSError as exc:
        sock.close()
        raise Failure(f"the connection to the proxy at {where} failed: {exc.strerror or exc}") from None
    except Failure:
        sock.close()
        raise
    head, _, early = head.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    match = _STATUS.fullmatch(status_line)
    if match is None:
        sock.close()
        raise Failure(f"malformed reply from the proxy at {where}: {status_line[:80]!r}")
    code = int(match.group(1))
    if code == 200:
        sock.settimeout(None)
        return sock, early
    reason = _read_body(sock, head, early) or (match.group(2) or "").strip()
    sock.close()
    if code == 403:
        rule = "ssh://" + (authority(host, port) if port != 22 else f"[{host}]" if ":" in host else host)
        raise Failure(f"{target} refused by the bottle's egress rules (403: {reason}); "
                      f"only a rule such as \"{rule}\" in the manifest would allow it")
    raise Failure(f"the proxy could not open {target}: {code} {reason}".rstrip())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pump(sock: socket.socket, early: bytes, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Copy stdin -> socket (in a thread) and socket -> stdout until the far side closes."""

    def upstream() -> None:
        try:
            while data := os.read(stdin_fd, 65536):
                sock.sendall(data)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)  # our side is done; the far side may still answer
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        if early:
            _write_all(stdout_fd, early)
        while data := sock.recv(65536):
            _write_all(stdout_fd, data)
    except OSError:  # stdout closed (ssh went away) or the connection reset
        pass
    finally:
        sock.close()


def main(argv: list[str], environ: dict[str, str] | None = None, stdin_fd: int = 0, stdout_fd: int = 1,
         timeout: float = TIMEOUT) -> int:
    if len(argv) != 2:
        print("usage: bottle-connect HOST PORT", file=sys.stderr)
        return 2
    try:
        host, port = parse_target(argv[0], argv[1])
    except ValueError as exc:
        print(f"bottle-connect: {exc}", file=sys.stderr)
        return 2
    try:
        sock, early = open_tunnel(proxy_address(dict(os.environ) if environ is None else environ), host, port, timeout)
    except Failure as exc:
        print(f"bottle-connect: {exc}", file=sys.stderr)
        return 1
    pump(sock, early, stdin_fd, stdout_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
