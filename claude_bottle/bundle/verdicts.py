"""How the addon's hooks answer and log: the refusal responses, the one log-line writer, and the flow
metadata keys the hooks share. Plain functions, imported by addon.py and its hook mixins."""

from __future__ import annotations

import ipaddress
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy as pol  # noqa: E402  (sibling files in the bundle, not a package)

from mitmproxy import http  # noqa: E402

# warn-mode scans in flight (running or waiting for the scanner), for requests and WebSocket messages
# alike; more are skipped and logged, each by host, port and method, rather than queued without bound.
# With the scanner at about a millisecond a scan, a burst of hundreds of parallel requests is scanned whole.
MAX_BACKGROUND = 512
STREAM_OVER = 1 << 20  # bigger bodies are passed through as they arrive, not buffered in memory
DENIED = "claude_bottle_denied"
LOGGED = "claude_bottle_logged"
MODE = "claude_bottle_dlp_mode"
STREAMED = "claude_bottle_streamed"


def emit(event: str, **fields: object) -> None:
    print(pol.log_line(event, **fields), flush=True)


def fatal(reason: str) -> None:
    # mitmproxy's script loader swallows every exception (even SystemExit) and then runs on without
    # the addon, i.e. as an open proxy. Exiting the process is the only way to fail closed.
    emit("fatal", reason=reason)
    sys.stdout.flush()
    os._exit(3)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def refusal(status: int, text: str) -> http.Response:
    return http.Response.make(status, text + "\n", {"Content-Type": "text/plain; charset=utf-8"})


def deny(flow: http.HTTPFlow, reason: str, **fields: object) -> None:
    flow.metadata[DENIED] = True
    flow.request.stream = False  # 8.1.1 refuses a response on a streamed request
    flow.response = refusal(403, f"claude-bottle: blocked: {reason}")
    emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, reason=reason,
         **fields)


def content_length(req: http.Request) -> int | None:
    """The body's announced size: 0 for none, None when it is chunked (unknown until it has arrived)."""
    if "transfer-encoding" in req.headers:
        return None
    length = req.headers.get("content-length", "0").strip()
    return int(length) if length.isdigit() else None
