"""Our inbound mail endpoint (aiosmtpd): replies, bounces and unsubscribe requests.

The bank's mail server hands us (SMTP, or LMTP with ``lmtp=True``) what arrives for the
addresses we put on our messages: ``reply+<uid>@``, ``bounce+<uid>@`` and
``unsubscribe+<uid>@`` (``dialer.messaging.email``). Any other recipient is refused at
``RCPT`` (550). Each message is stored before ``250`` is answered; if the store fails, the
answer is ``451`` and the sender's server tries again later. It binds 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import RemoteProtocolError
from dialer.messaging import email, outbox
from dialer.messaging.dispatcher import Clock, WallClock
from dialer.messaging.keywords import Classifier
from dialer.messaging.templates import Channel
from dialer.store import Store

log = logging.getLogger(__name__)

MailHook = Callable[[email.Inbound, Any], None]


class _Handler:
    def __init__(self, endpoint: MailEndpoint) -> None:
        self.e = endpoint

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if email.role_of(address, self.e.domain) is None:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        try:
            for rcpt in envelope.rcpt_tos:
                self.e.take(rcpt, str(envelope.mail_from or ""), raw)
        except RemoteProtocolError as exc:
            log.warning("inbound mail refused: %s", exc)
            return f"550 5.6.0 {exc}"
        except SQLAlchemyError:
            log.exception("inbound mail could not be stored")
            return "451 4.3.0 try again later"
        return "250 OK"


class MailEndpoint:
    def __init__(
        self,
        store: Store,
        classify: Classifier,
        *,
        domain: str,
        clock: Clock | None = None,
        on_mail: MailHook | None = None,
        lmtp: bool = False,
    ) -> None:
        self.store = store
        self.classify = classify
        self.domain = domain.lower()
        self.clock: Clock = clock or WallClock()
        self.on_mail = on_mail
        self.lmtp = lmtp
        self._server: asyncio.base_events.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.port: int | None = None

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def take(self, rcpt: str, mail_from: str, raw: bytes) -> email.Inbound:
        """Read and store one inbound message for one of our addresses."""
        item = email.read_inbound(rcpt, mail_from, raw, self.domain)
        now = self._now()
        result: Any = None
        with self.store.session() as s:
            if isinstance(item, email.Bounce):
                result = outbox.apply_bounce(
                    s,
                    item.uid,
                    hard=item.hard,
                    status=item.status,
                    detail=item.diagnostic,
                    now=now,
                )
            elif isinstance(item, email.Unsubscribe):
                result = outbox.apply_unsubscribe(s, item.uid, now)
            else:
                msg = outbox.message_by_uid(s, item.uid)
                key = item.message_id or hashlib.sha256(raw).hexdigest()
                result = outbox.apply_reply(
                    s,
                    channel=Channel.EMAIL,
                    gateway_id=f"mail:{key}"[:200],
                    sender=item.sender,
                    receiver=rcpt,
                    text=item.text,
                    now=now,
                    classify=self.classify,
                    message=msg,
                )
        log.info("inbound mail for %s: %s", rcpt, type(item).__name__.lower())
        if self.on_mail is not None:
            self.on_mail(item, result)
        return item

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        handler = _Handler(self)
        kind = LMTP if self.lmtp else SMTP
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            proto = kind(handler, hostname="dialer", ident="dialer")
            self._sessions.add(proto)
            return proto

        self._server = await loop.create_server(session, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and end the sessions still open (a mail server keeps its
        connection for the next message; closing the listener alone would leave it)."""
        if self._server is not None:
            self._server.close()
            for proto in list(self._sessions):
                if proto.transport is not None and not proto.transport.is_closing():
                    proto.transport.close()
            self._sessions.clear()
            await self._server.wait_closed()
            self._server = None


__all__ = ["MailEndpoint"]
