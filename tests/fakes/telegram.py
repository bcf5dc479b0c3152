"""Fake Telegram Bot API. Usage: telegram.py --log FILE --token TOKEN
POST /bot<TOKEN>/sendPhoto {"chat_id","photo","caption"} or /sendMessage {"chat_id","text"}.
A wrong token: 401 Unauthorized. chat_id "flood": 429 {"parameters":{"retry_after":3}};
chat_id "missing": 400 "Bad Request: chat not found". A caption over 1024 UTF-16 code units
(Telegram's count: an emoji outside the BMP is two): 400. A body that is not JSON in UTF-8 (a
text cut inside a character): 400, as Telegram answers it."""
import json

from common import Handler, Log, arg, serve

LOG = Log(arg("--log"))
TOKEN = arg("--token")
count = [0]


class Telegram(Handler):
    def do_POST(self):
        body = self.read_body()
        doc, bad = None, "Bad Request: strings must be encoded in UTF-8"
        try:
            text = body.decode("utf-8")
            bad = "Bad Request: can't parse JSON"
            doc = json.loads(text)
        except ValueError:  # UnicodeDecodeError is one
            pass
        LOG.write({"path": self.path, "body": doc})
        if not isinstance(doc, dict):
            return self.reply(400, {"ok": False, "error_code": 400, "description": bad})
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "bot" + str(TOKEN):
            return self.reply(401, {"ok": False, "error_code": 401,
                                    "description": "Unauthorized"})
        method = parts[1]
        chat = str((doc or {}).get("chat_id"))
        if chat == "flood":
            return self.reply(429, {"ok": False, "error_code": 429,
                                    "description": "Too Many Requests: retry after 3",
                                    "parameters": {"retry_after": 3}})
        if chat == "missing":
            return self.reply(400, {"ok": False, "error_code": 400,
                                    "description": "Bad Request: chat not found"})
        if method == "sendPhoto":
            # Telegram counts the 1024 of a caption in UTF-16 code units (an emoji is two).
            units = len(doc.get("caption", "").encode("utf-16-le", "surrogatepass")) // 2
            if not doc.get("photo") or units > 1024:
                return self.reply(400, {"ok": False, "error_code": 400,
                                        "description": "Bad Request: bad photo or caption"})
        elif method == "sendMessage":
            if not doc.get("text"):
                return self.reply(400, {"ok": False, "error_code": 400,
                                        "description": "Bad Request: message text is empty"})
        else:
            return self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        count[0] += 1
        self.reply(200, {"ok": True, "result": {"message_id": count[0], "chat": {"id": chat}}})


serve(Telegram)
