"""A stand-in for an API host in the secrets/DLP integration tests: HTTP on 80, HTTPS on 443.

Usage: dlp_upstream.py CERT KEY
  /echo     what arrived, as SHA-256 digests of each header and of the body (never the values)
  /reflect  a careless server: quotes the Authorization header back, in the body and a header
  /sse      text/event-stream: "data: 1", then two seconds later "data: 2"
"""

import hashlib
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/echo":
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen = {k.lower(): hashlib.sha256(v.encode("latin-1")).hexdigest() for k, v in self.headers.items()}
            self.reply(json.dumps({"headers": seen, "body": hashlib.sha256(body).hexdigest(), "length": len(body)}))
        elif path == "/reflect":
            value = self.headers.get("authorization", "")
            self.reply(f"you sent {value}", {"X-Reflect": value})
        elif path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"data: 1\n\n")
            self.wfile.flush()
            time.sleep(2)
            self.wfile.write(b"data: 2\n\n")
            self.wfile.flush()
        else:
            self.reply("not found", status=404)

    do_POST = do_GET

    def reply(self, text: str, headers: dict[str, str] | None = None, status: int = 200) -> None:
        body = text.encode("latin-1", "replace")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # never log requests: they carry the real credentials


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(port: int, context: "ssl.SSLContext | None" = None) -> None:
    server = Server(("0.0.0.0", port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


serve(80)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
serve(443, ctx)
print("ready", flush=True)
threading.Event().wait()
