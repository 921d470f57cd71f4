"""`claude-bottle verify`'s probe: runs inside the agent container, tries what its spec lists, and prints
what happened. It judges nothing: the launcher reads the observations (claude_bottle/verify.py), so
what counts as "refused" is decided, and unit-tested, in one place outside the bottle.

Standard library only, Python 3.7 or later; copied into the agent beside the bundle's CA and run as the
agent's user with no capabilities, exactly as the agent would be.

Usage: verify_probe.py SPEC.json. Prints one line, `CLAUDE-BOTTLE-VERIFY {"observations": {ID: {...}}}`.
"""

from __future__ import annotations

import concurrent.futures
import errno
import http.client
import json
import os
import platform
import selectors
import socket
import ssl
import struct
import sys
import time
import urllib.parse

MARKER = "CLAUDE-BOTTLE-VERIFY "
# Longer than Linux's neighbour resolution (3 probes, 1 s apart): a route whose next hop does not exist
# (the internal bridge's gateway, which the host never holds) answers EHOSTUNREACH only after that.
TIMEOUT = 8.0
# <linux/in.h> and <linux/in6.h>: without them a datagram's "no route to host" is never reported to
# the socket and a refused UDP or ICMP attempt looks like an unanswered one.
IP_RECVERR = 11
IPV6_RECVERR = 25
SCAN_WAIT = 1.5  # per batch of ports: RST or SYN-ACK from a container on the same bridge takes < 1 ms
SCAN_BUDGET = 120.0
BODY_CHARS = 600
WORKERS = 16


def failure(stage: str, exc: BaseException) -> dict:
    """An OSError as data: where it happened, its errno's name and text, or that it timed out."""
    if isinstance(exc, socket.timeout):
        return {"stage": stage, "timeout": True}
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, str(code)) if isinstance(code, int) else None
    return {"stage": stage, "errno": name, "error": getattr(exc, "strerror", None) or str(exc)}


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def recverr(sock: socket.socket, fam: int) -> None:
    if fam == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def tcp(spec: dict) -> dict:
    host, port = spec["host"], int(spec["port"])
    start = time.monotonic()
    sock = None
    try:
        sock = socket.socket(family(host), socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect((host, port))
        out = {"connected": True}
    except OSError as exc:
        out = failure("socket" if sock is None else "connect", exc)
    finally:
        if sock is not None:
            sock.close()
    out["seconds"] = round(time.monotonic() - start, 2)
    return out


def datagram(host: str, port: int, payload: bytes, proto: int = 0, kind: int = socket.SOCK_DGRAM) -> dict:
    """Send one datagram and wait for anything back; every step that fails says which step it was."""
    fam = family(host)
    start = time.monotonic()
    stage, sock = "socket", None
    try:
        sock = socket.socket(fam, kind, proto)
        recverr(sock, fam)
        sock.settimeout(TIMEOUT)
        stage = "connect"
        sock.connect((host, port))
        stage = "send"
        sock.send(payload)
        stage = "recv"
        reply = sock.recv(2048)
        out = {"reply": True, "bytes": len(reply)}
    except OSError as exc:
        out = failure(stage, exc)
    finally:
        if sock is not None:
            sock.close()
    out["seconds"] = round(time.monotonic() - start, 2)
    return out


def udp(spec: dict) -> dict:
    return datagram(spec["host"], int(spec["port"]), bytes.fromhex(spec["payload"]))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp(spec: dict) -> dict:
    """An echo request two ways: a raw socket (needs CAP_NET_RAW, which the agent lacks) and the
    unprivileged ICMP datagram socket Linux offers to groups in net.ipv4.ping_group_range (Docker
    opens that range to every group, so this one is the real test)."""
    host = spec["host"]
    body = b"claude-bottle verify"
    bare = struct.pack("!BBHHH", 8, 0, 0, 0x6362, 1) + body
    packet = bare[:2] + struct.pack("!H", checksum(bare)) + bare[4:]
    return {"raw": datagram(host, 0, packet, socket.IPPROTO_ICMP, socket.SOCK_RAW),
            "dgram": datagram(host, 0, bare, socket.IPPROTO_ICMP)}  # the kernel fills id and checksum


def gai_name(code: int) -> str:
    names = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}
    return names.get(code, str(code))


def dns(spec: dict) -> dict:
    try:
        found = socket.getaddrinfo(spec["name"], 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return {"gai": gai_name(exc.errno), "error": exc.strerror or str(exc)}
    return {"addresses": sorted({info[4][0] for info in found})}


def own_ipv6() -> list:
    """The agent's IPv6 addresses other than loopback and link-local (scope 0x00 is global)."""
    try:
        with open("/proc/net/if_inet6") as handle:
            rows = [line.split() for line in handle]
    except OSError:
        return []
    return [str(ipaddr(row[0])) + "%" + row[5] for row in rows if len(row) >= 6 and row[3] == "00"]


def ipaddr(hexed: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexed))


def ipv6(spec: dict) -> dict:
    out = tcp(spec)
    out["own_addresses"] = own_ipv6()
    return out


def batch_size() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        soft = 1024
    if soft < 0:  # RLIM_INFINITY
        soft = 1 << 16
    return max(32, min(1024, soft - 64))


def listening(sock: socket.socket) -> bool:
    """A connect that succeeded reached a listener, unless it reached itself: on a loopback address a
    socket whose ephemeral port happens to be the one it dials connects to itself (TCP's simultaneous
    open), which a scan of every port meets about once in 28000 tries."""
    try:
        return sock.getsockname() != sock.getpeername()
    except OSError:
        return False


def scan_batch(address: str, ports: list) -> tuple:
    """Non-blocking connects to many ports at once: (open ports, how many never answered)."""
    sel = selectors.DefaultSelector()
    found = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((address, port))
            if code == 0:
                if listening(sock):
                    found.append(port)
                sock.close()
            elif code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                sel.register(sock, selectors.EVENT_WRITE, port)
            else:
                sock.close()
        end = time.monotonic() + SCAN_WAIT
        while sel.get_map():
            left = end - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(timeout=left):
                sock = key.fileobj
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and listening(sock):
                    found.append(key.data)
                sel.unregister(sock)
                sock.close()
        silent = len(sel.get_map())
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
    return found, silent


def scan(spec: dict) -> dict:
    """Every TCP port of the bundle's address but the proxy's."""
    address = socket.getaddrinfo(spec["host"], None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    skip = set(spec.get("skip", ()))
    ports = [p for p in range(1, 65536) if p not in skip]
    found, silent, done = [], 0, 0
    size, deadline = batch_size(), time.monotonic() + SCAN_BUDGET
    for start in range(0, len(ports), size):
        if time.monotonic() > deadline:
            break
        chunk = ports[start : start + size]
        opened, quiet = scan_batch(address, chunk)
        found += opened
        silent += quiet
        done += len(chunk)
    return {"address": address, "open": sorted(found), "unanswered": silent, "scanned": done,
            "expected": len(ports)}


# ---------- through the proxy ----------


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_header(host: str, port: int, default: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == default else f"{name}:{port}"


def proxy_address(spec: dict) -> tuple:
    url = urllib.parse.urlsplit(spec["proxy"])
    return url.hostname, url.port or 80


def read_head(sock: socket.socket) -> tuple:
    """A reply's status and head, and whatever came after it (a server's greeting through a tunnel)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[0].startswith("HTTP/") and parts[1].isdigit() else None
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, rest


def read_body(sock: socket.socket, headers: dict, rest: bytes) -> bytes:
    length = headers.get("content-length", "")
    want = min(int(length), BODY_CHARS) if length.isdigit() else BODY_CHARS
    while len(rest) < want:
        try:
            chunk = sock.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        rest += chunk
    return rest


def request_bytes(spec: dict, target: str, host_value: str) -> bytes:
    """One HTTP/1.1 request; headers named by an environment variable carry its value (a placeholder)."""
    body = spec.get("body", "").encode()
    lines = [f"{spec.get('method', 'GET')} {target} HTTP/1.1", f"Host: {host_value}",
             "User-Agent: claude-bottle-verify", "Connection: close"]
    for name, value in spec.get("headers", ()):
        lines.append(f"{name}: {value}")
    for name, variable in spec.get("env_headers", ()):
        if not os.environ.get(variable):
            raise LookupError(f"${variable} is not set in the agent")
        lines.append(f"{name}: {os.environ[variable]}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(conn: socket.socket, method: str) -> dict:
    reply = http.client.HTTPResponse(conn, method=method)
    reply.begin()
    body = reply.read(BODY_CHARS) if method != "HEAD" else b""
    return {"status": reply.status, "body": body.decode("utf-8", "replace")}


def plain(spec: dict, port: int) -> dict:
    """A proxy request: absolute-form (`GET http://host/`), or origin-form with a Host of our choosing."""
    host = spec["host"]
    with socket.create_connection(proxy_address(spec), timeout=TIMEOUT) as sock:
        if spec["mode"] == "origin":
            data = request_bytes(spec, spec.get("path", "/"), spec["host_header"])
        else:
            value = host_header(host, port, 80)
            data = request_bytes(spec, f"http://{value}{spec.get('path', '/')}", value)
        sock.sendall(data)
        out = response(sock, spec.get("method", "GET"))
    out["via"] = "http"
    return out


def connect(spec: dict) -> dict:
    """CONNECT through the proxy; with `banner`, also whatever the server says first."""
    host, port = spec["host"], int(spec["port"])
    with socket.create_connection(proxy_address(spec), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {authority(host, port)} HTTP/1.1\r\nHost: {authority(host, port)}\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        out = {"status": status, "via": "connect"}
        if status != 200:
            out["body"] = read_body(sock, headers, rest).decode("utf-8", "replace")[:BODY_CHARS]
        elif spec.get("banner"):
            sock.settimeout(3)
            try:
                rest = rest or sock.recv(200)
            except OSError:
                pass
            out["banner"] = rest[:200].decode("latin-1")
        return out


def tls(spec: dict) -> dict:
    """HTTPS as the agent does it: CONNECT, then TLS with the bundle's CA, then the request."""
    host, port = spec["host"], int(spec["port"])
    raw = socket.create_connection(proxy_address(spec), timeout=TIMEOUT)
    try:
        raw.sendall(f"CONNECT {authority(host, port)} HTTP/1.1\r\nHost: {authority(host, port)}\r\n\r\n".encode())
        status, headers, rest = read_head(raw)
        if status != 200:
            body = read_body(raw, headers, rest).decode("utf-8", "replace")[:BODY_CHARS]
            return {"status": status, "body": body, "via": "connect"}
        context = ssl.create_default_context(cafile=spec["ca"])
        with context.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(request_bytes(spec, spec.get("path", "/"), host_header(host, port, 443)))
            out = response(conn, spec.get("method", "GET"))
        out["via"] = "https"
        return out
    finally:
        raw.close()


def http_check(spec: dict) -> dict:
    mode = spec["mode"]
    if mode == "connect":
        return connect(spec)
    if mode in ("absolute", "origin"):
        return plain(spec, int(spec.get("port", 80)))
    try:
        first = tls(spec)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        first = {"status": None, "via": "https", "error": f"{type(exc).__name__}: {exc}"}
    # The tunnel could not be opened (the server is down, or its TLS failed): the same request over
    # plain HTTP still shows what the bundle decides, since it decides before it connects.
    fallback = spec.get("fallback_port")
    if fallback and (first.get("status") is None or (first.get("via") == "connect" and first["status"] == 502)):
        try:
            second = plain(spec, int(fallback))
        except (OSError, http.client.HTTPException) as exc:
            second = {"status": None, "via": "http", "error": f"{type(exc).__name__}: {exc}"}
        second["first"] = first
        return second
    return first


ACTIONS = {"tcp": tcp, "udp": udp, "icmp": icmp, "dns": dns, "ipv6": ipv6, "scan": scan, "http": http_check}


def observe(spec: dict) -> dict:
    try:
        return ACTIONS[spec["action"]](spec)
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return {"probe_error": f"{type(exc).__name__}: {exc}"}


def main(argv: list) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    checks = spec["checks"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda c: observe({**spec.get("common", {}), **c}), checks))
    observations = {check["id"]: result for check, result in zip(checks, results)}
    print(MARKER + json.dumps({"version": 1, "python": platform.python_version(), "observations": observations}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
