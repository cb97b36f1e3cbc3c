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
from dialer.lists.hopper import finish_attempt, start_attempts
from dialer.lists.numbers import numbers_of
from dialer.messaging import outbox
from dialer.messaging.sequencer import Sequencer
from dialer.messaging.templates import Channel, TemplateLibrary
from dialer.outcomes import Outcome
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.messages import Message
from dialer.store.models import Attempt, Campaign, Contact

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


def test_sms_goes_to_the_first_mobile_and_calls_pass_over_barred_numbers(
    store: Store, tmp_path: Path
) -> None:
    """Mobile first for SMS (none: recorded unsent, the budget untouched, the fallback sent);
    the calls move on after failed calls, at once from an invalid number, never to a DNC'd one."""
    spec = parse_campaign(
        {
            "name": "nums",
            "mode": "broadcast",
            "flow": "notice",
            "max_attempts": 5,
            "calling_window": {"start": "08:00", "end": "21:00"},
            "retry": {"no_answer": "1m", "invalid_number": "1m"},
            "fields": {
                "amount_due": "decimal",
                "due_date": "date",
                "card_last4": {"type": "digits", "length": 4},
            },
            "steps": [
                {"channel": "sms", "template": "repayment-due-sms"},
                {"channel": "email", "template": "statement-email", "when": "not_delivered"},
                {"channel": "call", "next_number_after": 2},
            ],
        }  # fmt: skip
    )
    path = tmp_path / "c.csv"
    path.write_text(
        "phone,name,email,mobile_phone,home_phone,work_phone,amount_due,due_date,card_last4\n"
        "010-62345678,甲,a@x.test,13800000011,,,10.00,2026-12-20,1234\n"
        "010-62345679,乙,b@x.test,,,,10.00,2026-12-20,1234\n"
        "13800000021,丙,,,13800000022,13800000023,10.00,2026-12-20,1234\n"
        "13800000031,丁,,13800000032,,,10.00,2026-12-20,1234\n",
        "utf-8",
    )
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        import_contacts(s, row, path, default_region="CN", now=NOW)
        add_entry(s, "+8613800000022", scope=DncScope.ALL, channel=DncChannel.VOICE)
    seq = Sequencer(store, TemplateLibrary.load(CONFIG_DIR / "messages"), Settings().bank)
    seq.tick("nums", NOW)
    with store.session() as s:
        sms = {
            c.name: (m.address, m.state, m.reason, m.budget)
            for m, c in s.execute(
                select(Message, Contact)
                .join(Contact, Message.contact_id == Contact.id)
                .where(Message.channel == "sms")
            )
        }
        assert sms["甲"] == ("+8613800000011", "queued", None, True)
        assert sms["乙"] == ("+861062345679", "suppressed", "no mobile number", False)
        mails = s.scalars(select(Message.address).where(Message.channel == "email")).all()
        assert mails == ["b@x.test"]  # its SMS never went: the not_delivered step follows
        for m in s.scalars(select(Message).where(Message.state == "queued")):
            outbox.transition(s, m, outbox.MsgEvent.CLAIM, NOW)
            outbox.transition(s, m, outbox.MsgEvent.DELIVERED, NOW)  # on to the calls
        camp = s.get(Campaign, row.id)
        assert camp is not None

        def call(name: str, outcome: Outcome, when: dt.datetime) -> None:
            c = s.scalars(select(Contact).where(Contact.name == name)).one()
            (a,) = start_attempts(s, [c], camp, when, daily_cap=9)
            assert isinstance(a, Attempt), a
            finish_attempt(s, a, outcome, when)

        call("丙", Outcome.NO_ANSWER, NOW)
        call("丁", Outcome.INVALID_NUMBER, NOW)
    later = NOW + dt.timedelta(minutes=5)
    seq.tick("nums", later)
    with store.session() as s:
        phones = {n: p for n, p in s.execute(select(Contact.name, Contact.phone))}
        assert phones["丙"] == "+8613800000021"  # one failure of two: it stays
        assert phones["丁"] == "+8613800000032"  # an invalid number: at once
        camp = s.get(Campaign, row.id)
        assert camp is not None
        call("丙", Outcome.NO_ANSWER, later)
    seq.tick("nums", later + dt.timedelta(minutes=5))
    with store.session() as s:
        phones = {n: p for n, p in s.execute(select(Contact.name, Contact.phone))}
        assert phones["丙"] == "+8613800000023"  # home is on the voice DNC list: work
        ids = {n: i for n, i in s.execute(select(Contact.name, Contact.id))}
        got = numbers_of(s, ids.values())
        assert [n.state.value for n in got[ids["丙"]]] == ["active", "dnc", "active"]
        assert [n.state.value for n in got[ids["丁"]]] == ["invalid", "active"]
