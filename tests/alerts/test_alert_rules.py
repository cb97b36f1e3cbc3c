"""The rules of an alert's call, for every instant, priority and number state (hypothesis):
never a number on a service DNC list, never a number with a live call, never at night below
the night minimum, the night never allows more than the day, and ``next_open`` is the first
allowed instant. The ladder expands in order."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from dialer.lists.alertspec import Hours, NumberNow, Reach, Reason, Step, expand, first_broken

ZONES = st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata"])
INSTANTS = st.datetimes(
    min_value=dt.datetime(2026, 1, 1),
    max_value=dt.datetime(2027, 12, 31),
    timezones=st.just(dt.UTC),
)
PRIORITY = st.integers(0, 9)


@st.composite
def hours(draw: st.DrawFn) -> Hours:
    start = draw(st.integers(0, 22 * 60))
    end = draw(st.integers(start + 1, 24 * 60))
    night = draw(st.one_of(st.none(), PRIORITY))
    return Hours(start=_time(start), end=_time(end), night_min_priority=night)


def _time(minutes: int) -> dt.time:
    return dt.time.max if minutes == 24 * 60 else dt.time(minutes // 60, minutes % 60)


@given(hours(), INSTANTS, ZONES, PRIORITY, st.booleans(), st.booleans())
def test_the_rules_hold_for_every_instant(
    h: Hours, now: dt.datetime, zone: str, priority: int, dnc: bool, live: bool
) -> None:
    local = now.astimezone(ZoneInfo(zone))
    reason = first_broken(NumberNow(dnc=dnc, in_flight=live), h, local, priority)
    if dnc:
        assert reason is Reason.DNC
    elif reason is None:
        assert not live
        assert h.is_day(local) or (
            h.night_min_priority is not None and priority >= h.night_min_priority
        )
    if not dnc and not live and not h.is_day(local):
        allowed = h.night_min_priority is not None and priority >= h.night_min_priority
        assert (reason is None) == allowed


@given(hours(), INSTANTS, ZONES, PRIORITY, PRIORITY)
def test_night_is_stricter_and_priority_only_opens(
    h: Hours, now: dt.datetime, zone: str, p: int, q: int
) -> None:
    local = now.astimezone(ZoneInfo(zone))
    lo, hi = min(p, q), max(p, q)
    if h.allows(local, lo):
        assert h.allows(local, hi)  # a more urgent alert is never held where a lesser rings
    if not h.is_day(local) and h.allows(local, lo):
        noon_like = local.replace(hour=h.start.hour, minute=h.start.minute)
        assert h.allows(noon_like, lo)  # whatever rings at night rings in the day too


@given(hours(), INSTANTS, ZONES, PRIORITY)
def test_next_open_is_the_first_allowed_minute(
    h: Hours, now: dt.datetime, zone: str, priority: int
) -> None:
    local = now.astimezone(ZoneInfo(zone))
    at = h.next_open(local, priority)
    assert at >= local and h.allows(at, priority)
    probe = local
    while probe < at - dt.timedelta(minutes=1):  # nothing allowed in between (minute steps)
        assert not h.allows(probe, priority)
        probe += dt.timedelta(minutes=7)


def test_the_ladder_expands_numbers_in_order() -> None:
    reach = [
        Reach("main", "+8613900000001", "Asia/Shanghai"),
        Reach("home", "+862100000001", "Asia/Shanghai"),
        Reach("work", "+862100000002", "Asia/Shanghai"),
    ]
    ladder = [
        Step(call="main"),
        Step(call="others", after=dt.timedelta(minutes=1)),
        Step(sms="fraud-alert-sms"),
    ]
    plan = expand(ladder, reach)
    assert [(p["act"], p["who"], p["after_s"]) for p in plan] == [
        ("call", "main", 0.0),
        ("call", "home", 60.0),
        ("call", "work", 0.0),
        ("sms", "main", 0.0),
    ]
