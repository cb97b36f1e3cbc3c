"""Dispositions and callbacks: the form's checks, what a disposition does to the contact (saved
after the call or during it), and callbacks under the compliance rules (property-based, with
the independent oracle of the compliance tests)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_compliance import broken_rules, cases

from dialer.errors import ComplianceError, ConfigError
from dialer.lists.callbacks import (
    HORIZON,
    SLOTS,
    CallbackSlot,
    book_callback,
    callback_refusal,
    slot_instant,
)
from dialer.lists.campaigns import apply_campaign, parse_campaign, spec_of
from dialer.lists.compliance import ContactState, NumberFacts, Policy
from dialer.lists.dispositions import check_form
from dialer.lists.dnc import DncChannel, DncMatcher
from dialer.lists.handling import handle_rows, handle_times, rows_of
from dialer.lists.hopper import finish_attempt
from dialer.lists.wrapup import save_disposition
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt, Contact
from dialer.store.people import Callback, Disposition

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)  # Tuesday 11:00 in Beijing
DOC: dict[str, Any] = {
    "name": "collect",
    "queue": "collections",
    "max_attempts": 3,
    "fields": {"mobile_new": "text", "address": "text"},
    "calling_window": {"start": "09:00", "end": "20:00"},
    "dispositions": {
        "promise_to_pay": {"fields": {"amount": "decimal", "date": "date"}, "then": "retry 3d"},
        "callback": {"then": "callback"},
        "paid_already": {"then": "done"},
        "do_not_call": {"then": "dnc"},
        "data_changed": {"fields": {"changed": "fields"}, "then": "done"},
        "refused": {},
    },
}


def seed(store: Store) -> tuple[int, int]:
    """A campaign, one contact, one attempt with an agent; returns (attempt, contact) ids."""
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(DOC), source=None, actor="test")
        c = Contact(campaign_id=row.id, phone="+8613900001234", timezone="Asia/Shanghai")
        c.attempts = 1
        c.region = "CN"
        s.add(c)
        s.flush()
        a = Attempt(campaign_id=row.id, contact_id=c.id, phone=c.phone, created_at=NOW)
        s.add(a)
        s.flush()
        return a.id, c.id


def save(store: Store, aid: int, code: str, data: Any = None, **kw: Any) -> Any:
    with store.session() as s:
        return save_disposition(s, aid, code, data or {}, kw.pop("notes", None), now=NOW, **kw)


def test_the_form_checks_each_value_and_names_the_first_bad_one() -> None:
    spec = parse_campaign(DOC).dispositions
    ok = check_form("p", spec["promise_to_pay"], {"amount": "12.5", "date": "2026-12-09"}, set())
    assert ok == {"amount": "12.5", "date": "2026-12-09"}
    for data, why in [
        ({"amount": "12.345", "date": "2026-12-09"}, "amount"),
        ({"amount": "-1", "date": "2026-12-09"}, "amount"),
        ({"amount": "1", "date": "09/12/2026"}, "date"),
        ({"amount": "1"}, "date is required"),
        ({"amount": "1", "date": "2026-12-09", "card": "1"}, "no field 'card'"),
    ]:
        with pytest.raises(ConfigError, match=why):
            check_form("p", spec["promise_to_pay"], data, set())
    with pytest.raises(ConfigError, match="no field 'salary'"):
        check_form("d", spec["data_changed"], {"changed": ["salary"]}, {"address"})
    with pytest.raises(ConfigError, match="then is"):
        parse_campaign({**DOC, "dispositions": {"x": {"then": "explode"}}})


def test_a_disposition_after_the_call_decides_the_contact(store: Store) -> None:
    aid, cid = seed(store)
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.AGENT_HANDLED, NOW)  # final: done
    saved = save(
        store,
        aid,
        "promise_to_pay",
        {"amount": "500", "date": "2026-12-05"},
        agent="wang",
        notes="card 6222021234567890 ok",
    )
    assert saved.contact_status == "active"
    assert saved.next_attempt_at == NOW + dt.timedelta(days=3)
    with store.session() as s:
        attempt = s.get(Attempt, aid)
        assert attempt is not None and attempt.result == "promise_to_pay"
        d = s.scalars(select(Disposition)).one()
        assert "6222021234567890" not in (d.notes or "") and d.data["amount"] == "500"


def test_a_disposition_during_the_call_wins_over_the_outcome_rule(store: Store) -> None:
    aid, cid = seed(store)
    save(store, aid, "promise_to_pay", {"amount": "500", "date": "2026-12-05"}, agent="wang")
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.AGENT_HANDLED, NOW + dt.timedelta(minutes=2))
    with store.session() as s:
        contact = s.get(Contact, cid)
        attempt = s.get(Attempt, aid)
        assert contact is not None and attempt is not None
        assert contact.status == "active" and contact.next_attempt_at == NOW + dt.timedelta(days=3)
        assert attempt.result == "promise_to_pay" and attempt.outcome == "agent_handled"


def test_do_not_call_puts_the_number_on_the_list_and_ends_the_contact(store: Store) -> None:
    aid, cid = seed(store)
    save(store, aid, "do_not_call", agent="wang")
    with store.session() as s:
        contact = s.get(Contact, cid)
        assert contact is not None and contact.status == "done"
        dnc = DncMatcher.for_numbers(s, [contact.phone], DncChannel.VOICE)
        assert dnc.blocks(contact.phone, "collections")


def test_a_callback_is_booked_for_the_agent_in_the_customers_zone(store: Store) -> None:
    aid, cid = seed(store)
    saved = save(
        store, aid, "callback", agent="wang", callback_at="2026-12-02T15:30", personal=True
    )
    with store.session() as s:
        cb = s.get(Callback, saved.callback_id)
        contact = s.get(Contact, cid)
        assert cb is not None and contact is not None
        assert cb.agent == "wang" and cb.due_at == dt.datetime(2026, 12, 2, 7, 30, tzinfo=dt.UTC)
        # its agent's until the fallback time: the campaign's hopper waits until then
        assert cb.fallback_at is not None and contact.next_attempt_at == cb.fallback_at
    # 21:00 local is outside the window: refused, nothing written
    with pytest.raises(ComplianceError, match="outside_window"):
        save(store, aid, "callback", agent="wang", callback_at="2026-12-02T21:00")
    with store.session() as s:
        assert len(list(s.scalars(select(Callback)))) == 1
        assert len(list(s.scalars(select(Disposition)))) == 1


def test_a_callback_for_a_contact_out_of_attempts_is_refused(store: Store) -> None:
    aid, cid = seed(store)
    with store.session() as s:
        contact = s.get(Contact, cid)
        assert contact is not None
        contact.attempts = 3
        with pytest.raises(ComplianceError, match="attempts_exhausted"):
            book_callback(s, contact, "2026-12-02T15:30", now=NOW, booked_by="t")


@given(case=cases(), ahead=st.integers(-3600, 40 * 86400))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_booked_callback_never_breaks_a_compliance_rule(
    case: tuple[ContactState, Policy, dt.datetime, NumberFacts], ahead: int
) -> None:
    """Whatever the time asked for: a callback is booked only for an instant at which the
    contact may be dialled (window in its zone, holidays, DNC, attempt limit, validity,
    abandon lock-out), in the future and within the horizon."""
    contact, policy, now, facts = case
    due = now + dt.timedelta(seconds=ahead)
    why = callback_refusal(contact, policy, due, now, dnc=facts.dnc)
    reopened = dataclasses.replace(contact, status="active", next_attempt_at=None)
    rules = dataclasses.replace(policy, running=True, daily_cap=10**9)
    broken = broken_rules(reopened, rules, due, NumberFacts(dnc=facts.dnc))
    in_range = now < due <= now + HORIZON
    assert (why is None) == (in_range and not broken), (why, broken)


@given(case=cases(), slot=st.sampled_from(list(CallbackSlot)))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_keypad_slot_is_its_local_time_and_booked_only_where_the_dial_is_allowed(
    case: tuple[ContactState, Policy, dt.datetime, NumberFacts], slot: CallbackSlot
) -> None:
    """The IVR's callback slots ("press 1 for this afternoon"): the instant is that wall
    time in the contact's own zone, today or tomorrow there; its booking follows the same
    rules, against the compliance oracle."""
    contact, policy, now, facts = case
    due = slot_instant(slot, now, contact.timezone)
    days, at = SLOTS[slot]
    local = due.astimezone(ZoneInfo(contact.timezone))
    today = now.astimezone(ZoneInfo(contact.timezone)).date()
    assert (local.date() - today).days == days and local.time() == at
    why = callback_refusal(contact, policy, due, now, dnc=facts.dnc)
    reopened = dataclasses.replace(contact, status="active", next_attempt_at=None)
    rules = dataclasses.replace(policy, running=True, daily_cap=10**9)
    broken = broken_rules(reopened, rules, due, NumberFacts(dnc=facts.dnc))
    assert (why is None) == (now < due and not broken), (why, broken)


def test_campaign_files_keep_their_shape_without_dispositions(tmp_path: Path) -> None:
    spec = parse_campaign({"name": "plain", "queue": "q"})
    assert "dispositions" not in spec.to_document() and "script" not in spec.to_document()


def test_a_due_callback_is_served_first_and_gives_its_priority_back(store: Store) -> None:
    from dialer.lists.hopper import lease, start_attempt
    from dialer.store.models import Campaign

    aid, cid = seed(store)
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.NO_ANSWER, NOW)
        camp = s.scalars(select(Campaign)).one()
        fresh = Contact(campaign_id=camp.id, phone="+8613900005678", timezone="Asia/Shanghai")
        s.add(fresh)  # never tried: without the callback it would go first
        contact = s.get(Contact, cid)
        assert contact is not None
        cb = book_callback(s, contact, "2026-12-02T15:30", now=NOW, booked_by="user:wang")
        due = cb.due_at
    with store.session() as s:
        camp = s.scalars(select(Campaign)).one()
        assert [c.id for c in lease(s, camp, due - dt.timedelta(minutes=1), 1, "w")] != [cid]
    with store.session() as s:
        camp = s.scalars(select(Campaign)).one()
        for c in s.scalars(select(Contact)):
            c.lease_owner = c.lease_until = None
        (got,) = lease(s, camp, due, 1, "w")
        assert got.id == cid
        attempt = start_attempt(s, got, camp, due)
        assert got.priority == 0
        (booked,) = s.scalars(select(Callback))
        assert booked.state == "dialled" and booked.attempt_id == attempt.id


def test_a_disposition_reopening_a_done_campaigns_contact_is_leased_at_once(
    store: Store,
) -> None:
    """The hopper keeps a campaign's shape (its zones and priorities) for minutes; one that
    held no active contact ("done") must not hide a contact a disposition re-opens."""
    from dialer.lists.hopper import lease
    from dialer.store.models import Campaign

    aid, cid = seed(store)
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.AGENT_HANDLED, NOW)  # final: done
        camp = s.scalars(select(Campaign)).one()
        assert lease(s, camp, NOW, 1, "w") == []  # nothing to dial: the empty shape is kept
    saved = save(store, aid, "promise_to_pay", {"amount": "5", "date": "2026-12-05"}, agent="w")
    assert saved.contact_status == "active"
    with store.session() as s:
        camp = s.scalars(select(Campaign)).one()
        assert [c.id for c in lease(s, camp, NOW + dt.timedelta(days=3), 1, "w")] == [cid]


def test_handle_time_is_talk_plus_the_recorded_wrap_up(store: Store) -> None:
    """Talk from bridge to hang-up; wrap-up to the first disposition (at most the limit), the
    queue's wrapuptime without one, none for a disposition saved during the call."""
    aid, cid = seed(store)
    s_ = dt.timedelta(seconds=1)
    calls = [  # agent, bridged, ended, disposed (seconds after NOW)
        ("王坐席", 0, 60, 80),  # 60 talk + 20 wrap-up
        ("王坐席", 100, 130, None),  # 30 + the queue's wrapup_s (10)
        ("Local/2@agents", 5, 45, 2000),  # 40 + the limit (600, no wrapup_limit_s)
        ("Local/2@agents", 50, 70, 60),  # saved during the call: 20 + 0
        ("Local/2@agents", 200, None, None),  # still talking: not counted
        ("Local/2@agents", -7200, -7000, None),  # before the shift: not counted
    ]
    with store.session() as s:
        contact = s.get(Contact, cid)
        assert contact is not None
        for agent, b, e, d in calls:
            a = Attempt(
                campaign_id=contact.campaign_id,
                contact_id=cid,
                phone=contact.phone,
                agent=agent,
                queue="collections",
                bridged_at=NOW + b * s_,
                ended_at=NOW + e * s_ if e is not None else None,
            )
            s.add(a)
            s.flush()
            if d is not None:
                s.add(
                    Disposition(
                        attempt_id=a.id,
                        campaign_id=a.campaign_id,
                        code="refused",
                        agent="x",
                        at=NOW + d * s_,
                    )
                )
                s.add(  # a later save does not move the wrap-up's end
                    Disposition(
                        attempt_id=a.id,
                        campaign_id=a.campaign_id,
                        code="refused",
                        agent="x",
                        at=NOW + (d + 500) * s_,
                    )
                )
    with store.session() as s:
        rows = handle_rows(s, since=NOW - dt.timedelta(hours=1))
        assert handle_rows(s, since=NOW, campaign="other") == []
    got = handle_times(rows)
    by_agent = {a["name"]: a for a in got["by_agent"]}
    assert by_agent["王坐席"] == {
        "name": "王坐席",
        "calls": 2,
        "talk_s": 90.0,
        "wrapup_s": 30.0,
        "aht_s": 60.0,
    }
    assert by_agent["Local/2@agents"]["calls"] == 2
    assert by_agent["Local/2@agents"]["aht_s"] == (40 + 600 + 20 + 0) / 2
    assert got["all"]["calls"] == 4 and got["all"]["aht_s"] == (90 + 30 + 60 + 600) / 4
    assert [q["name"] for q in got["by_queue"]] == ["collections"]
    assert [c["name"] for c in got["by_campaign"]] == ["collect"]
    assert handle_times(rows_of(got)) == {**got, "since": None}


def test_skip_reasons_are_checked_and_default_when_none_are_given() -> None:
    plain = parse_campaign({"name": "p", "queue": "q", "mode": "preview"})
    assert set(plain.skips) == {"not_now", "data_to_check"} and "skip_reasons" not in (
        plain.to_document()
    )
    own = parse_campaign({**DOC, "skip_reasons": {"wrong_list": {"then": "done", "attempt": True}}})
    assert set(own.skips) == {"wrong_list"} and own.skips["wrong_list"].attempt
    assert parse_campaign(own.to_document()) == own
    for bad, why in [
        ({"x": {"then": "callback"}}, "books no callback"),
        ({"x": {"then": "retry soon"}}, "duration"),
        ({"Bad": {}}, "lower_snake_case"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_campaign({**DOC, "skip_reasons": bad})


def test_a_personal_callback_is_its_agents_until_its_fallback_time(store: Store) -> None:
    """The store's side of agent-first: before its fallback time the campaign's hopper leaves
    the contact to its agent, the floor finds it due for that agent, one worker claims it, the
    rules are checked, and the customer's attempt names the agent's waiting channel; after the
    fallback time it is the campaign's, as any callback."""
    from argon2 import PasswordHasher

    from dialer.lists.callbacks import FALLBACK_AFTER
    from dialer.lists.hopper import lease, start_attempts
    from dialer.lists.personal import claim, due_personal, refusal, start_personal, unclaim
    from dialer.lists.users import Passwords, Role, add_user, set_disabled
    from dialer.store.models import Campaign
    from dialer.telephony.originate import build_originate

    aid, cid = seed(store)
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.NO_ANSWER, NOW)
        add_user(
            s,
            "wang",
            Role.AGENT,
            "violet-harbour-ledger-42",
            actor="t",
            passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)),
            interface="PJSIP/1001",
        )
    with store.session() as s:
        contact = s.get(Contact, cid)
        assert contact is not None
        when = dt.datetime(2026, 12, 2, 7, 30, tzinfo=dt.UTC)
        cb = book_callback(s, contact, when, now=NOW, booked_by="user:wang", agent="wang")
        due, fallback, cb_id = cb.due_at, cb.fallback_at, cb.id
        assert fallback == due + FALLBACK_AFTER and contact.next_attempt_at == fallback
    with store.session() as s:
        camp = s.scalars(select(Campaign)).one()
        assert lease(s, camp, due, 1, "w") == []  # its agent's until the fallback time
        assert due_personal(s, camp.id, due - dt.timedelta(seconds=1)) == []
        (found,) = due_personal(s, camp.id, due)
        assert (found.callback_id, found.agent, found.interface) == (cb_id, "wang", "PJSIP/1001")
        assert due_personal(s, camp.id, fallback) == []  # then the campaign's
    with store.session() as s:
        assert claim(s, cb_id) is True
    with store.session() as s:
        assert claim(s, cb_id) is False  # another worker: not twice
        assert refusal(s, cb_id, due, daily_cap=3) is None
    with store.session() as s:
        attempt = start_personal(
            s, cb_id, due, owner="w", daily_cap=3, agent_channel="PJSIP/1001-0000002a"
        )
        detail, attempt_id = dict(attempt.detail or {}), attempt.id
        state = s.get(Callback, cb_id)
        assert state is not None and state.state == "dialled" and state.attempt_id == attempt_id
    assert detail["personal"] == {
        "agent": "wang",
        "channel": "PJSIP/1001-0000002a",
        "callback": cb_id,
    }
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, attempt_id), Outcome.NO_ANSWER, due)
        camp = s.scalars(select(Campaign)).one()
        spec = spec_of(camp)
        # a second one while the agent is away, then disabled: nobody claims it, and at its
        # fallback time the hopper dials it for the campaign (no agent named)
        contact = s.get(Contact, cid)
        assert contact is not None
        contact.status, contact.next_attempt_at = "active", None
        later = book_callback(
            s, contact, when + dt.timedelta(days=1), now=NOW, booked_by="user:wang", agent="wang"
        )
        late_due, late_fallback, late_id = later.due_at, later.fallback_at, later.id
        set_disabled(s, "wang", True, actor="t")
    with store.session() as s:
        camp = s.scalars(select(Campaign)).one()
        assert due_personal(s, camp.id, late_due) == []  # a disabled user takes no call
        assert claim(s, late_id) is True
        unclaim(s, late_id)  # their phone did not answer: pending again
        assert lease(s, camp, late_fallback - dt.timedelta(seconds=1), 1, "w") == []
        (got,) = lease(s, camp, late_fallback, 1, "w")
        (fell_back,) = start_attempts(s, [got], camp, late_fallback)
        assert not isinstance(fell_back, Exception) and "personal" not in (fell_back.detail or {})
        assert s.get(Callback, late_id).state == "dialled"  # type: ignore[union-attr]
    req = build_originate(
        attempt_id=1,
        phone="+8613900001234",
        spec=spec,
        language="zh",
        agi_url="agi://x",
        agent_channel="PJSIP/1001-0000002a",
        agent_name="wang",
    )
    assert req.variables()["DIALER_AGENT"] == "PJSIP/1001-0000002a"
    assert (req.plan.agent, req.plan.agent_name) == ("PJSIP/1001-0000002a", "wang")


def test_a_personal_callback_is_not_dialled_to_a_number_put_on_the_dnc_list(
    store: Store,
) -> None:
    """The rules apply at the customer's leg: a number on the DNC list since the booking."""
    from dialer.lists.dnc import DncScope, add_entry
    from dialer.lists.personal import claim, refusal, start_personal

    aid, cid = seed(store)
    with store.session() as s:
        finish_attempt(s, s.get(Attempt, aid), Outcome.NO_ANSWER, NOW)
        contact = s.get(Contact, cid)
        assert contact is not None
        cb = book_callback(
            s, contact, NOW + dt.timedelta(hours=1), now=NOW, booked_by="u", agent="w"
        )
        cb_id, due = cb.id, cb.due_at
        add_entry(s, contact.phone, scope=DncScope.ALL, channel=DncChannel.VOICE, reason="asked")
    with store.session() as s:
        assert claim(s, cb_id)
    with store.session() as s:
        assert refusal(s, cb_id, due, daily_cap=3) is not None
    with store.session() as s, pytest.raises(ComplianceError):
        start_personal(s, cb_id, due, owner="w", daily_cap=3, agent_channel="PJSIP/x-1")
    with store.session() as s:
        assert s.scalars(select(Attempt).where(Attempt.contact_id == cid)).all()[-1].id == aid


_PHONES = iter(range(10**6))


@given(
    due_min=st.integers(9 * 60, 20 * 60 - 1),
    later_s=st.integers(0, 15 * 60 - 1),
    dnc=st.booleans(),
    attempts=st.integers(0, 4),
    today=st.integers(0, 3),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_a_personal_callbacks_customer_leg_keeps_every_rule(
    store: Store, due_min: int, later_s: int, dnc: bool, attempts: int, today: int
) -> None:
    """Whatever happened between the booking and the agent answering (the window closing in
    the customer's zone, the number put on the DNC list, attempts spent, calls made today),
    the customer's leg of a personal callback is written exactly when the compliance oracle
    finds no rule broken at that instant. (One store for every example: each has its own
    contact and number.)"""
    from dialer.lists.dnc import DncScope, add_entry
    from dialer.lists.personal import claim, start_personal
    from dialer.store.models import Campaign

    zone = ZoneInfo("Asia/Shanghai")
    local = dt.datetime(2026, 12, 2, tzinfo=zone) + dt.timedelta(minutes=due_min)
    due = local.astimezone(dt.UTC)
    leg_at = due + dt.timedelta(seconds=later_s)
    with store.session() as s:
        camp = s.scalars(select(Campaign)).first()
        if camp is None:
            camp, _ = apply_campaign(s, parse_campaign(DOC), source=None, actor="test")
        contact = Contact(
            campaign_id=camp.id,
            phone=f"+86139{next(_PHONES):08d}",
            timezone="Asia/Shanghai",
            region="CN",
        )
        s.add(contact)
        s.flush()
        cb = book_callback(s, contact, due, now=NOW, booked_by="u", agent="wang")
        cb_id = cb.id
        if dnc:
            add_entry(s, contact.phone, scope=DncScope.ALL, channel=DncChannel.VOICE)
        times = []
        for i in range(today):  # calls to the number earlier that day
            at = due - dt.timedelta(minutes=5 * (i + 1))
            times.append(at)
            s.add(
                Attempt(
                    campaign_id=camp.id,
                    contact_id=contact.id,
                    phone=contact.phone,
                    created_at=at,
                    outcome="no_answer",
                    state="ended",
                )
            )
        contact.attempts = attempts
        state = dataclasses.replace(ContactState.of(contact), next_attempt_at=None)
        policy = Policy.of(spec_of(camp), daily_cap=3)
    facts = NumberFacts(dnc=dnc, attempt_times=tuple(times))
    oracle = broken_rules(state, policy, leg_at, facts)
    with store.session() as s:
        assert claim(s, cb_id)
    try:
        with store.session() as s:
            start_personal(s, cb_id, leg_at, owner="w", daily_cap=3, agent_channel="PJSIP/1-1")
        written = True
    except ComplianceError:
        written = False
    event(f"written={written}")
    assert written == (not oracle), oracle
