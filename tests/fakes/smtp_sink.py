"""SMTP sink on 127.0.0.1 port 0 (Debian python3-aiosmtpd; run with /usr/bin/python3).
Usage: smtp_sink.py --log FILE. Prints its port, then logs each message as a JSON line
{"from","rcpt","subject" (decoded),"message_id","content_type","text","html"}.
A recipient starting with "reject" is refused with 550."""
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP

LOG = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else None


class Sink:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = html = None
        for part in msg.walk():
            if part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
            elif part.get_content_type() == "text/html" and html is None:
                html = part.get_content()
        rec = {"from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
               "subject": str(msg["Subject"]), "raw_subject": msg.get("Subject", "").__str__(),
               "message_id": msg["Message-ID"], "content_type": msg.get_content_type(),
               "text": text, "html": html}
        if LOG:
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return "250 Message accepted"


async def main():
    loop = asyncio.get_running_loop()
    handler = Sink()
    srv = await loop.create_server(lambda: SMTP(handler, hostname="sink.local"),
                                   "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
