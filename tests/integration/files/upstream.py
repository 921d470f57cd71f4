"""A stand-in for "the internet" in integration tests: plain HTTP and HTTPS servers on the given ports.

Usage: upstream.py NAME HTTP_PORT[,HTTP_PORT...] [HTTPS_PORT CERT KEY]
Every response body is "hello from NAME:PORT PATH" so a test can tell which server answered.
"""

import http.server
import socketserver
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {sys.argv[1]}:{self.server.server_address[1]} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        sys.stderr.write("request " + (args[0] % args[1:]) + "\n")  # type: ignore[operator]


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(port: int, context: ssl.SSLContext | None = None) -> None:
    server = Server(("0.0.0.0", port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


for p in sys.argv[2].split(","):
    serve(int(p))
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    serve(int(sys.argv[3]), ctx)
print("ready", flush=True)
threading.Event().wait()
