"""Fake webhook receiver. Usage: webhook.py --log FILE --secret S
Checks Keng-Signature (t=UNIX,v1=HEX(HMAC-SHA256(secret, t + "." + body))) and records each
request as a JSON line {"path","key","sig_ok","t","body"}. Behaviour by path:
  /ok            204                      /status/CODE   that status, body "status CODE"
  /flaky/N       500 for the first N requests of each Idempotency-Key, then 200
  /ra/SECS       429 with Retry-After: SECS
  /hang          never answers            /big[/CODE]    200 (or CODE) with a 10 MB body
  /slow/MS       204 after MS milliseconds"""
import hashlib
import hmac
import json
import threading
import time

from common import Handler, Log, arg, serve

LOG = Log(arg("--log"))
SECRET = (arg("--secret") or "").encode()
seen = {}
seen_lock = threading.Lock()


class Webhook(Handler):
    def do_POST(self):
        body = self.read_body()
        sig = self.headers.get("Keng-Signature") or ""
        parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
        want = hmac.new(SECRET, (parts.get("t", "") + ".").encode() + body,
                        hashlib.sha256).hexdigest()
        sig_ok = bool(SECRET) and hmac.compare_digest(want, parts.get("v1", ""))
        key = self.headers.get("Idempotency-Key")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        LOG.write({"path": self.path, "key": key, "sig_ok": sig_ok, "t": parts.get("t"),
                   "content_type": self.headers.get("Content-Type"),
                   "user_agent": self.headers.get("User-Agent"), "body": doc})
        p = self.path.strip("/").split("/")
        if p[0] == "ok":
            self.reply(204)
        elif p[0] == "status":
            self.reply(int(p[1]), "status " + p[1], "text/plain")
        elif p[0] == "flaky":
            with seen_lock:
                seen[key] = seen.get(key, 0) + 1
                n = seen[key]
            if n <= int(p[1]):
                self.reply(500, "try again", "text/plain")
            else:
                self.reply(200, {"ok": True})
        elif p[0] == "ra":
            self.reply(429, "slow down", "text/plain", {"Retry-After": p[1]})
        elif p[0] == "hang":
            time.sleep(3600)
        elif p[0] == "slow":
            time.sleep(int(p[1]) / 1000)
            self.reply(204)
        elif p[0] == "big":
            n = 10 * 1024 * 1024
            self.send_response(int(p[1]) if len(p) > 1 else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(n // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
        else:
            self.reply(404, "no such path", "text/plain")


serve(Webhook)
