"""Fake webhook receiver with timing and a switch. Usage: receiver.py --log FILE --secret S
Logs each delivery on arrival (before it answers) as a JSON line
{"path","key","sig_ok","at" (wall clock, s),"status" (what it answers, or null),"body"}.
Its listen backlog is deep (1024) so that many connections at once are accepted, not dropped.
  /ok         204
  /slow/MS    204 after MS milliseconds
  /hang       never answers
  /switch     the switch's status (400 at start; body "status CODE")
  GET /control/switch/CODE   sets the switch's status; answers 204, not logged"""
import hashlib
import hmac
import json
import threading
import time
from http.server import ThreadingHTTPServer

from common import Handler, Log, arg

LOG = Log(arg("--log"))
SECRET = (arg("--secret") or "").encode()
switch = [400]
switch_lock = threading.Lock()


class Receiver(Handler):
    def do_GET(self):
        p = self.path.strip("/").split("/")
        if len(p) == 3 and p[0] == "control" and p[1] == "switch":
            with switch_lock:
                switch[0] = int(p[2])
            return self.reply(204)
        self.reply(404, "no such path", "text/plain")

    def do_POST(self):
        body = self.read_body()
        sig = self.headers.get("Keng-Signature") or ""
        parts = dict(x.split("=", 1) for x in sig.split(",") if "=" in x)
        want = hmac.new(SECRET, (parts.get("t", "") + ".").encode() + body,
                        hashlib.sha256).hexdigest()
        sig_ok = bool(SECRET) and hmac.compare_digest(want, parts.get("v1", ""))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        p = self.path.strip("/").split("/")
        status = None
        if p[0] in ("ok", "slow"):
            status = 204
        elif p[0] == "switch":
            with switch_lock:
                status = switch[0]
        LOG.write({"path": self.path, "key": self.headers.get("Idempotency-Key"),
                   "sig_ok": sig_ok, "at": time.time(), "status": status, "body": doc})
        if p[0] == "ok":
            self.reply(204)
        elif p[0] == "slow":
            time.sleep(int(p[1]) / 1000.0)
            self.reply(204)
        elif p[0] == "hang":
            time.sleep(3600)
        elif p[0] == "switch":
            if status == 204:
                self.reply(204)
            else:
                self.reply(status, "status %d" % status, "text/plain")
        else:
            self.reply(404, "no such path", "text/plain")


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client killed mid-request (kill -9) is part of the tests, not news


srv = Server(("127.0.0.1", 0), Receiver)
print(srv.server_address[1], flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
