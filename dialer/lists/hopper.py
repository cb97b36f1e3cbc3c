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
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session, aliased, defer

from dialer.audit import AuditAction
from dialer.errors import ComplianceError, IllegalTransition
from dialer.lists.callbacks import CALLBACK_PRIORITY, callback_dialled, keep_pending
from dialer.lists.campaigns import spec_of
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


def policy_of(campaign: Campaign, *, daily_cap: int | None = None) -> Policy:
    return Policy.of(spec_of(campaign), daily_cap=_daily_cap(daily_cap))


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("the hopper needs an aware instant")
    return now.astimezone(dt.UTC)


# --- facts about numbers ------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def facts_statement(phones: Sequence[str], now: dt.datetime) -> Any:
    """The attempts that make a number's facts: live ones, and those near ``now``."""
    lo, hi = now - _DAY_REACH, now + _DAY_REACH
    return select(Attempt.phone, Attempt.created_at, Attempt.outcome).where(
        Attempt.phone.in_(phones),
        or_(Attempt.outcome.is_(None), Attempt.created_at.between(lo, hi)),
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
        for phone, created, outcome in session.execute(facts_statement(part, now)):
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
    max_id = session.scalar(select(func.max(Contact.id))) or 0
    hit = _shape_cache.get(key)
    mono = time.monotonic()
    if hit is not None and hit[1] == max_id and mono - hit[0] < _SHAPE_CACHE_TTL_S:
        if hit[2] or not _any_active(session, campaign_id):
            return hit[2]
    shape = frozenset(
        (r, tz, p or 0)
        for r, tz, p in session.execute(
            select(Contact.region, Contact.timezone, Contact.priority)
            .where(Contact.campaign_id == campaign_id, Contact.status == ContactStatus.ACTIVE)
            .distinct()
        )
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
    return frozenset(
        (r, tz, CALLBACK_PRIORITY)
        for r, tz in session.execute(
            select(Contact.region, Contact.timezone)
            .where(
                Contact.campaign_id == campaign_id,
                Contact.status == ContactStatus.ACTIVE,
                Contact.priority == CALLBACK_PRIORITY,
            )
            .distinct()
        )
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


def lease_conditions(
    campaign_id: int, policy: Policy, now: dt.datetime, pairs: Sequence[tuple[str | None, str]]
) -> list[Any]:
    """The rules a lease query can apply in SQL (the rest are re-checked row by row)."""
    conds: list[Any] = [
        Contact.campaign_id == campaign_id,
        Contact.status == ContactStatus.ACTIVE.value,
        Contact.attempts < policy.max_attempts,
        or_(Contact.next_attempt_at.is_(None), Contact.next_attempt_at <= now),
        or_(Contact.lease_until.is_(None), Contact.lease_until <= now),
        # a local date is at most one day behind the UTC date
        or_(Contact.valid_until.is_(None), Contact.valid_until >= now.date() - dt.timedelta(1)),
    ]
    if policy.lockout is not None:
        conds.append(
            or_(Contact.abandoned_at.is_(None), Contact.abandoned_at <= now - policy.lockout)
        )
    with_region = [(r, tz) for r, tz in pairs if r is not None]
    without_region = [tz for r, tz in pairs if r is None]
    zone_conds: list[Any] = []
    if with_region:
        zone_conds.append(tuple_(Contact.region, Contact.timezone).in_(with_region))
    if without_region:
        zone_conds.append(and_(Contact.region.is_(None), Contact.timezone.in_(without_region)))
    conds.append(or_(*zone_conds))
    # Numbers on a live call or on the exact-number DNC list would be rejected in Python on
    # every call; with hundreds of live calls at the head of the order they would starve the
    # batches. Both are index probes (attempt.phone, dnc.number) on the rows walked.
    live = aliased(Attempt)
    conds.append(~exists().where(live.phone == Contact.phone, live.outcome.is_(None)))
    scopes = [s.value for s in DncScope if scope_applies(s.value, policy.purpose)]
    conds.append(
        ~exists().where(
            DncEntry.number == Contact.phone,
            DncEntry.is_prefix.is_(False),
            DncEntry.scope.in_(scopes),
            DncEntry.channel.in_(channels_barring(DncChannel.VOICE)),
        )
    )
    return conds


def lease_statement(conds: Sequence[Any], priority: int, size: int, *, lock: bool) -> Any:
    """One priority level of the lease, walking ``ix_contact_lease`` (campaign, status,
    priority, next_attempt_at NULLS FIRST, id) in order, so no query sorts the campaign."""
    q = (
        select(Contact)
        .options(defer(Contact.fields), defer(Contact.name))  # business data: not needed here
        .where(*conds, Contact.priority == priority)
        .order_by(Contact.next_attempt_at.asc().nulls_first(), Contact.id)
        .limit(size)
    )
    return q.with_for_update(skip_locked=True) if lock else q


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
    """Lease up to ``n`` contacts of the campaign that are eligible at ``now``.

    Highest priority first, then never-tried contacts, then the oldest ``next_attempt_at``
    (ties by id). At most ``max_batches`` batches of ``batch`` rows are examined per call.
    Every rule is re-checked; leased rows get ``lease_owner=owner`` and
    ``lease_until=now+lease_for``. The caller's transaction commits the lease.
    """
    now = _utc(now)
    if n <= 0:
        return []
    policy = policy_of(campaign_row, daily_cap=daily_cap)
    if not policy.running:
        return []
    shape = _campaign_shape(session, campaign_row.id) | _callback_shape(session, campaign_row.id)
    pairs = open_pairs({(r, tz) for r, tz, _ in shape}, policy, now, calendar)
    if not pairs:
        return []
    open_set = set(pairs)
    priorities = sorted({p for r, tz, p in shape if (r, tz) in open_set}, reverse=True)
    conds = lease_conditions(campaign_row.id, policy, now, pairs)

    size = batch or max(2 * n, 50)
    lock = session.get_bind().dialect.name != "sqlite"
    leased: list[Contact] = []
    until = now + lease_for
    batches = 0
    for prio in priorities:
        q = lease_statement(conds, prio, size, lock=lock)
        skipped = 0
        while batches < max_batches and len(leased) < n:
            rows = list(session.scalars(q.offset(skipped)))
            if not rows:
                break
            batches += 1  # only batches with candidates count against the budget
            facts: dict[str, NumberFacts] = {}
            touches: dict[int, tuple[dt.datetime, ...]] = {}
            for i, c in enumerate(rows):
                if len(leased) >= n:
                    break
                if c.phone not in facts:  # the numbers' facts a few rows at a time, as needed
                    ahead = rows[i : i + max(2 * (n - len(leased)), FACTS_AHEAD)]
                    facts |= number_facts(session, [r.phone for r in ahead], now, policy.purpose)
                    touches |= contact_touches(session, [r.id for r in ahead], now)
                state = ContactState.of(c)
                known = with_touches(facts[c.phone], touches, c.id)
                if first_broken_rule(state, policy, now, known, calendar) is not None:
                    skipped += 1
                    continue
                c.lease_owner = owner
                c.lease_until = until
                leased.append(c)
            session.flush()
            if len(rows) < size:
                break
        if len(leased) >= n or batches >= max_batches:
            break
    return leased


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
        contact.last_outcome = outcome.value
        if decision.abandoned_at is not None:
            contact.abandoned_at = decision.abandoned_at
        if decision.done:
            contact.status = ContactStatus.DONE.value
            contact.next_attempt_at = None
        else:
            contact.next_attempt_at = decision.next_attempt_at
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
    "counts",
    "explain",
    "explain_rowwise",
    "main_zone",
    "finish_attempt",
    "facts_statement",
    "lease",
    "lease_conditions",
    "lease_statement",
    "number_facts",
    "open_pairs",
    "policy_of",
    "release",
    "start_attempt",
    "start_attempts",
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
