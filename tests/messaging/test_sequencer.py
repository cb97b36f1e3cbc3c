"""The sequencer on the store: an SMS that cannot be delivered (here: barred by the SMS DNC)
ends in a state that sends the e-mail fallback; a delivered one does not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import import_contacts
from dialer.lists.dnc import DncChannel, DncScope, add_entry
from dialer.messaging import outbox
from dialer.messaging.sequencer import Sequencer
from dialer.messaging.templates import Channel, TemplateLibrary
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.messages import Message

NOW = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing


def test_undelivered_sms_falls_back_to_email(store: Store, tmp_path: Path) -> None:
    spec = parse_campaign(
        {
            "name": "notice",
            "mode": "broadcast",
            "flow": "notice",
            "fields": {
                "amount_due": "decimal",
                "due_date": "date",
                "card_last4": {"type": "digits", "length": 4},
            },
            "steps": [
                {"channel": "sms", "template": "repayment-due-sms"},
                {"channel": "email", "template": "statement-email", "when": "not_delivered"},
            ],
        }  # fmt: skip
    )
    path = tmp_path / "c.csv"
    path.write_text(
        "phone,name,email,amount_due,due_date,card_last4\n"
        "13800000001,张三,a@x.test,10.00,2026-12-20,1234\n"
        "13800000002,李四,b@x.test,20.00,2026-12-20,5678\n",
        "utf-8",
    )
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        import_contacts(s, row, path, default_region="CN", now=NOW)
        add_entry(s, "+8613800000002", scope=DncScope.ALL, channel=DncChannel.SMS)
    seq = Sequencer(store, TemplateLibrary.load(CONFIG_DIR / "messages"), Settings().bank)
    assert seq.tick("notice", NOW).queued == {1: 2}
    with store.session() as s:
        outbox.due_messages(s, Channel.SMS, NOW, 10)  # the DNC'd one is suppressed here
        first = s.scalars(select(Message).where(Message.address == "+8613800000001")).one()
        outbox.transition(s, first, outbox.MsgEvent.CLAIM, NOW)
        outbox.transition(s, first, outbox.MsgEvent.DELIVERED, NOW)
    assert seq.tick("notice", NOW).queued == {2: 1}
    with store.session() as s:
        mails = s.scalars(select(Message.address).where(Message.channel == "email")).all()
        why = seq.explain(s, s.get(type(row), row.id), NOW)  # type: ignore[arg-type]
    assert mails == ["b@x.test"]
    assert why == {"all steps done": 2}
