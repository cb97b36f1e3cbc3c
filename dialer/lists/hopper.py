"""The hopper: which contacts may be dialled now, leased to one dialler at a time.

Why it is shaped like this: the rules live in ``dialer.lists.compliance`` (pure). This module only
gathers what they need from the store and applies them, in two steps so that it scales to
millions of contacts:

1. SQL does the cheap, index-friendly filtering: campaign, ``status``, attempts left,
   ``next_attempt_at`` reached, lease free (expired leases are free again), lock-out over,
   and only the (region, zone) pairs that are inside their calling window and not on a
   holiday right now;
2. Python re-checks EVERY rule with ``first_broken_rule`` on a bounded batch, after loading
   the facts about those numbers (DNC, attempts today in every campaign, a live attempt).

An attempt row with no outcome blocks its number (it is the number's current attempt);
the runner's crash recovery must finish stale ones (``unknown``), or the number stays
blocked.

``explain``/``counts`` apply the same function to every contact of the campaign and count
each one under its first broken rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.errors import ComplianceError, IllegalTransition, StoreError
from dialer.lists import prepared
from dialer.lists.callbacks import CALLBACK_PRIORITY, callback_dialled, keep_pending
from dialer.lists.campaigns import spec_of, within_ceilings
from dialer.lists.compliance import (
    DEFAULT_CALENDAR,
    ContactState,
    ContactStatus,
    HolidayCalendar,
    NumberFacts,
    Policy,
    Reason,
    ReasonCounts,
    RetryDecision,
    first_broken_rule,
    in_window,
    is_valid_zone,
    local_time,
    retry_decision,
)
from dialer.lists.dnc import DncChannel, DncMatcher, DncScope, channels_barring, scope_applies
from dialer.lists.touches import campaign_touches, contact_touches
from dialer.lists.wrapup import reapply
from dialer.outcomes import AttemptState, Outcome
from dialer.settings import Ceilings
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact, DncEntry

DEFAULT_LEASE = dt.timedelta(minutes=2)
#: rows of a lease batch whose numbers' facts are read at once (more when more are wanted):
#: a lease of one contact reads a few numbers' attempts and DNC entries, not the batch's
FACTS_AHEAD = 8
#: Attempts that can fall on a number's current local day lie within this distance of now.
_DAY_REACH = dt.timedelta(hours=27)
_IN_CHUNK = 500
_SHAPE_CACHE_TTL_S = 600.0


def _daily_cap(daily_cap: int | None) -> int:
    if daily_cap is not None:
        return daily_cap
    from dialer.settings import load_settings

    return load_settings().max_calls_per_number_per_day


def policy_of(
    campaign: Campaign, *, daily_cap: int | None = None, ceilings: Ceilings | None = None
) -> Policy:
    """The campaign's rules; with ``ceilings`` (the settings' compliance ceilings), within them
    whatever the stored row says (a row written before a ceiling was lowered, or by hand)."""
    spec = spec_of(campaign)
    if ceilings is not None:
        spec = within_ceilings(spec, ceilings)
    return Policy.of(spec, daily_cap=_daily_cap(daily_cap))


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("the hopper needs an aware instant")
    return now.astimezone(dt.UTC)


# --- facts about numbers ------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def facts_statement(phones: Sequence[str], now: dt.datetime) -> Any:
    """The attempts that make a number's facts: live ones, and those near ``now`` (the
    prepared statement with its values bound)."""
    return prepared.NUMBER_FACTS.params(
        phones=list(phones), lo=now - _DAY_REACH, hi=now + _DAY_REACH
    )


def number_facts(
    session: Session,
    phones: Iterable[str],
    now: dt.datetime,
    purpose: str,
    dnc: DncMatcher | None = None,
) -> dict[str, NumberFacts]:
    """DNC, attempts near ``now`` (every campaign) and live attempts, for ``phones``."""
    nums = sorted(set(phones))
    if dnc is None:
        dnc = DncMatcher.for_numbers(session, nums)
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    live: set[str] = set()
    lo, hi = now - _DAY_REACH, now + _DAY_REACH
    for part in _chunks(nums):
        params = {"phones": list(part), "lo": lo, "hi": hi}
        for phone, created, outcome in session.execute(prepared.NUMBER_FACTS, params):
            if outcome is None:
                live.add(phone)
            if lo <= created <= hi:
                times[phone].append(created)
    return {
        p: NumberFacts(
            dnc=dnc.blocks(p, purpose), attempt_times=tuple(times.get(p, ())), in_flight=p in live
        )
        for p in nums
    }


def with_touches(
    facts: NumberFacts, touches: Mapping[int, tuple[dt.datetime, ...]], contact_id: int
) -> NumberFacts:
    """The number's facts plus the contact's own touches (its one per-day cap)."""
    times = touches.get(contact_id, ())
    if times == facts.contact_times:
        return facts
    return dataclasses.replace(facts, contact_times=times)


# --- which zones are open -----------------------------------------------------------------

_shape_cache: dict[tuple[str, int], tuple[float, int, frozenset[tuple[str | None, str, int]]]] = {}


def _campaign_shape(session: Session, campaign_id: int) -> frozenset[tuple[str | None, str, int]]:
    """Distinct (region, zone, priority) of the campaign's active contacts, cached until a
    contact is added anywhere (max id changes) or ten minutes pass, an empty one only while
    the campaign has no active contact. A stale set only holds extra entries, which cost a
    query but never a wrong lease (every rule is re-checked)."""
    key = (str(session.get_bind().engine.url), campaign_id)
    max_id = session.execute(prepared.MAX_CONTACT_ID).scalar() or 0
    hit = _shape_cache.get(key)
    mono = time.monotonic()
    if hit is not None and hit[1] == max_id and mono - hit[0] < _SHAPE_CACHE_TTL_S:
        if hit[2] or not _any_active(session, campaign_id):
            return hit[2]
    shape = frozenset(
        (r, tz, p or 0)
        for r, tz, p in session.execute(prepared.CAMPAIGN_SHAPE, {"campaign_id": campaign_id})
    )
    _shape_cache[key] = (mono, max_id, shape)
    return shape


def _any_active(session: Session, campaign_id: int) -> bool:
    """A campaign whose cached shape is empty ("done") is looked at again in the store at every
    lease (one index probe): a disposition, a callback or a retry that re-opens one of its
    contacts is dialled at once, whichever worker wrote it."""
    found = session.scalar(
        select(Contact.id)
        .where(Contact.campaign_id == campaign_id, Contact.status == ContactStatus.ACTIVE)
        .limit(1)
    )
    return found is not None


def _callback_shape(session: Session, campaign_id: int) -> frozenset[tuple[str | None, str, int]]:
    """The (region, zone) of contacts a booking raised to ``CALLBACK_PRIORITY``, read at every
    lease (the cached shape may not show a booking, or a contact it re-opened, for minutes):
    an index range over the pending callbacks only."""
    params = {"campaign_id": campaign_id, "priority": CALLBACK_PRIORITY}
    return frozenset(
        (r, tz, CALLBACK_PRIORITY) for r, tz in session.execute(prepared.PRIORITY_SHAPE, params)
    )


def open_pairs(
    pairs: Iterable[tuple[str | None, str]],
    policy: Policy,
    now: dt.datetime,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> list[tuple[str | None, str]]:
    """The (region, zone) pairs inside the calling window and not on a holiday at ``now``."""
    out = []
    for region, tz in pairs:
        if not is_valid_zone(tz):
            continue
        local = local_time(now, tz)
        if policy.window.skip_holidays and calendar.is_holiday(region, local.date()):
            continue
        if in_window(policy.window, local):
            out.append((region, tz))
    return out


# --- lease --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseQuery:
    """The prepared lease statement of a campaign at an instant, its parameters (but the
    level's ``priority``, ``size`` and ``skip``), and the priority levels to walk."""

    statement: Any
    params: dict[str, Any]
    priorities: tuple[int, ...] = ()


def lease_query(
    campaign_id: int,
    policy: Policy,
    now: dt.datetime,
    pairs: Sequence[tuple[str | None, str]],
    *,
    lock: bool,
    priorities: Sequence[int] = (),
) -> LeaseQuery:
    """The rules a lease query can apply in SQL (the rest are re-checked row by row), for
    the (region, zone) ``pairs`` open now."""
    with_region = [(r, tz) for r, tz in pairs if r is not None]
    without_region = [tz for r, tz in pairs if r is None]
    statement = prepared.lease_statement(
        with_region=bool(with_region),
        without_region=bool(without_region),
        lockout=policy.lockout is not None,
        lock=lock,
    )
    params: dict[str, Any] = {
        "campaign_id": campaign_id,
        "max_attempts": policy.max_attempts,
        "now": now,
        "valid_from": now.date() - dt.timedelta(1),  # a local date is at most a day behind
        "scopes": [s.value for s in DncScope if scope_applies(s.value, policy.purpose)],
        "voice": list(channels_barring(DncChannel.VOICE)),
    }
    if with_region:
        params["pairs"] = with_region
    if without_region:
        params["zones"] = without_region
    if policy.lockout is not None:
        params["lockout_before"] = now - policy.lockout
    return LeaseQuery(statement, params, tuple(priorities))


def _open_query(
    session: Session, campaign_id: int, policy: Policy, now: dt.datetime, calendar: HolidayCalendar
) -> LeaseQuery | None:
    shape = _campaign_shape(session, campaign_id) | _callback_shape(session, campaign_id)
    pairs = open_pairs({(r, tz) for r, tz, _ in shape}, policy, now, calendar)
    if not pairs:
        return None
    open_set = set(pairs)
    priorities = sorted({p for r, tz, p in shape if (r, tz) in open_set}, reverse=True)
    lock = session.get_bind().dialect.name != "sqlite"
    return lease_query(campaign_id, policy, now, pairs, lock=lock, priorities=priorities)


def choose(
    session: Session,
    campaign_row: Campaign,
    policy: Policy,
    now: dt.datetime,
    n: int,
    *,
    batch: int | None = None,
    max_batches: int = 8,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> list[Any]:
    """Up to ``n`` contact rows (``prepared.LEASE_COLUMNS``) that break no rule at ``now``, in
    the lease order: highest priority first, then never-tried contacts, then the oldest
    ``next_attempt_at`` (ties by id). At most ``max_batches`` batches of ``batch`` rows are
    examined. Each one chosen counts as a live call of its number and a touch of its contact
    for the rest of the walk (a number twice: taken once; the caps see every one). Nothing is
    written (on PostgreSQL the rows walked stay locked until the transaction ends)."""
    q = _open_query(session, campaign_row.id, policy, now, calendar)
    if q is None:
        return []
    size = batch or max(2 * n, 50)
    chosen: list[Any] = []
    facts: dict[str, NumberFacts] = {}
    touches: dict[int, tuple[dt.datetime, ...]] = {}
    read: set[int] = set()  # contacts whose touches were read
    batches = 0
    for prio in q.priorities:
        walked = 0  # rows of this level seen (the chosen ones still match: nothing written)
        while batches < max_batches and len(chosen) < n:
            level = {**q.params, "priority": prio, "size": size, "skip": walked}
            rows = session.execute(q.statement, level).all()
            if not rows:
                break
            batches += 1  # only batches with candidates count against the budget
            walked += len(rows)
            for i, c in enumerate(rows):
                if len(chosen) >= n:
                    break
                if c.phone not in facts:  # the numbers' facts a few rows at a time, as needed
                    ahead = rows[i : i + max(2 * (n - len(chosen)), FACTS_AHEAD)]
                    phones = {r.phone for r in ahead} - facts.keys()
                    facts |= number_facts(session, phones, now, policy.purpose)
                    ids = {r.id for r in ahead} - read
                    touches |= contact_touches(session, ids, now)
                    read |= ids
                known = with_touches(facts[c.phone], touches, c.id)
                if first_broken_rule(ContactState.of(c), policy, now, known, calendar) is None:
                    chosen.append(c)
                    facts[c.phone] = dataclasses.replace(
                        known, in_flight=True, attempt_times=(*known.attempt_times, now)
                    )
                    touches[c.id] = (*known.contact_times, now)
            if len(rows) < size:
                break
        if len(chosen) >= n or batches >= max_batches:
            break
    return chosen


def _eligible(
    session: Session,
    campaign_row: Campaign,
    now: dt.datetime,
    n: int,
    daily_cap: int | None,
    batch: int | None,
    max_batches: int,
    calendar: HolidayCalendar,
    ceilings: Ceilings | None = None,
) -> list[Any]:
    """What ``lease`` and ``take`` both start from: up to ``n`` contacts a running campaign's
    rules allow at ``now`` (UTC), in its order."""
    if n <= 0:
        return []
    policy = policy_of(campaign_row, daily_cap=daily_cap, ceilings=ceilings)
    if not policy.running:
        return []
    return choose(
        session,
        campaign_row,
        policy,
        now,
        n,
        batch=batch,
        max_batches=max_batches,
        calendar=calendar,
    )


def lease(
    session: Session,
    campaign_row: Campaign,
    now: dt.datetime,
    n: int,
    owner: str,
    lease_for: dt.timedelta = DEFAULT_LEASE,
    *,
    daily_cap: int | None = None,
    batch: int | None = None,
    max_batches: int = 8,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> list[Contact]:
    """Lease up to ``n`` contacts of the campaign that are eligible at ``now`` (``choose``),
    in its order. Leased rows get ``lease_owner=owner`` and ``lease_until=now+lease_for``.
    The caller's transaction commits the lease. (The dialler takes and starts its contacts
    in one step: ``take``.)"""
    now = _utc(now)
    chosen = _eligible(session, campaign_row, now, n, daily_cap, batch, max_batches, calendar)
    if not chosen:
        return []
    ids = [c.id for c in chosen]
    session.execute(
        update(Contact)
        .where(Contact.id.in_(ids))
        .values(lease_owner=owner, lease_until=now + lease_for)
        .execution_options(synchronize_session=False)
    )
    got = session.scalars(
        select(Contact).where(Contact.id.in_(ids)).execution_options(populate_existing=True)
    )
    by_id = {c.id: c for c in got}
    return [by_id[i] for i in ids]


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """A call ``take`` started: its attempt row (written, not dialled yet) and what its
    Originate needs; ``detail``: the row's."""

    attempt_id: int
    contact_id: int
    phone: str
    language: str | None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    timezone: str | None = None  # the contact's, for the window's check at send time
    region: str | None = None


def take(
    session: Session,
    campaign_row: Campaign,
    now: dt.datetime,
    n: int,
    owner: str,
    *,
    daily_cap: int | None = None,
    batch: int | None = None,
    max_batches: int = 8,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
    ceilings: Ceilings | None = None,
) -> list[Started]:
    """``lease`` and ``start_attempts`` in one step, for the dialler: the contacts the rules
    allow at ``now`` (``choose``) get their attempt rows and spend one attempt each, in the
    caller's transaction. No lease is written: the rows are never given back, and once the
    transaction commits each number's open attempt keeps every dialler off it (until then,
    the row locks on PostgreSQL, SQLite's one writer). Core statements throughout; ORM objects
    only for a callback's booking. ``owner``: the worker that will send the rows;
    ``ceilings``: the settings' compliance ceilings the campaign's rules stay within."""
    now = _utc(now)
    chosen = _eligible(
        session, campaign_row, now, n, daily_cap, batch, max_batches, calendar, ceilings
    )
    if not chosen:
        return []
    spent = session.execute(
        prepared.SPEND_ATTEMPT,
        [
            {"b_id": c.id, "b_seen": c.attempts, "b_attempts": (c.attempts or 0) + 1, "b_now": now}
            for c in chosen
        ],
    )
    rowcount = spent.rowcount  # type: ignore[attr-defined]
    if session.get_bind().dialect.supports_sane_multi_rowcount and rowcount != len(chosen):
        raise StoreError("a contact's budget changed while it was being dialled; not dialled")
    queue = campaign_row.spec.get("queue")
    ids = session.scalars(
        prepared.INSERT_ATTEMPTS,
        [
            {
                "campaign_id": campaign_row.id,
                "contact_id": c.id,
                "phone": c.phone,
                "seq": (c.attempts or 0) + 1,
                "state": AttemptState.CREATED.value,
                "created_at": now,
                "queue": queue,
                "detail": {},
                "owner": owner,
            }
            for c in chosen
        ],
    ).all()
    for c, attempt_id in zip(chosen, ids, strict=True):
        if c.priority == CALLBACK_PRIORITY:  # a booked callback: served
            contact = session.get(Contact, c.id)
            if contact is not None:
                callback_dialled(session, contact, attempt_id)
    session.flush()
    return [
        Started(a, c.id, c.phone, c.language, timezone=c.timezone, region=c.region)
        for c, a in zip(chosen, ids, strict=True)
    ]


def release(session: Session, contacts: Iterable[Contact]) -> None:
    """Give leased contacts back without dialling them."""
    for c in contacts:
        c.lease_owner = None
        c.lease_until = None
    session.flush()


# --- attempts -----------------------------------------------------------------------------


def check_contact(
    session: Session,
    contact: Contact,
    campaign_row: Campaign,
    now: dt.datetime,
    *,
    daily_cap: int | None = None,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> Reason | None:
    """The first rule ``contact`` breaks at ``now`` (None: it may be dialled)."""
    now = _utc(now)
    policy = policy_of(campaign_row, daily_cap=daily_cap)
    facts = number_facts(session, [contact.phone], now, policy.purpose)[contact.phone]
    facts = with_touches(facts, contact_touches(session, [contact.id], now), contact.id)
    return first_broken_rule(ContactState.of(contact), policy, now, facts, calendar)


def start_attempt(
    session: Session,
    contact: Contact,
    campaign_row: Campaign,
    now: dt.datetime,
    *,
    daily_cap: int | None = None,
) -> Attempt:
    """Write the attempt row (before any Originate) and spend one attempt of the budget.

    Re-checks every rule first and raises ``ComplianceError`` if one is broken. The
    contact's attempt count goes up now, so a crash can never allow an extra dial; the
    lease is cleared (the open attempt now blocks the number).
    """
    (started,) = start_attempts(session, [contact], campaign_row, now, daily_cap=daily_cap)
    if isinstance(started, ComplianceError):
        raise started
    return started


def start_attempts(
    session: Session,
    contacts: Sequence[Contact],
    campaign_row: Campaign,
    now: dt.datetime,
    *,
    daily_cap: int | None = None,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
    owner: str | None = None,
) -> list[Attempt | ComplianceError]:
    """``start_attempt`` for a batch, in one flush: the number facts of the whole batch are
    read in one query set, and each attempt started here counts as a live call of its number
    for the rest of the batch (two contacts with one number: only the first is dialled, and
    the daily cap sees every attempt of the batch). One entry per contact, in order: its new
    attempt, or the ``ComplianceError`` it broke (the contact is left as it was). ``owner``:
    the worker that will send the rows (a row a dead worker never sent is ended at once)."""
    now = _utc(now)
    policy = policy_of(campaign_row, daily_cap=daily_cap)
    facts = number_facts(session, [c.phone for c in contacts], now, policy.purpose)
    touches = dict(contact_touches(session, [c.id for c in contacts], now))
    queue = campaign_row.spec.get("queue")
    out: list[Attempt | ComplianceError] = []
    for contact in contacts:
        known = with_touches(facts[contact.phone], touches, contact.id)
        reason = first_broken_rule(ContactState.of(contact), policy, now, known, calendar)
        if reason is not None:
            out.append(
                ComplianceError(f"contact {contact.id} may not be dialled now: {reason.value}")
            )
            continue
        attempt = Attempt(
            campaign_id=campaign_row.id,
            contact_id=contact.id,
            phone=contact.phone,
            seq=(contact.attempts or 0) + 1,
            state=AttemptState.CREATED.value,
            created_at=now,
            queue=queue,
            detail={},
            owner=owner,
        )
        contact.attempts = (contact.attempts or 0) + 1
        contact.last_attempt_at = now
        contact.lease_owner = None
        contact.lease_until = None
        facts[contact.phone] = dataclasses.replace(
            known, in_flight=True, attempt_times=(*known.attempt_times, now)
        )
        touches[contact.id] = (*known.contact_times, now)
        session.add(attempt)
        out.append(attempt)
    session.flush()
    for contact, started in zip(contacts, out, strict=True):
        if contact.priority == CALLBACK_PRIORITY and isinstance(started, Attempt):
            callback_dialled(session, contact, started.id)  # a booked callback: served
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What a finished attempt's row records beside its outcome: one value per attempt column.
    A field left ``None`` leaves its column as it is."""

    result: str | None = None
    live_answer: bool | None = None
    originated_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    greeting_end_at: dt.datetime | None = None
    queued_at: dt.datetime | None = None
    bridged_at: dt.datetime | None = None
    message_played_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    originate_reason: int | None = None
    hangup_cause: int | None = None
    amd_status: str | None = None
    queue: str | None = None
    agent: str | None = None
    channel_id: str | None = None
    detail: Mapping[str, Any] | None = None


_NO_FACTS = AttemptFacts()


def contact_after(decision: RetryDecision, outcome: Outcome) -> dict[str, Any]:
    """The contact's columns after an attempt's outcome and its retry rule's ``decision``."""
    after: dict[str, Any] = {"last_outcome": outcome.value}
    if decision.abandoned_at is not None:
        after["abandoned_at"] = decision.abandoned_at
    if decision.done:
        after["status"] = ContactStatus.DONE.value
        after["next_attempt_at"] = None
    else:
        after["next_attempt_at"] = decision.next_attempt_at
    return after


def finish_attempt(
    session: Session,
    attempt: Attempt,
    outcome: Outcome | str,
    now: dt.datetime,
    facts: AttemptFacts = _NO_FACTS,
    *,
    flush: bool = True,
) -> RetryDecision:
    """Give the attempt its one outcome and its facts, and apply the campaign's retry rule to
    its contact. A second call for the same attempt raises ``IllegalTransition``.
    ``flush=False`` leaves the writes to the session's next flush (a batch of finishes is
    then written in a few statements instead of two per attempt)."""
    now = _utc(now)
    if attempt.outcome is not None:
        raise IllegalTransition("attempt", attempt.outcome, str(outcome))
    outcome = Outcome(outcome)
    for field in dataclasses.fields(facts):
        value = getattr(facts, field.name)
        if value is not None:
            setattr(attempt, field.name, dict(value) if field.name == "detail" else value)
    attempt.outcome = outcome.value
    attempt.state = AttemptState.ENDED.value
    if attempt.ended_at is None:
        attempt.ended_at = now
    campaign = session.get(Campaign, attempt.campaign_id)
    contact = session.get(Contact, attempt.contact_id) if attempt.contact_id else None
    if campaign is None:
        if flush:
            session.flush()
        return RetryDecision(True, None, None, None)
    policy = Policy.of(spec_of(campaign), daily_cap=0)  # the cap plays no part in retries
    used = max(attempt.seq, contact.attempts if contact else 0)
    decision = retry_decision(policy, outcome, used, now)
    attempt.next_attempt_at = decision.next_attempt_at
    if contact is not None:
        for key, value in contact_after(decision, outcome).items():
            setattr(contact, key, value)
        keep_pending(session, contact)  # a callback booked during the call wins
    disposition = (attempt.detail or {}).get("disposition")
    if isinstance(disposition, dict):  # an agent saved one during the call: their word wins
        attempt.result = disposition.get("code") or attempt.result
        reapply(session, attempt, contact, now)
    if flush:
        session.flush()
    return decision


# --- explain ------------------------------------------------------------------------------

_EXPLAIN_CHUNK = 5000
_NO = NumberFacts()
_STATE_COLS = (
    Contact.id,
    Contact.phone,
    Contact.timezone,
    Contact.region,
    Contact.status,
    Contact.attempts,
    Contact.next_attempt_at,
    Contact.abandoned_at,
    Contact.valid_until,
)


def _state(row: Any) -> ContactState:
    _id, phone, tz, region, status, attempts, nxt, abandoned, valid_until = row
    return ContactState(
        phone=phone,
        timezone=tz,
        region=region,
        status=status,
        attempts=attempts or 0,
        next_attempt_at=nxt,
        abandoned_at=abandoned,
        valid_until=valid_until,
    )


def _paused(session: Session, campaign_row: Campaign) -> ReasonCounts:
    counts = ReasonCounts()
    total = session.scalar(
        select(func.count()).select_from(Contact).where(Contact.campaign_id == campaign_row.id)
    )
    counts.reasons[Reason.CAMPAIGN_PAUSED] = int(total or 0)
    return counts


def _next_prefix(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _judge_classes(
    session: Session,
    cid: int,
    policy: Policy,
    at: dt.datetime,
    calendar: HolidayCalendar,
    counts: ReasonCounts,
) -> None:
    """Classes of contacts with the same rule inputs, judged without number facts."""
    later = case((Contact.next_attempt_at > at, 1), else_=0)
    lockout = policy.lockout
    locked: Any = (
        case((Contact.abandoned_at > at - lockout, 1), else_=0)
        if lockout is not None
        else literal(0)
    )
    keys = (
        Contact.timezone,
        Contact.region,
        Contact.status,
        Contact.attempts,
        Contact.valid_until,
        later,
        locked,
    )
    q = (
        select(
            *keys,
            func.min(Contact.next_attempt_at),
            func.min(Contact.abandoned_at),
            func.count(),
        )
        .where(Contact.campaign_id == cid)
        # by position: PostgreSQL would see two CASE expressions with different parameters
        .group_by(*(literal_column(str(i + 1)) for i in range(len(keys))))
    )
    for tz, region, status, attempts, valid_until, _l, _k, nxt, abandoned, n in session.execute(q):
        # every member compares with ``at`` like these representatives do
        rep = ContactState(
            phone="",
            timezone=tz,
            region=region,
            status=status,
            attempts=attempts or 0,
            next_attempt_at=nxt,
            abandoned_at=abandoned,
            valid_until=valid_until,
        )
        counts.add(first_broken_rule(rep, policy, at, _NO, calendar), n, tz)


def _rejudge_numbers_with_facts(
    session: Session,
    cid: int,
    policy: Policy,
    at: dt.datetime,
    calendar: HolidayCalendar,
    counts: ReasonCounts,
) -> None:
    """The numbers with facts (DNC, attempts near ``at``, a live call): re-judge each one,
    moving it from its class's verdict."""
    lo, hi = at - _DAY_REACH, at + _DAY_REACH
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    live: set[str] = set()
    aq = select(Attempt.phone, Attempt.created_at, Attempt.outcome).where(
        or_(Attempt.outcome.is_(None), Attempt.created_at.between(lo, hi))
    )
    for phone, created, outcome in session.execute(aq):
        if outcome is None:
            live.add(phone)
        if lo <= created <= hi:
            times[phone].append(created)
    prefixes = DncMatcher.for_numbers(session, ()).prefixes  # the (few) prefix entries
    special: dict[int, Any] = {}
    phones = sorted(set(times) | live)
    for part in _chunks(phones):
        for row in session.execute(
            select(*_STATE_COLS).where(Contact.campaign_id == cid, Contact.phone.in_(part))
        ):
            special[row[0]] = row
    for row in session.execute(
        select(*_STATE_COLS)
        .join(DncEntry, and_(DncEntry.number == Contact.phone, DncEntry.is_prefix.is_(False)))
        .where(Contact.campaign_id == cid)
    ):
        special[row[0]] = row
    for prefix in prefixes:
        for row in session.execute(
            select(*_STATE_COLS).where(
                Contact.campaign_id == cid,
                Contact.phone >= prefix,
                Contact.phone < _next_prefix(prefix),
            )
        ):
            special[row[0]] = row
    touches = campaign_touches(session, cid, at)  # its contacts' calls and counted messages
    missing = sorted(set(touches) - set(special))
    for part in _chunks(missing):
        for row in session.execute(select(*_STATE_COLS).where(Contact.id.in_(part))):
            special[row[0]] = row
    dnc = DncMatcher.for_numbers(session, [row[1] for row in special.values()])
    for row in special.values():
        state = _state(row)
        phone = state.phone
        facts = NumberFacts(
            dnc=dnc.blocks(phone, policy.purpose),
            attempt_times=tuple(times.get(phone, ())),
            in_flight=phone in live,
            contact_times=touches.get(row[0], ()),
        )
        before = first_broken_rule(state, policy, at, _NO, calendar)
        after = first_broken_rule(state, policy, at, facts, calendar)
        if before != after:
            counts.add(before, -1, state.timezone)
            counts.add(after, 1, state.timezone)


def explain(
    session: Session,
    campaign_row: Campaign,
    at: dt.datetime,
    *,
    daily_cap: int | None = None,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> ReasonCounts:
    """How many contacts are eligible at ``at``; the rest counted under their first rule.

    Cheap on big campaigns: contacts whose number has no facts (no DNC entry, no attempt
    near ``at``, no live attempt) are judged per GROUP of identical rule inputs (SQL
    ``GROUP BY``); only the few numbers with facts are judged one by one. Every verdict comes
    from ``first_broken_rule``; ``explain_rowwise`` is the one-contact-at-a-time reference.
    """
    at = _utc(at)
    policy = policy_of(campaign_row, daily_cap=daily_cap)
    if not policy.running:
        return _paused(session, campaign_row)
    counts = ReasonCounts()
    cid = campaign_row.id

    _judge_classes(session, cid, policy, at, calendar, counts)
    _rejudge_numbers_with_facts(session, cid, policy, at, calendar, counts)
    return counts


def explain_rowwise(
    session: Session,
    campaign_row: Campaign,
    at: dt.datetime,
    *,
    daily_cap: int | None = None,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> ReasonCounts:
    """``explain`` one contact at a time (the reference the grouped version is tested on)."""
    at = _utc(at)
    policy = policy_of(campaign_row, daily_cap=daily_cap)
    if not policy.running:
        return _paused(session, campaign_row)
    counts = ReasonCounts()
    dnc = DncMatcher.load(session)
    result = session.execute(
        select(*_STATE_COLS)
        .where(Contact.campaign_id == campaign_row.id)
        .execution_options(yield_per=_EXPLAIN_CHUNK)
    )
    for part in result.partitions():
        facts = number_facts(session, [r[1] for r in part], at, policy.purpose, dnc)
        touches = contact_touches(session, [r[0] for r in part], at)
        for row in part:
            known = with_touches(facts[row[1]], touches, row[0])
            reason = first_broken_rule(_state(row), policy, at, known, calendar)
            counts.add(reason, 1, row[2])
    return counts


def main_zone(session: Session, campaign_row: Campaign, default: str = "Asia/Shanghai") -> str:
    """The campaign's zone: where most of its contacts are (``default`` when it has none).
    An instant an operator writes without an offset is read in it."""
    row = session.execute(
        select(Contact.timezone, func.count())
        .where(Contact.campaign_id == campaign_row.id, Contact.timezone.is_not(None))
        .group_by(Contact.timezone)
        .order_by(func.count().desc(), Contact.timezone)
        .limit(1)
    ).first()
    return str(row[0]) if row is not None and row[0] else default


#: The console's cheap numbers are the same as ``explain``.
counts = explain


__all__ = [
    "DEFAULT_LEASE",
    "AttemptFacts",
    "check_contact",
    "contact_after",
    "counts",
    "explain",
    "explain_rowwise",
    "main_zone",
    "finish_attempt",
    "facts_statement",
    "LeaseQuery",
    "Started",
    "choose",
    "lease",
    "lease_query",
    "number_facts",
    "open_pairs",
    "policy_of",
    "release",
    "start_attempt",
    "start_attempts",
    "take",
    "with_touches",
]


def breaker_hold(session: Session, campaign_id: int) -> tuple[dt.datetime, str] | None:
    """(since, reason) while the campaign's abandon breaker holds its dialling, else None.

    The floor writes an audit row when the breaker opens and when it closes, so any process
    (``hopper explain``, a restarted dialer) reads the same answer from the store.
    """
    last = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.campaign_id == campaign_id,
            AuditEntry.action.in_((AuditAction.BREAKER_OPEN, AuditAction.BREAKER_CLOSED)),
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).first()
    if last is None or last.action != AuditAction.BREAKER_OPEN:
        return None
    return last.at, str((last.detail or {}).get("reason") or "answered calls abandoned")
