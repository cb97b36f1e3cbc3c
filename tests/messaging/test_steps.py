"""Multi-step plans: order, conditions, waits, and channel windows (marketing SMS never at night)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.errors import ConfigError
from dialer.messaging.steps import (
    CHANNEL_WINDOWS,
    Action,
    ContactFacts,
    StepChannel,
    parse_steps,
    plan,
)

SH = ZoneInfo("Asia/Shanghai")
STEPS = parse_steps(
    [
        {"channel": "sms", "template": "repayment-due-sms", "at": "09:00"},
        {"channel": "call", "at": "10:00", "when": "no_reply"},
        {"channel": "sms", "template": "repayment-fallback-sms", "when": "calls_failed"},
        {"channel": "email", "template": "statement-email", "when": "has_email"},
    ]
)


def facts(**kw: object) -> ContactFacts:
    base: dict[str, object] = {
        "zone": "Asia/Shanghai",
        "steps_done": frozenset(),
        "replied": False,
        "calls_active": True,
        "calls_started": False,
        "last_outcome": None,
        "has_email": False,
        "marketing": {},
    }
    base.update(kw)
    return ContactFacts(**base)  # type: ignore[arg-type]


def at(h: int, m: int = 0, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 12, day, h, m, tzinfo=SH)


def test_a_contact_walks_the_steps() -> None:
    d = plan(STEPS, facts(), at(7, 30))
    assert (d.action, d.step, d.why) == (Action.WAIT, 1, "waiting for step 1 at 09:00")
    assert plan(STEPS, facts(), at(9, 5)).action is Action.SEND
    d = plan(STEPS, facts(steps_done=frozenset({1})), at(9, 5))
    assert (d.action, d.step, d.why) == (Action.WAIT, 2, "waiting for step 2 at 10:00")
    assert plan(STEPS, facts(steps_done=frozenset({1})), at(10, 0)).action is Action.CALLING
    # calls over, none reached the customer: the fallback SMS
    over = facts(
        steps_done=frozenset({1}), calls_active=False, calls_started=True, last_outcome="no_answer"
    )
    d = plan(STEPS, over, at(15))
    assert (d.action, d.step) == (Action.SEND, 3)
    # reached on the phone: no fallback; no address: no e-mail
    reached = facts(
        steps_done=frozenset({1}),
        calls_active=False,
        calls_started=True,
        last_outcome="agent_handled",
    )
    assert plan(STEPS, reached, at(15)).action is Action.DONE
    with_mail = facts(
        steps_done=frozenset({1, 3}),
        calls_active=False,
        calls_started=True,
        last_outcome="busy",
        has_email=True,
    )
    assert plan(STEPS, with_mail, at(15)).step == 4


def test_fallback_late_in_the_evening_waits_for_the_morning() -> None:
    over = facts(
        steps_done=frozenset({1}), calls_active=False, calls_started=True, last_outcome="no_answer"
    )
    d = plan(STEPS, over, at(21, 30))
    assert d.action is Action.WAIT and d.at == at(8, 0, day=2)
    assert d.why == "waiting for step 3 at 2026-12-02 08:00"


def test_bad_steps_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs a template"):
        parse_steps([{"channel": "sms"}])
    with pytest.raises(ConfigError, match="one call step"):
        parse_steps([{"channel": "call"}, {"channel": "call"}])
    with pytest.raises(ConfigError, match="HH:MM"):
        parse_steps([{"channel": "call", "at": "ten"}])
    assert parse_steps([{"channel": "call", "at": 600}])[0].at == dt.time(10, 0)  # YAML 10:00


@given(
    st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2027, 12, 31),
        timezones=st.sampled_from([ZoneInfo("UTC"), SH]),
    ),
    st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "America/New_York", "Europe/Berlin"]),
    st.sampled_from([None, dt.time(0, 0), dt.time(6, 0), dt.time(12, 0), dt.time(23, 30)]),
)
def test_marketing_sms_is_never_sent_at_night(now: dt.datetime, zone: str, start: object) -> None:
    steps = parse_steps([{"channel": "sms", "template": "offer", "at": start}])
    d = plan(steps, facts(zone=zone, marketing={1: True}), now)
    local = now.astimezone(ZoneInfo(zone)).time()
    window = CHANNEL_WINDOWS[(StepChannel.SMS, True)]
    if d.action is Action.SEND:
        assert window.holds(local)
        assert dt.time(9, 0) <= local < dt.time(20, 0)
    else:
        assert d.action is Action.WAIT and d.at is not None
        assert window.holds(d.at.time()) and d.at > now


def test_next_number_after_failed_calls() -> None:
    from dialer.messaging.steps import next_number

    numbers = [("+1", True), ("+2", True)]
    assert next_number(numbers, "+1", 1, 2, False) is None  # one failure is not two
    assert next_number(numbers, "+1", 2, 2, False) == "+2"
    assert next_number(numbers, "+1", 2, 2, True) is None  # a call is on: not now
    assert next_number(numbers, "+2", 5, 2, False) is None  # the last number stays
    assert next_number(numbers, "+1", 9, None, False) is None  # the step does not switch
    # an invalid or DNC'd number is passed over
    assert next_number([("+1", True), ("+2", False), ("+3", True)], "+1", 2, 2, False) == "+3"
    assert next_number([("+1", True), ("+2", False)], "+1", 2, 2, False) is None


def test_a_report_drives_the_next_step() -> None:
    steps = parse_steps(
        [
            {"channel": "sms", "template": "repayment-due-sms", "at": "09:00"},
            {"channel": "email", "template": "statement-email", "when": "not_delivered"},
        ]
    )
    pending = facts(steps_done=frozenset({1}), message_states={1: "sent"})
    d = plan(steps, pending, at(10))
    assert (d.action, d.step, d.why) == (
        Action.WAIT,
        2,
        "step 2 waits for the delivery report of step 1",
    )
    for state in ("failed", "expired", "suppressed", "unknown"):
        gone = facts(steps_done=frozenset({1}), message_states={1: state})
        assert (plan(steps, gone, at(10)).action, plan(steps, gone, at(10)).step) == (
            Action.SEND,
            2,
        )
    arrived = facts(steps_done=frozenset({1}), message_states={1: "delivered"})
    assert plan(steps, arrived, at(10)).action is Action.DONE
    with pytest.raises(ConfigError, match="message step"):
        parse_steps([{"channel": "call", "when": "not_delivered"}])
