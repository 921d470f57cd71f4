"""Runs inside a bottle: what the real chain (addon + pipelock) does, as the agent sees it.

Usage: chain_probe.py ORIGIN_IP GREETING_PORT PRIVATE_NAME. Prints PROBE-RESULT {json}.
"""

import gzip
import json
import os
import socket
import sys
import time
import urllib.parse

TIMEOUT = 20


def proxy() -> tuple[str, int]:
    url = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    return url.hostname or "", url.port or 80


def read_reply(sock: socket.socket, limit: int = 1 << 16) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), None)
    while length is not None and len(rest) < min(length, limit):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, head, rest


def http_get(url: str, total: bool = False) -> dict:
    """A plain proxy request; returns status, a body prefix, byte count and seconds."""
    parts = urllib.parse.urlsplit(url)
    start = time.monotonic()
    try:
        with socket.create_connection(proxy(), timeout=TIMEOUT) as sock:
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept-Encoding: gzip\r\n"
                         "Connection: close\r\n\r\n".encode())
            status, head, body = read_reply(sock)
            if total:
                while chunk := sock.recv(1 << 20):
                    body += chunk
            return {"status": status, "head": head.decode("latin-1"), "body": body[:400].decode("latin-1"),
                    "bytes": len(body), "raw": body.hex() if len(body) < 4096 else "", "s": time.monotonic() - start}
    except OSError as e:
        return {"error": repr(e)}


def connect(host: str, port: int, wait_greeting: bool = False) -> dict:
    try:
        with socket.create_connection(proxy(), timeout=TIMEOUT) as sock:
            sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            status, _, body = read_reply(sock)
            out = {"status": status, "body": body.decode("latin-1")}
            if status == 200 and wait_greeting:
                sock.settimeout(8)
                start = time.monotonic()
                # We sent nothing: the server speaks first (its greeting may have come with the 200).
                greeting = body
                while not greeting.endswith(b"\r\n"):
                    greeting += sock.recv(100)
                out["greeting"] = greeting.decode("latin-1")
                out["body"] = ""
                out["greeting_s"] = time.monotonic() - start
                sock.sendall(b"EHLO bottle\r\n")
                out["echo"] = sock.recv(100).decode("latin-1")
            return out
    except OSError as e:
        return {"error": repr(e)}


def origin_form(host_header: str, path: str) -> dict:
    try:
        with socket.create_connection(proxy(), timeout=TIMEOUT) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
            status, _, body = read_reply(sock)
            return {"status": status, "body": body[:300].decode("latin-1")}
    except OSError as e:
        return {"error": repr(e)}


def main() -> None:
    origin, greeting_port, private = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = {
        "big": http_get(f"http://{origin}/big", total=True),
        "gzip": http_get(f"http://{origin}/gzip"),
        "sse": http_get(f"http://{origin}/sse", total=True),
        "greeting": connect(origin, greeting_port, wait_greeting=True),
        "private_connect": connect(private, 80),
        "private_http": http_get(f"http://{private}/"),
        "pipelock_origin_form": origin_form("127.0.0.1:8888", "/health"),
        "pipelock_absolute": http_get("http://127.0.0.1:8888/health"),
        "pipelock_fetch": http_get(f"http://127.0.0.1:8888/fetch?url=http://{origin}:{greeting_port}/"),
    }
    try:
        out["gzip_inflated"] = gzip.decompress(bytes.fromhex(out["gzip"]["raw"])).decode()[:40]
    except Exception as e:  # noqa: BLE001
        out["gzip_inflated"] = repr(e)
    print("PROBE-RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
