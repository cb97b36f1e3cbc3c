"""A stand-in for the bank's SMTP relay, run as its own process over TCP (aiosmtpd).

STARTTLS is required before AUTH, AUTH before MAIL (one user, password from a file). A
recipient listed in ``--refuse`` is refused at RCPT (550 5.1.1); one listed in ``--bounce``
is accepted and then bounced: a DSN (RFC 3464) goes by SMTP to the envelope sender's
server (``--dsn-to``), as a relay does when the next hop refuses. Everything else is kept in
the Maildir ``--maildir``. Prints ``READY <port>`` once it listens.

    python smtp_relay.py --port 0 --cert c.pem --key k.pem --user u --password-file f \
        --maildir DIR [--refuse a@x] [--bounce b@x] [--dsn-to 127.0.0.1:8025]
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import smtplib
import ssl
import sys
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def dsn(mail_from: str, rcpt: str, original: bytes) -> bytes:
    boundary = "dsn-boundary-1"
    headers = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n"
        f"To: {mail_from}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate()}\r\n"
        f"Message-ID: {make_msgid(domain='relay.test')}\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"Your message could not be delivered to {rcpt}.\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; relay.test\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        f"Action: failed\r\n"
        f"Status: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"{headers}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.password = Path(args.password_file).read_text().strip()
        self.maildir = mailbox.Maildir(args.maildir, create=True)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.args.user
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.args.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            if rcpt.lower() in self.args.bounce:
                await asyncio.to_thread(self._bounce, str(envelope.mail_from), rcpt, raw)
            else:
                self.maildir.add(raw)
        return "250 2.0.0 queued"

    def _bounce(self, mail_from: str, rcpt: str, raw: bytes) -> None:
        host, port = self.args.dsn_to.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=10) as s:
            s.sendmail("", [mail_from], dsn(mail_from, rcpt, raw))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--refuse", action="append", default=[])
    p.add_argument("--bounce", action="append", default=[])
    p.add_argument("--dsn-to", default="127.0.0.1:25")
    args = p.parse_args()
    args.refuse = {a.lower() for a in args.refuse}
    args.bounce = {a.lower() for a in args.bounce}
    relay = Relay(args)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            relay,
            hostname="relay.test",
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            authenticator=relay.authenticate,
        ),
        "127.0.0.1",
        args.port,
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
