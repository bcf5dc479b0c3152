"""Fake Zalo OA API v3 (consultation messages). Usage: zalo.py --log FILE --token TOKEN
POST /v3.0/oa/message/cs with header access_token. Answers HTTP 200 with {"error":0,
"message":"Success","data":{"message_id","user_id"}}; a wrong token gives error -216; a
user_id starting with "unfollowed" error -213, with "quota" error -211, with "rate" error -32."""
import json

from common import Handler, Log, arg, serve

LOG = Log(arg("--log"))
TOKEN = arg("--token")
count = [0]


class Zalo(Handler):
    def do_POST(self):
        body = self.read_body()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        LOG.write({"path": self.path, "access_token": self.headers.get("access_token"),
                   "body": doc})
        if self.path != "/v3.0/oa/message/cs":
            return self.reply(404, {"error": 404, "message": "not found"})
        if self.headers.get("access_token") != TOKEN:
            return self.reply(200, {"error": -216, "message": "Access token is invalid"})
        try:
            user = doc["recipient"]["user_id"]
            text = doc["message"]["text"]
        except (TypeError, KeyError):
            return self.reply(200, {"error": -201, "message": "Parameters are invalid"})
        if not text:
            return self.reply(200, {"error": -201, "message": "Text is empty"})
        if user.startswith("unfollowed"):
            return self.reply(200, {"error": -213, "message": "User has not followed OA"})
        if user.startswith("quota"):
            return self.reply(200, {"error": -211, "message": "Out of quota"})
        if user.startswith("rate"):
            return self.reply(200, {"error": -32, "message": "Exceeded the rate limit"})
        count[0] += 1
        self.reply(200, {"error": 0, "message": "Success",
                         "data": {"message_id": "m%d" % count[0], "user_id": user}})


serve(Zalo)
