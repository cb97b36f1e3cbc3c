"""E-mail against a real SMTP server process over TCP (Exim: STARTTLS + AUTH): send, bounce,
reply; the customers' replies reach our endpoint through it, as they would at a bank."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.messaging import email, outbox
from dialer.messaging.config import EmailSettings
from dialer.messaging.dispatcher import EmailDispatcher
from dialer.messaging.keywords import Classifier
from dialer.messaging.lifecycle import MsgState
from dialer.messaging.mailin import MailEndpoint
from dialer.messaging.smtp import MailSender
from dialer.messaging.templates import MessagePurpose, TemplateLibrary
from dialer.store import Store
from dialer.store.messages import AddressFlag, InboundMessage, Message

from .conftest import BOUNCING, MAIL_DOMAIN, REFUSED
from .exim_relay import EximRelay

DOMAIN = MAIL_DOMAIN
CUSTOMER = "zhang.san@customer.test"


class MailRig:
    def __init__(self, store: Store, relay: EximRelay, inbound_port: int, password: str):
        self.store = store
        self.relay = relay
        self.inbound_port = inbound_port
        mail = email.MailSettings(
            from_address=f"noreply@{DOMAIN}",
            domain=DOMAIN,
            unsubscribe_url="https://bank.example/unsubscribe?u={uid}",
            smtp_port=relay.port,
            smtp_username=relay.user,
            cafile=str(relay.cafile),
            timeout_s=5,
            rate=200,
        )
        self.cfg = EmailSettings(mail=mail, retry_s=(0.2,))
        self.sender = MailSender(mail, password)
        self.dispatcher = EmailDispatcher(store, self.sender, self.cfg, bank_name="示例银行")
        self.endpoint = MailEndpoint(store, Classifier(), domain=DOMAIN)

    def queue(self, to: str, *, marketing: bool = False) -> int:
        lib = TemplateLibrary.load(CONFIG_DIR / "messages")
        r = lib.get("statement-email").render(
            {"name": "张三", "card_last4": "1234", "amount_due": "100.00", "due_date": "12-20"},
            house={"bank": "示例银行", "callback": "95588"},
        )
        purpose = MessagePurpose.MARKETING if marketing else MessagePurpose.SERVICE
        with self.store.session() as s:
            row = outbox.enqueue_email(
                s, to=to, subject=r.subject or "", text=r.text, html=r.html, purpose=purpose
            )
            return row.id

    def row(self, mid: int) -> Message:
        with self.store.session() as s:
            row = s.get(Message, mid)
            assert row is not None
            return row

    async def wait(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("condition not reached")
            await asyncio.sleep(0.05)

    def customer_writes(self, rcpt: str, body: str, subject: str = "Re: 对账单") -> None:
        """The customer's mail reaches the bank's mail server, which hands it to our endpoint."""
        msg = (
            f"From: {CUSTOMER}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <r{abs(hash(body))}@customer.test>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", self.relay.port, timeout=20) as s:
            s.sendmail(CUSTOMER, [rcpt], msg)


@pytest.fixture
async def mail_rig(
    store: Store, smtp_relay: EximRelay, inbound_port: int
) -> AsyncIterator[MailRig]:
    rig = MailRig(store, smtp_relay, inbound_port, smtp_relay.password)
    await rig.endpoint.start("127.0.0.1", inbound_port)
    yield rig
    await rig.sender.close()
    await rig.endpoint.stop()


async def test_send_over_starttls_and_auth(mail_rig: MailRig) -> None:
    service = mail_rig.queue(CUSTOMER)
    promo = mail_rig.queue(CUSTOMER, marketing=True)
    assert await mail_rig.dispatcher.dispatch_batch() == (2, False)
    assert mail_rig.row(service).state == MsgState.ACCEPTED
    await mail_rig.wait(lambda: len(mail_rig.relay.kept()) == 2)  # Exim delivers on its own
    kept = [BytesParser(policy=policy.default).parsebytes(b) for b in mail_rig.relay.kept()]
    assert len(kept) == 2
    by_uid = {m["X-Dialer-Message"]: m for m in kept}
    m = by_uid[mail_rig.row(service).uid]
    assert m["From"].addresses[0].display_name == "示例银行"
    assert m["Subject"] == "示例银行信用卡对账单提醒"
    assert m["Reply-To"] == f"reply+{mail_rig.row(service).uid}@{DOMAIN}"
    assert "List-Unsubscribe" not in m
    assert "尾号1234" in m.get_body(("plain",)).get_content()
    assert "<b>100.00</b>" in m.get_body(("html",)).get_content()
    p = by_uid[mail_rig.row(promo).uid]
    assert f"unsubscribe+{mail_rig.row(promo).uid}@{DOMAIN}" in p["List-Unsubscribe"]
    assert p["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_wrong_password_keeps_the_message_queued(
    store: Store, smtp_relay: EximRelay, inbound_port: int
) -> None:
    rig = MailRig(store, smtp_relay, inbound_port, "wrong")
    mid = rig.queue(CUSTOMER)
    try:
        assert await rig.dispatcher.dispatch_batch() == (1, True)
    finally:
        await rig.sender.close()
    assert rig.row(mid).state == MsgState.QUEUED and "AUTH" in (rig.row(mid).reason or "")
    assert smtp_relay.kept() == []


async def test_refused_and_bounced_addresses_are_marked_invalid(mail_rig: MailRig) -> None:
    refused = mail_rig.queue(REFUSED)
    bounced = mail_rig.queue(BOUNCING)
    await mail_rig.dispatcher.dispatch_batch()
    assert mail_rig.row(refused).state == MsgState.FAILED
    # the relay took the other one, then its DSN came back to bounce+<uid>@
    assert mail_rig.row(bounced).state in (MsgState.ACCEPTED, MsgState.FAILED)
    await mail_rig.wait(lambda: mail_rig.row(bounced).state == MsgState.FAILED)
    assert "5.1.1" in (mail_rig.row(bounced).reason or "")
    with mail_rig.store.session() as s:
        flags = {(f.address, f.flag, f.source) for f in s.scalars(select(AddressFlag))}
    assert flags == {(REFUSED, "invalid", "smtp-rcpt"), (BOUNCING, "invalid", "dsn")}
    again = [mail_rig.queue(REFUSED), mail_rig.queue(BOUNCING)]
    await mail_rig.dispatcher.dispatch_batch()
    assert [mail_rig.row(i).state for i in again] == [MsgState.SUPPRESSED] * 2
    assert len(mail_rig.relay.kept()) == 0


async def test_replies_come_back_to_the_message(mail_rig: MailRig) -> None:
    mid = mail_rig.queue(CUSTOMER)
    await mail_rig.dispatcher.dispatch_batch()
    uid = mail_rig.row(mid).uid
    await asyncio.to_thread(
        mail_rig.customer_writes, f"reply+{uid}@{DOMAIN}", "1\r\n\r\n> 张三您好：\r\n> 原文"
    )
    await mail_rig.wait(lambda: mail_rig.row(mid).result == "confirmed")
    await asyncio.to_thread(
        mail_rig.customer_writes, f"reply+{uid}@{DOMAIN}", "我已还款，请核实。\r\n\r\n> 原文"
    )

    def two_replies() -> bool:
        with mail_rig.store.session() as s:
            return len(s.scalars(select(InboundMessage.id)).all()) == 2

    await mail_rig.wait(two_replies)
    with mail_rig.store.session() as s:
        texts = [r.text for r in outbox.free_text_replies(s)]
        assert texts == ["我已还款，请核实。"]
        assert s.scalars(select(InboundMessage.message_id)).all() == [mid, mid]
    # nobody else's address is taken
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(mail_rig.customer_writes, f"someone@{DOMAIN}", "hi")


async def test_unsubscribe_stops_marketing_only(mail_rig: MailRig) -> None:
    mid = mail_rig.queue(CUSTOMER, marketing=True)
    await mail_rig.dispatcher.dispatch_batch()
    uid = mail_rig.row(mid).uid
    await asyncio.to_thread(mail_rig.customer_writes, f"unsubscribe+{uid}@{DOMAIN}", "unsubscribe")
    await mail_rig.wait(lambda: mail_rig.row(mid).replied_at is not None)
    promo, service = mail_rig.queue(CUSTOMER, marketing=True), mail_rig.queue(CUSTOMER)
    await mail_rig.dispatcher.dispatch_batch()
    assert mail_rig.row(promo).state == MsgState.SUPPRESSED
    assert mail_rig.row(service).state == MsgState.ACCEPTED
