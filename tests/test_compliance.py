"""The compliance core, with an independent oracle for every rule (property-based)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.lists.campaigns import CallingWindow, Weekday
from dialer.lists.compliance import (
    REASON_ORDER,
    ContactState,
    HolidayCalendar,
    NumberFacts,
    Policy,
    Reason,
    first_broken_rule,
    local_time,
    retry_decision,
    window_rule,
)
from dialer.outcomes import Outcome

UTC = dt.UTC
RETRY = {
    Outcome.BUSY: dt.timedelta(minutes=10),
    Outcome.NO_ANSWER: dt.timedelta(hours=2),
    Outcome.ABANDONED: dt.timedelta(hours=72),
    Outcome.FAILED: dt.timedelta(minutes=30),
}


def policy(**kw: object) -> Policy:
    base: dict[str, object] = {
        "running": True,
        "window": CallingWindow(),
        "max_attempts": 4,
        "retry": RETRY,
        "purpose": "service",
        "daily_cap": 3,
    }
    base.update(kw)
    return Policy(**base)  # type: ignore[arg-type]


CN = ContactState(phone="+8613800138000", timezone="Asia/Shanghai", region="CN")
NY = ContactState(phone="+12127365000", timezone="America/New_York", region="US")


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


# --- examples -----------------------------------------------------------------------------


def test_window_start_inclusive_end_exclusive_in_the_contacts_zone() -> None:
    p = policy()
    assert first_broken_rule(CN, p, at("2026-12-01T01:00:00+00:00")) is None  # 09:00 CST
    assert first_broken_rule(CN, p, at("2026-12-01T00:59:59+00:00")) == Reason.OUTSIDE_WINDOW
    assert first_broken_rule(CN, p, at("2026-12-01T11:59:59+00:00")) is None  # 19:59:59
    assert first_broken_rule(CN, p, at("2026-12-01T12:00:00+00:00")) == Reason.OUTSIDE_WINDOW
    # the same instant is 20:00 in Shanghai and 07:00 in New York: both outside
    assert first_broken_rule(NY, p, at("2026-12-01T12:00:00+00:00")) == Reason.OUTSIDE_WINDOW
    assert first_broken_rule(NY, p, at("2026-12-01T14:00:00+00:00")) is None  # 09:00 EST


def test_dst_in_new_york() -> None:
    p = policy()
    # 2026-03-08: clocks jump 02:00 -> 03:00. 09:00 EDT = 13:00 UTC (was 14:00 the day before)
    assert first_broken_rule(NY, p, at("2026-03-08T13:00:00+00:00")) is None
    assert first_broken_rule(NY, p, at("2026-03-07T13:00:00+00:00")) == Reason.OUTSIDE_WINDOW


def test_days_of_week_and_24h_end() -> None:
    p = policy(window=CallingWindow(start="00:00", end="24:00", days=["mon"]))
    assert first_broken_rule(CN, p, at("2026-11-30T15:59:59+00:00")) is None  # Mon 23:59:59
    assert first_broken_rule(CN, p, at("2026-11-30T16:00:00+00:00")) == Reason.OUTSIDE_WINDOW


def test_chinese_holidays_and_make_up_workdays() -> None:
    p = policy()
    noon = "T04:00:00+00:00"  # 12:00 in Shanghai
    assert first_broken_rule(CN, p, at("2026-10-01" + noon)) == Reason.HOLIDAY  # National Day
    assert first_broken_rule(CN, p, at("2026-02-17" + noon)) == Reason.HOLIDAY  # Spring Fest.
    # a New York contact is not on a Chinese holiday
    assert first_broken_rule(NY, p, at("2026-10-01T16:00:00+00:00")) is None
    no_skip = policy(window=CallingWindow(skip_holidays=False))
    assert first_broken_rule(CN, no_skip, at("2026-10-01" + noon)) is None
    # Saturday 2026-02-14 and Sunday 2026-09-20 are official make-up working days: not
    # holidays; they count as the weekday they fall on.
    cal = HolidayCalendar()
    assert cal.is_make_up_workday("CN", dt.date(2026, 2, 14))
    assert not cal.is_holiday("CN", dt.date(2026, 2, 14))
    assert first_broken_rule(CN, p, at("2026-02-14" + noon)) is None
    weekdays = policy(window=CallingWindow(days=["mon", "tue", "wed", "thu", "fri", "sat"]))
    assert first_broken_rule(CN, weekdays, at("2026-02-14" + noon)) is None  # a Saturday
    assert first_broken_rule(CN, weekdays, at("2026-09-20" + noon)) == Reason.OUTSIDE_WINDOW


def test_reasons_in_order() -> None:
    now = at("2026-12-01T04:00:00+00:00")
    p = policy()
    c = CN
    assert first_broken_rule(c, policy(running=False), now) == Reason.CAMPAIGN_PAUSED
    assert first_broken_rule(ContactState(**{**c.__dict__, "status": "done"}), p, now) == (
        Reason.DONE
    )
    expired = ContactState(**{**c.__dict__, "valid_until": dt.date(2026, 11, 30)})
    assert first_broken_rule(expired, p, now) == Reason.EXPIRED
    # valid_until is a local date: 2026-12-01 00:30 in Shanghai is still 11-30 in UTC
    assert first_broken_rule(expired, p, at("2026-11-30T16:30:00+00:00")) == Reason.EXPIRED
    assert first_broken_rule(c, p, now, NumberFacts(dnc=True)) == Reason.DNC
    spent = ContactState(**{**c.__dict__, "attempts": 4})
    assert first_broken_rule(spent, p, now) == Reason.ATTEMPTS_EXHAUSTED
    today = NumberFacts(attempt_times=(now - dt.timedelta(hours=1),) * 3)
    assert first_broken_rule(c, p, now, today) == Reason.DAILY_CAP
    # three attempts yesterday (local) do not count today
    yesterday = NumberFacts(attempt_times=(at("2026-11-30T15:59:00+00:00"),) * 3)
    assert first_broken_rule(c, p, now, yesterday) is None
    locked = ContactState(**{**c.__dict__, "abandoned_at": now - dt.timedelta(hours=71)})
    assert first_broken_rule(locked, p, now) == Reason.LOCKED_OUT
    later = ContactState(**{**c.__dict__, "next_attempt_at": now + dt.timedelta(seconds=1)})
    assert first_broken_rule(later, p, now) == Reason.SCHEDULED_LATER
    due = ContactState(**{**c.__dict__, "next_attempt_at": now})
    assert first_broken_rule(due, p, now) is None
    unlocked = ContactState(**{**c.__dict__, "abandoned_at": now - dt.timedelta(hours=72)})
    assert first_broken_rule(unlocked, p, now) is None
    assert first_broken_rule(c, p, now, NumberFacts(in_flight=True)) == Reason.SCHEDULED_LATER


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        first_broken_rule(CN, policy(), dt.datetime(2026, 12, 1, 4))


# --- retry rules --------------------------------------------------------------------------


def test_retry_rules() -> None:
    p = policy()
    now = at("2026-12-01T04:00:00+00:00")
    d = retry_decision(p, Outcome.BUSY, 1, now)
    assert not d.done and d.next_attempt_at == now + dt.timedelta(minutes=10)
    d = retry_decision(p, Outcome.INVALID_NUMBER, 1, now)  # no retry entry: final
    assert d.done and d.next_attempt_at is None
    d = retry_decision(p, Outcome.COMPLETED, 1, now)
    assert d.done
    d = retry_decision(p, Outcome.UNKNOWN, 1, now)  # uses the failed rule
    assert d.rule == Outcome.FAILED and d.next_attempt_at == now + dt.timedelta(minutes=30)
    d = retry_decision(p, Outcome.BUSY, 4, now)  # budget spent
    assert d.done and d.next_attempt_at is None
    d = retry_decision(p, Outcome.ABANDONED, 1, now)
    assert d.abandoned_at == now and d.next_attempt_at == now + dt.timedelta(hours=72)
    no_abandon = policy(retry={Outcome.BUSY: dt.timedelta(minutes=1)})
    d = retry_decision(no_abandon, Outcome.ABANDONED, 1, now)
    assert d.done and d.abandoned_at == now


@given(
    outcomes=st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=12),
    max_attempts=st.integers(1, 6),
)
@settings(max_examples=150, deadline=None)
def test_retries_never_exceed_the_budget(outcomes: list[Outcome], max_attempts: int) -> None:
    p = policy(max_attempts=max_attempts)
    now = at("2026-12-01T04:00:00+00:00")
    made = 0
    for o in outcomes:
        made += 1
        d = retry_decision(p, o, made, now)
        key = Outcome.FAILED if o is Outcome.UNKNOWN else o
        if key not in RETRY:
            assert d.done
        if d.done:
            break
        assert d.next_attempt_at is not None and d.next_attempt_at > now
        now = d.next_attempt_at
    assert made <= max_attempts


# --- the property: an independent oracle for each rule ------------------------------------

ZONES = [
    ("Asia/Shanghai", "CN"),
    ("America/New_York", "US"),
    ("Europe/London", "GB"),
    ("Australia/Sydney", "AU"),
    ("Asia/Kolkata", "IN"),
    ("America/St_Johns", "CA"),
    ("Pacific/Kiritimati", "KI"),
    ("Asia/Shanghai", None),
]
# instants near DST transitions and on Chinese / US / UK holidays and make-up days
SPECIAL_DAYS = [
    "2026-03-08T07:00:00+00:00",
    "2026-11-01T06:00:00+00:00",
    "2026-03-29T01:00:00+00:00",
    "2026-10-25T01:00:00+00:00",
    "2026-04-05T16:00:00+00:00",
    "2026-10-01T04:00:00+00:00",
    "2026-02-14T04:00:00+00:00",
    "2026-02-17T04:00:00+00:00",
    "2025-01-26T04:00:00+00:00",
    "2026-07-03T15:00:00+00:00",
    "2026-12-25T12:00:00+00:00",
]

special = st.builds(
    lambda base, secs: dt.datetime.fromisoformat(base) + dt.timedelta(seconds=secs),
    st.sampled_from(SPECIAL_DAYS),
    st.integers(-14 * 3600, 14 * 3600),
)
instants = st.one_of(
    st.datetimes(
        min_value=dt.datetime(2024, 1, 1),
        max_value=dt.datetime(2028, 12, 31),
        timezones=st.just(UTC),
    ),
    special,
    special,
)


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 23 * 60))
    to_end = draw(st.booleans())
    end = None if to_end else draw(st.integers(start + 1, 24 * 60 - 1))
    days = draw(st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True))
    return CallingWindow(
        start=f"{start // 60:02d}:{start % 60:02d}",
        end="24:00" if end is None else f"{end // 60:02d}:{end % 60:02d}",
        days=days,
        skip_holidays=draw(st.booleans()),
    )


def rare(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """None three times out of four."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


@st.composite
def cases(draw: st.DrawFn) -> tuple[ContactState, Policy, dt.datetime, NumberFacts]:
    now = draw(instants)
    tz, region = draw(st.sampled_from(ZONES))
    win = draw(windows())
    edge = draw(st.sampled_from(["none", "start", "end"]))
    if edge != "none":  # land exactly on (or one second around) a window edge, local time
        t = win.start if edge == "start" or win.end == dt.time.max else win.end
        local_day = dt.datetime.fromtimestamp(now.timestamp(), ZoneInfo(tz)).date()
        wall = dt.datetime.combine(local_day, t, tzinfo=ZoneInfo(tz))
        now = wall.astimezone(UTC) + dt.timedelta(seconds=draw(st.sampled_from([-1, 0, 0, 1])))
    near = st.builds(lambda s: now + dt.timedelta(seconds=s), st.integers(-5 * 86400, 5 * 86400))
    contact = ContactState(
        phone="+8613800138000",
        timezone=tz,
        region=region,
        status=draw(st.sampled_from(["active"] * 7 + ["done"])),
        attempts=draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6])),
        next_attempt_at=draw(rare(near)),
        abandoned_at=draw(rare(near)),
        valid_until=draw(
            rare(st.builds(lambda d: now.date() + dt.timedelta(days=d), st.integers(-2, 2)))
        ),
    )
    pol = policy(
        running=draw(st.integers(0, 7)) > 0,
        window=win,
        max_attempts=draw(st.integers(1, 5)),
        retry=draw(st.sampled_from([RETRY, {Outcome.BUSY: dt.timedelta(minutes=10)}])),
        daily_cap=draw(st.integers(1, 4)),
    )
    facts = NumberFacts(
        dnc=draw(st.integers(0, 7)) == 0,
        attempt_times=tuple(draw(st.lists(near, max_size=6))) if draw(st.booleans()) else (),
        in_flight=draw(st.integers(0, 7)) == 0,
    )
    return contact, pol, now, facts


def broken_rules(c: ContactState, p: Policy, now: dt.datetime, f: NumberFacts) -> set[Reason]:
    """Every rule the contact breaks, each checked on its own, without the core's helpers."""
    z = ZoneInfo(c.timezone)
    local = dt.datetime.fromtimestamp(now.timestamp(), tz=z)
    day = local.date()
    out: set[Reason] = set()
    if not p.running:
        out.add(Reason.CAMPAIGN_PAUSED)
    if c.status == "done":
        out.add(Reason.DONE)
    if c.valid_until is not None and day > c.valid_until:
        out.add(Reason.EXPIRED)
    if f.dnc:
        out.add(Reason.DNC)
    if c.attempts >= p.max_attempts:
        out.add(Reason.ATTEMPTS_EXHAUSTED)
    same_day = [
        t for t in f.attempt_times if dt.datetime.fromtimestamp(t.timestamp(), z).date() == day
    ]
    if len(same_day) >= p.daily_cap:
        out.add(Reason.DAILY_CAP)
    lock = p.retry.get(Outcome.ABANDONED)
    if c.abandoned_at is not None and lock is not None and now < c.abandoned_at + lock:
        out.add(Reason.LOCKED_OUT)
    if f.in_flight or (c.next_attempt_at is not None and c.next_attempt_at > now):
        out.add(Reason.SCHEDULED_LATER)
    if p.window.skip_holidays and c.region:
        try:
            h = holidays.country_holidays(c.region, years=day.year)
        except NotImplementedError:
            h = None
        if h is not None and day in h and day not in h.weekend_workdays:
            out.add(Reason.HOLIDAY)
    minute = local.hour * 60 + local.minute
    start = p.window.start.hour * 60 + p.window.start.minute
    to_midnight = p.window.end == dt.time.max
    end = 24 * 60 if to_midnight else p.window.end.hour * 60 + p.window.end.minute
    days = {["mon", "tue", "wed", "thu", "fri", "sat", "sun"].index(d.value) for d in p.window.days}
    if local.weekday() not in days or not (start <= minute < end):
        out.add(Reason.OUTSIDE_WINDOW)
    return out


@given(cases())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_eligible_contact_ever_breaks_a_rule(
    case: tuple[ContactState, Policy, dt.datetime, NumberFacts],
) -> None:
    contact, pol, now, facts = case
    got = first_broken_rule(contact, pol, now, facts)
    broken = broken_rules(contact, pol, now, facts)
    if got is None:
        assert broken == set()
    else:
        assert got in broken
        assert got == min(broken, key=REASON_ORDER.index)  # the FIRST broken rule


@given(cases(), st.integers(0, 2 * 3600))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_calendar_checked_as_a_call_leaves_is_the_rules_own(
    case: tuple[ContactState, Policy, dt.datetime, NumberFacts], delay_s: int
) -> None:
    """A call leased at ``now`` leaves ``delay_s`` later (its pace, a line, the switch): the
    check made then (``window_rule``) refuses exactly when the window or a holiday forbids
    a call at that later instant."""
    contact, pol, now, _ = case
    later = now + dt.timedelta(seconds=delay_s)
    got = window_rule(pol.window, contact.region, local_time(later, contact.timezone))
    calendar = {Reason.HOLIDAY, Reason.OUTSIDE_WINDOW}
    broken = broken_rules(contact, pol, later, NumberFacts()) & calendar
    assert got == (min(broken, key=REASON_ORDER.index) if broken else None)
