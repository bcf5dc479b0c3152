"""SMTP sink on 127.0.0.1 port 0 (Debian python3-aiosmtpd; run with /usr/bin/python3).
Usage: smtp_sink.py --log FILE. Prints its port, then logs each message as a JSON line
{"from","rcpt","subject" (decoded),"message_id","content_type","text","html","structure",
"parts","header_lines"}: structure is the MIME tree as "multipart/alternative(text/plain,...)";
parts lists the leaf parts in order with their type, Content-ID, Content-Disposition, transfer
encoding and, for parts that are not text, the decoded bytes in base64; header_lines are the
top-level header lines as received (folded lines separate).
A recipient starting with "reject" is refused with 550."""
import asyncio
import base64
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP

LOG = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else None


def structure(part):
    if part.is_multipart():
        return "%s(%s)" % (part.get_content_type(),
                           ",".join(structure(p) for p in part.iter_parts()))
    return part.get_content_type()


def leaves(msg):
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        rec = {"type": part.get_content_type(), "charset": part.get_content_charset(),
               "cid": part.get("Content-ID"), "disposition": part.get("Content-Disposition"),
               "encoding": part.get("Content-Transfer-Encoding")}
        if part.get_content_maintype() != "text":
            rec["data_b64"] = base64.b64encode(part.get_payload(decode=True)).decode()
        out.append(rec)
    return out


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
            # Line ends as a reader sees them: MIME text has CRLF on the wire.
            if part.get_content_type() == "text/plain" and text is None:
                text = part.get_content().replace("\r\n", "\n")
            elif part.get_content_type() == "text/html" and html is None:
                html = part.get_content().replace("\r\n", "\n")
        rec = {"from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
               "subject": str(msg["Subject"]), "raw_subject": msg.get("Subject", "").__str__(),
               "message_id": msg["Message-ID"], "content_type": msg.get_content_type(),
               "text": text, "html": html, "structure": structure(msg), "parts": leaves(msg),
               "header_lines": envelope.content.split(b"\r\n\r\n", 1)[0]
               .decode("utf-8", "replace").split("\r\n")}
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
