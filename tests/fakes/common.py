"""Shared bits of the fake peers: a threading HTTP/1.1 server on 127.0.0.1 port 0 that prints
its port on the first line of stdout, and a JSON-lines request log (flushed per line)."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()


class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None

    def write(self, obj):
        if not self.f:
            return
        with _lock:
            self.f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read the JSON log
        pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, code, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if code != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 204 and body:
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The engine opens up to 64 connections to one host at once: the default backlog of 5
    # dropped connections, which then timed out.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A peer reset mid-request is what the kill -9 tests do; anything else is worth a trace.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def serve(handler_cls):
    srv = Server(("127.0.0.1", 0), handler_cls)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default
