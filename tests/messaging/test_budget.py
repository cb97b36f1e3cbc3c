"""One attempt budget and one per-day cap across channels (DESIGN 7a, dialer.lists.touches).

``max_attempts`` counts a contact's calls and the messages of its counted steps; ``daily_cap``
bounds those touches on one local day of the contact's zone. The hopper and the steps'
sequencer both keep them: checked here on the pure rules, then by hypothesis over whole
campaigns run on the store (sequencer ticks, leases, calls, hand-overs at random instants,
contacts in several zones): never past the budget, never past the day cap.
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.compliance import (
    ContactState,
    NumberFacts,
    Policy,
    Reason,
    first_broken_rule,
)
from dialer.lists.contacts import import_contacts
from dialer.lists.hopper import explain, explain_rowwise, finish_attempt, lease, start_attempts
from dialer.messaging import outbox
from dialer.messaging.lifecycle import MsgEvent
from dialer.messaging.sequencer import Sequencer
from dialer.messaging.steps import Action, parse_steps, plan
from dialer.messaging.templates import Channel, TemplateLibrary
from dialer.outcomes import Outcome
from dialer.settings import Settings
from dialer.store import open_store
from dialer.store.messages import Message
from dialer.store.models import Attempt, Campaign, Contact

from .test_steps import facts

ZONES = ("Asia/Shanghai", "America/New_York", "Europe/London", "Pacific/Auckland")
LIBRARY = TemplateLibrary.load(CONFIG_DIR / "messages")
BASE = {
    "name": "budget",
    "mode": "broadcast",
    "flow": "notice",
    "calling_window": {"start": "08:00", "end": "21:00"},
    "fields": {
        "amount_due": "decimal",
        "due_date": "date",
        "card_last4": {"type": "digits", "length": 4},
    },
}

# --- the pure rules -----------------------------------------------------------------------


@given(
    zone=st.sampled_from(ZONES),
    cap=st.integers(1, 4),
    offsets=st.lists(st.integers(-26 * 60, 0), max_size=8),
    now=st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1), timezones=st.just(dt.UTC)),
)
def test_the_contact_cap_counts_its_local_day(
    zone: str, cap: int, offsets: list[int], now: dt.datetime
) -> None:
    spec = parse_campaign(
        {**BASE, "daily_cap": cap, "calling_window": {"start": "00:00", "end": "24:00"}}
    )
    policy = Policy.of(spec, daily_cap=50)  # the per-number cap out of the way
    times = tuple(now + dt.timedelta(minutes=m) for m in offsets)
    facts = NumberFacts(contact_times=times)
    today = now.astimezone(ZoneInfo(zone)).date()
    same_day = sum(1 for t in times if t.astimezone(ZoneInfo(zone)).date() == today)
    got = first_broken_rule(ContactState(phone="+8613800000001", timezone=zone), policy, now, facts)
    assert (got is Reason.DAILY_CAP) == (same_day >= cap)


def test_the_contact_cap_defaults_to_the_settings_cap() -> None:
    assert Policy.of(parse_campaign(BASE), daily_cap=3).contact_daily_cap == 3
    assert Policy.of(parse_campaign({**BASE, "daily_cap": 1}), daily_cap=3).contact_daily_cap == 1


STEPS = parse_steps(
    [
        {"channel": "sms", "template": "repayment-due-sms", "at": "09:00"},
        {"channel": "call", "at": "10:00"},
        {"channel": "email", "template": "statement-email", "counts": False},
    ]
)


def test_a_counted_step_needs_budget_and_room_today() -> None:
    nine = dt.datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert (
        plan(STEPS, facts(has_email=True, budget_left=1, today_left=1), nine).action is Action.SEND
    )
    # no budget: the counted SMS never goes, the plan moves on to the calls
    assert (
        plan(STEPS, facts(has_email=True, budget_left=0, today_left=3), nine).action is Action.WAIT
    )
    assert plan(STEPS, facts(has_email=True, budget_left=0, today_left=3), nine).step == 2
    # no room today: tomorrow at the step's hour, said in words
    d = plan(STEPS, facts(has_email=True, budget_left=3, today_left=0), nine)
    assert (d.action, d.step) == (Action.WAIT, 1)
    assert d.at == dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert d.why == "waiting for step 1 at 2026-12-02 09:00 (the contact's daily cap)"
    # a step that does not count goes whatever the budget says
    over = facts(
        has_email=True, steps_done=frozenset({1}), calls_active=False, budget_left=0, today_left=0
    )
    assert plan(STEPS, over, nine).action is Action.SEND


def test_a_call_step_always_counts() -> None:
    from dialer.errors import ConfigError

    with pytest.raises(ConfigError, match="every call spends the budget"):
        parse_steps([{"channel": "call", "counts": False}])


# --- whole campaigns on the store ---------------------------------------------------------

_seq = itertools.count()


def _campaign(tmp: Path, template: Path, draw: dict[str, object]) -> tuple[object, Sequencer]:
    path = tmp / f"s{next(_seq)}.db"
    shutil.copyfile(template, path)
    store = open_store(f"sqlite:///{path}")
    steps = [
        {"channel": "sms", "template": "repayment-due-sms", "at": draw["sms_at"],
         "counts": draw["sms_counts"]},
        {"channel": "call", "at": draw["call_at"]},
        {"channel": "sms", "template": "repayment-fallback-sms", "when": "calls_failed",
         "counts": draw["fallback_counts"]},
        {"channel": "email", "template": "statement-email", "when": "has_email"},
    ]  # fmt: skip
    spec = parse_campaign(
        {
            **BASE,
            "max_attempts": draw["max_attempts"],
            "daily_cap": draw["daily_cap"],
            "retry": {"no_answer": f"{draw['retry_m']}m", "busy": f"{draw['retry_m']}m"},
            "steps": steps,
        }
    )
    csv = tmp / f"c{next(_seq)}.csv"
    rows = ["phone,name,email,timezone,amount_due,due_date,card_last4"]
    for i, zone in enumerate(ZONES):
        rows.append(f"1380000{i:04d},客户{i},c{i}@x.test,{zone},10.00,2026-12-20,1234")
    csv.write_text("\n".join(rows) + "\n", "utf-8")
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        import_contacts(s, row, csv, default_region="CN", now=draw["start"])  # type: ignore[arg-type]
    per_day = int(draw["per_number"])  # type: ignore[call-overload]
    return store, Sequencer(store, LIBRARY, Settings().bank, calls_per_day=per_day)


def _touch_time(m: Message) -> dt.datetime:
    return m.submitted_at or m.created_at


@settings(
    max_examples=5,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # a store per example: no shrinking
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_attempts=st.integers(1, 5),
    daily_cap=st.one_of(st.none(), st.integers(1, 3)),
    per_number=st.integers(1, 4),
    sms_at=st.sampled_from(["09:00", "12:30", "19:30"]),
    call_at=st.sampled_from(["08:00", "10:00", "17:00"]),
    sms_counts=st.booleans(),
    fallback_counts=st.booleans(),
    retry_m=st.sampled_from([20, 45, 180]),
    start=st.datetimes(
        dt.datetime(2026, 12, 1), dt.datetime(2026, 12, 20), timezones=st.just(dt.UTC)
    ),
    gaps=st.lists(st.integers(10, 240), min_size=6, max_size=16),
    # failed has no retry: the calls are over at once and the fallback SMS wants the same day
    outcomes=st.lists(
        st.sampled_from([Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED]), min_size=1
    ),
    hand_over=st.lists(st.booleans(), min_size=1),
)
@example(  # an SMS, a call that fails for good, the fallback SMS: the third waits a day
    max_attempts=5,
    daily_cap=2,
    per_number=3,
    sms_at="09:00",
    call_at="10:00",
    sms_counts=True,
    fallback_counts=True,
    retry_m=20,
    start=dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC),
    gaps=[60] * 8,
    outcomes=[Outcome.FAILED],
    hand_over=[True],
)
def test_never_past_the_budget_nor_the_day_cap(
    tmp_path: Path,
    sqlite_template: Path,
    max_attempts: int,
    daily_cap: int | None,
    per_number: int,
    sms_at: str,
    call_at: str,
    sms_counts: bool,
    fallback_counts: bool,
    retry_m: int,
    start: dt.datetime,
    gaps: list[int],
    outcomes: list[Outcome],
    hand_over: list[bool],
) -> None:
    draw = dict(locals())
    store, seq = _campaign(tmp_path, sqlite_template, draw)  # type: ignore[arg-type]
    now = start
    try:
        for k, gap in enumerate(gaps):
            now += dt.timedelta(minutes=gap)
            seq.tick("budget", now)
            with store.session() as s:
                row = s.scalars(select(Campaign)).one()
                for m in s.scalars(select(Message).where(Message.state == "queued")):
                    if hand_over[(k + m.id) % len(hand_over)]:  # the dispatcher sends some now
                        if outbox.claim_one(s, m.id, now) is not None:
                            s.refresh(m)  # the claim is one UPDATE statement
                            outbox.record_submit(s, m.id, MsgEvent.ACCEPTED, now)
                got = lease(s, row, now, 10, "w", daily_cap=per_number)
                started = start_attempts(s, got, row, now, daily_cap=per_number)
                for j, a in enumerate(started):
                    if isinstance(a, Attempt):
                        end = now + dt.timedelta(minutes=1)
                        finish_attempt(s, a, outcomes[(k + j) % len(outcomes)], end)
                fast = explain(s, row, now, daily_cap=per_number)
                slow = explain_rowwise(s, row, now, daily_cap=per_number)
                assert fast.to_json() == slow.to_json()  # one verdict, grouped or row by row
        cap = daily_cap if daily_cap is not None else per_number
        with store.session() as s:
            for c in s.scalars(select(Contact)):
                calls = s.scalars(select(Attempt).where(Attempt.contact_id == c.id)).all()
                spent = s.scalars(
                    select(Message).where(Message.contact_id == c.id, Message.budget.is_(True))
                ).all()
                assert len(calls) + len(spent) == c.attempts <= max_attempts
                zone = ZoneInfo(c.timezone)
                days = Counter(a.created_at.astimezone(zone).date() for a in calls)
                days.update(_touch_time(m).astimezone(zone).date() for m in spent)
                assert max(days.values(), default=0) <= cap, (c.timezone, days)
    finally:
        store.dispose()


def test_messages_and_calls_share_the_budget(store: object, tmp_path: Path) -> None:
    """A counted SMS leaves max_attempts - 1 calls; a step with counts: false takes none."""
    from dialer.store import Store

    assert isinstance(store, Store)
    spec = parse_campaign(
        {
            **BASE,
            "max_attempts": 2,
            "retry": {"no_answer": "10m"},
            "steps": [
                {"channel": "sms", "template": "repayment-due-sms"},
                {"channel": "call"},
                {
                    "channel": "email",
                    "template": "statement-email",
                    "when": "has_email",
                    "counts": False,
                },
            ],
        }  # fmt: skip
    )
    csv = tmp_path / "c.csv"
    csv.write_text(
        "phone,name,email,amount_due,due_date,card_last4\n"
        "13800000001,张三,a@x.test,10.00,2026-12-20,1234\n",
        "utf-8",
    )
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        import_contacts(s, row, csv, default_region="CN", now=now)
    seq = Sequencer(store, LIBRARY, Settings().bank, calls_per_day=3)
    assert seq.tick("budget", now).queued == {1: 1}
    with store.session() as s:
        row = s.scalars(select(Campaign)).one()
        c = s.scalars(select(Contact)).one()
        assert c.attempts == 1
        (a,) = start_attempts(s, lease(s, row, now, 5, "w", daily_cap=3), row, now, daily_cap=3)
        assert isinstance(a, Attempt) and a.seq == 2
        finish_attempt(s, a, Outcome.NO_ANSWER, now + dt.timedelta(minutes=1))
        assert c.status == "done"  # the SMS and one call: the budget of 2 is spent
    later = now + dt.timedelta(minutes=30)
    assert seq.tick("budget", later).queued == {3: 1}  # the notice e-mail counts for nothing
    with store.session() as s:
        assert s.scalars(select(Contact)).one().attempts == 2
        assert lease(s, s.scalars(select(Campaign)).one(), later, 5, "w", daily_cap=3) == []
    with store.session() as s:
        mails = s.scalars(select(Message).where(Message.channel == Channel.EMAIL.value)).all()
        assert [m.budget for m in mails] == [False]
