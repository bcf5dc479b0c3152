"""Fake Telegram Bot API. Usage: telegram.py --log FILE --token TOKEN
POST /bot<TOKEN>/sendPhoto {"chat_id","photo","caption"} or /sendMessage {"chat_id","text"}.
A wrong token: 401 Unauthorized. chat_id "flood": 429 {"parameters":{"retry_after":3}};
chat_id "missing": 400 "Bad Request: chat not found". Captions over 1024 characters: 400."""
import json

from common import Handler, Log, arg, serve

LOG = Log(arg("--log"))
TOKEN = arg("--token")
count = [0]


class Telegram(Handler):
    def do_POST(self):
        body = self.read_body()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        LOG.write({"path": self.path, "body": doc})
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
            if not doc.get("photo") or len(doc.get("caption", "").encode("utf-16-le")) // 2 > 1024:
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
