"""Compliance core: may this contact be dialled at this instant, and when may it be retried?

Why this file is pure: every rule is a function of the contact's state, the campaign's
policy, facts the store already knows about the number (DNC, earlier attempts, a live call)
and an instant passed in by the caller. Nothing here reads a clock or a database, so the
hopper, ``dialer hopper explain``, the runner and the property tests all ask the same
question the same way.

Rules are checked in one fixed order (``Reason``); a contact held back is reported under the
FIRST rule it breaks, so ``eligible + sum(reasons) == contacts`` always holds.

- The calling window is read in the contact's own zone: local start inclusive, local end
  exclusive, on the listed days of the week. ``end == 24:00`` means "to the end of the day".
- Holidays come from the ``holidays`` package for the country of the number. Official make-up
  working days (``weekend_workdays``, e.g. China's 调休 Saturdays/Sundays) are never holidays;
  they count as the weekday they fall on, so the campaign's ``days`` decide about them.
- The daily cap counts attempts to the NUMBER (every campaign) that started on the contact's
  current local day; the campaign's per-contact cap (``daily_cap`` in the campaign file,
  default the same number) counts the CONTACT's touches on that day in every channel its
  budget counts: calls to any of its numbers and the messages of counted steps.
- ``max_attempts`` is the contact's one budget across channels: ``contact.attempts`` counts its
  calls and its counted messages (``dialer.lists.touches``).
- A number with an attempt still in progress (no outcome yet) is ``scheduled_later``: its
  current attempt is its next one. This is what stops a second dial of a live number.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

from dialer.lists.campaigns import CallingWindow, CampaignSpec, State
from dialer.outcomes import RETRY_KEY_FOR, Outcome


class Reason(enum.StrEnum):
    """Why a contact is not eligible, in the order the rules are checked."""

    CAMPAIGN_PAUSED = "campaign_paused"
    DONE = "done"
    EXPIRED = "expired"
    DNC = "dnc"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DAILY_CAP = "daily_cap"
    LOCKED_OUT = "locked_out"
    SCHEDULED_LATER = "scheduled_later"
    HOLIDAY = "holiday"
    OUTSIDE_WINDOW = "outside_window"


REASON_ORDER: tuple[Reason, ...] = tuple(Reason)


class ContactStatus(enum.StrEnum):
    ACTIVE = "active"
    DONE = "done"


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached ``ZoneInfo``; raises ``ZoneInfoNotFoundError`` (a ``KeyError``) if unknown."""
    return ZoneInfo(name)


def is_valid_zone(name: str) -> bool:
    if not name or name.startswith("Etc/Unknown"):
        return False
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# --- holidays -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _YearHolidays:
    days_off: frozenset[dt.date]
    make_up_workdays: frozenset[dt.date]


class HolidayCalendar:
    """Public holidays per country, computed once per (country, year) from ``holidays``.

    A country the package does not know has no holidays. Make-up working days are never
    holidays (they are ordinary days of their weekday).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], _YearHolidays] = {}

    def _year(self, country: str, year: int) -> _YearHolidays:
        key = (country, year)
        got = self._cache.get(key)
        if got is None:
            try:
                h = holidays_pkg.country_holidays(country, years=year)
            except NotImplementedError:
                got = _YearHolidays(frozenset(), frozenset())
            else:
                workdays = frozenset(getattr(h, "weekend_workdays", ()) or ())
                got = _YearHolidays(
                    frozenset(d for d in h.keys() if d.year == year and d not in workdays),
                    frozenset(d for d in workdays if d.year == year),
                )
            self._cache[key] = got
        return got

    def is_holiday(self, country: str | None, day: dt.date) -> bool:
        if not country:
            return False
        return day in self._year(country.upper(), day.year).days_off

    def is_make_up_workday(self, country: str | None, day: dt.date) -> bool:
        if not country:
            return False
        return day in self._year(country.upper(), day.year).make_up_workdays


#: One shared calendar: holiday tables never change while the process runs.
DEFAULT_CALENDAR = HolidayCalendar()


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The rules of one campaign, as the compliance core needs them."""

    running: bool
    window: CallingWindow
    max_attempts: int
    retry: Mapping[Outcome, dt.timedelta]
    purpose: str
    daily_cap: int  # attempts per NUMBER per local day, every campaign (the settings' cap)
    contact_daily_cap: int | None = None  # touches per CONTACT per local day, every channel

    @classmethod
    def of(cls, spec: CampaignSpec, *, daily_cap: int) -> Policy:
        return cls(
            running=spec.state is State.RUNNING,
            window=spec.calling_window,
            max_attempts=spec.max_attempts,
            retry=dict(spec.retry),
            purpose=spec.purpose.value,
            daily_cap=daily_cap,
            contact_daily_cap=spec.daily_cap if spec.daily_cap is not None else daily_cap,
        )

    @property
    def lockout(self) -> dt.timedelta | None:
        """How long a contact stays locked out after an abandoned call."""
        return self.retry.get(Outcome.ABANDONED)


@dataclass(frozen=True)
class ContactState:
    """What the rules read from a contact row."""

    phone: str
    timezone: str
    region: str | None = None
    status: str = ContactStatus.ACTIVE.value
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    abandoned_at: dt.datetime | None = None
    valid_until: dt.date | None = None

    @classmethod
    def of(cls, row: Any) -> ContactState:
        return cls(
            phone=row.phone,
            timezone=row.timezone,
            region=row.region,
            status=row.status,
            attempts=row.attempts or 0,
            next_attempt_at=row.next_attempt_at,
            abandoned_at=row.abandoned_at,
            valid_until=row.valid_until,
        )


@dataclass(frozen=True)
class NumberFacts:
    """What the store knows about the contact's NUMBER at this instant."""

    dnc: bool = False
    attempt_times: tuple[dt.datetime, ...] = ()  # starts of attempts to the number, any campaign
    in_flight: bool = False  # an attempt to the number has no outcome yet
    # the CONTACT's touches near the instant (its calls to any number, its counted messages)
    contact_times: tuple[dt.datetime, ...] = ()


NO_FACTS = NumberFacts()


# --- the rules ----------------------------------------------------------------------------


def local_time(now: dt.datetime, tz: str) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("compliance needs an aware instant")
    return now.astimezone(zone(tz))


def attempts_on_local_day(times: Iterable[dt.datetime], tz: str, day: dt.date) -> int:
    z = zone(tz)
    return sum(1 for t in times if t.astimezone(z).date() == day)


@functools.lru_cache(maxsize=64)
def _day_indices(days: tuple[Any, ...]) -> frozenset[int]:
    return frozenset(d.index for d in days)


def in_window(window: CallingWindow, local: dt.datetime) -> bool:
    """Local wall-clock time inside [start, end) on a listed day."""
    if local.weekday() not in _day_indices(window.days):
        return False
    t = local.time().replace(tzinfo=None)
    if t < window.start:
        return False
    return window.end == dt.time.max or t < window.end


def first_broken_rule(
    contact: ContactState,
    policy: Policy,
    now: dt.datetime,
    facts: NumberFacts = NO_FACTS,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> Reason | None:
    """The first rule (in ``REASON_ORDER``) the contact breaks at ``now``; None if eligible."""
    if not policy.running:
        return Reason.CAMPAIGN_PAUSED
    if contact.status == ContactStatus.DONE:
        return Reason.DONE
    local = local_time(now, contact.timezone)
    today = local.date()
    if contact.valid_until is not None and today > contact.valid_until:
        return Reason.EXPIRED
    if facts.dnc:
        return Reason.DNC
    if contact.attempts >= policy.max_attempts:
        return Reason.ATTEMPTS_EXHAUSTED
    if (
        facts.attempt_times
        and attempts_on_local_day(facts.attempt_times, contact.timezone, today) >= policy.daily_cap
    ):
        return Reason.DAILY_CAP
    if (
        facts.contact_times
        and policy.contact_daily_cap is not None
        and attempts_on_local_day(facts.contact_times, contact.timezone, today)
        >= policy.contact_daily_cap
    ):
        return Reason.DAILY_CAP
    lockout = policy.lockout
    if contact.abandoned_at is not None and lockout is not None:
        if now < contact.abandoned_at + lockout:
            return Reason.LOCKED_OUT
    if facts.in_flight or (contact.next_attempt_at is not None and now < contact.next_attempt_at):
        return Reason.SCHEDULED_LATER
    return window_rule(policy.window, contact.region, local, calendar)


def window_rule(
    window: CallingWindow,
    region: str | None,
    local: dt.datetime,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> Reason | None:
    """The rules of the calendar alone (holiday, calling window) at the contact's ``local``
    time: the last rules of ``first_broken_rule``, and the ones the dialler checks again right
    before an Originate leaves (a call leased inside its window may wait for its line, its
    pace or the switch past the window's end)."""
    if window.skip_holidays and calendar.is_holiday(region, local.date()):
        return Reason.HOLIDAY
    if not in_window(window, local):
        return Reason.OUTSIDE_WINDOW
    return None


def is_eligible(
    contact: ContactState,
    policy: Policy,
    now: dt.datetime,
    facts: NumberFacts = NO_FACTS,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> bool:
    return first_broken_rule(contact, policy, now, facts, calendar) is None


@dataclass
class ReasonCounts:
    """Eligible contacts plus, for the rest, how many are held back by each first rule.

    ``by_zone`` splits the same counts by the contacts' time zone (None = eligible), which is
    what tells an operator *why* nothing dials (every open zone is outside its window...).
    """

    eligible: int = 0
    reasons: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    by_zone: dict[str, dict[Reason | None, int]] = field(default_factory=dict)

    def add(self, reason: Reason | None, n: int = 1, zone: str | None = None) -> None:
        if reason is None:
            self.eligible += n
        else:
            self.reasons[reason] += n
        if zone is not None:
            per = self.by_zone.setdefault(zone, {})
            per[reason] = per.get(reason, 0) + n

    @property
    def total(self) -> int:
        return self.eligible + sum(self.reasons.values())

    def to_json(self) -> dict[str, Any]:
        return {"eligible": self.eligible, "reasons": {r.value: n for r, n in self.reasons.items()}}


# --- retry rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryDecision:
    """What an attempt's outcome does to its contact."""

    done: bool
    next_attempt_at: dt.datetime | None  # None when done
    abandoned_at: dt.datetime | None  # set when the outcome starts a lock-out
    rule: Outcome | None  # the retry key used (``unknown`` uses ``failed``), None if final


def retry_decision(
    policy: Policy, outcome: Outcome, attempts_used: int, now: dt.datetime
) -> RetryDecision:
    """Turn an outcome into the contact's next attempt time.

    ``attempts_used`` counts the attempt that just ended. An outcome with no retry entry is
    final; the budget ``max_attempts`` is shared by every cause. An abandoned call locks the
    contact out for the ``abandoned`` delay (the next attempt is not before it either).
    """
    outcome = Outcome(outcome)
    key = RETRY_KEY_FOR.get(outcome, outcome)
    delay = policy.retry.get(key)
    abandoned_at = now if outcome is Outcome.ABANDONED else None
    if delay is None or attempts_used >= policy.max_attempts:
        return RetryDecision(True, None, abandoned_at, key if delay is not None else None)
    return RetryDecision(False, now + delay, abandoned_at, key)


__all__ = [
    "DEFAULT_CALENDAR",
    "NO_FACTS",
    "REASON_ORDER",
    "ContactState",
    "ContactStatus",
    "HolidayCalendar",
    "NumberFacts",
    "Policy",
    "Reason",
    "ReasonCounts",
    "RetryDecision",
    "attempts_on_local_day",
    "first_broken_rule",
    "in_window",
    "window_rule",
    "is_eligible",
    "is_valid_zone",
    "local_time",
    "retry_decision",
    "zone",
]
