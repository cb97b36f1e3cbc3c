"""The dialling path's statements, built once and executed with parameters.

Why: building a SQLAlchemy expression costs far more CPU than running it (operator overloads,
coercions, an aliased entity adapted column by column, then the statement's cache key walked
again before each execution). The lease, the number facts, the do-not-call lookups and the
touches run once or more per dialled call, so each is built here ONCE as a Core statement on
the tables (no ORM entity: no ORM compile step, no objects to load) with ``bindparam``s; the
engine's compiled cache then serves every execution, and the statement's cache key is
memoized on the object. Lists are expanding parameters (``IN`` of any length).

Only the statement's SHAPE is a key (which clauses it has); every value is a parameter. The
SQL is the same text the expression-per-call version produced, so the query plans do not
change (``dialer.telephony.plans`` checks these very objects).
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)

from dialer.lists.compliance import ContactStatus
from dialer.store.messages import Message
from dialer.store.models import Attempt, Contact, DncEntry, UTCDateTime

C = cast(Table, Contact.__table__)
A = cast(Table, Attempt.__table__)
D = cast(Table, DncEntry.__table__)
M = cast(Table, Message.__table__)


def _at(name: str) -> Any:
    """An aware-UTC instant parameter (the columns' own type: naive UTC on disk)."""
    return bindparam(name, type_=UTCDateTime())


def _many(name: str) -> Any:
    return bindparam(name, expanding=True)


#: What the lease reads of a contact: the rules' inputs, and what starting a call needs.
LEASE_COLUMNS = (
    C.c.id,
    C.c.phone,
    C.c.timezone,
    C.c.region,
    C.c.status,
    C.c.attempts,
    C.c.next_attempt_at,
    C.c.abandoned_at,
    C.c.valid_until,
    C.c.priority,
    C.c.language,
)


@functools.cache
def lease_statement(
    *, with_region: bool, without_region: bool, lockout: bool, lock: bool
) -> Select[Any]:
    """One priority level of the lease, walking ``ix_contact_lease`` (campaign, status,
    priority, next_attempt_at NULLS FIRST, id) in order, so no query sorts the campaign.

    Parameters: ``campaign_id``, ``max_attempts``, ``now``, ``valid_from`` (a local date is
    at most one day behind the UTC date), ``lockout_before`` (with ``lockout``), ``pairs``
    ((region, zone) open now, with ``with_region``), ``zones`` (open zones of contacts with no
    region, with ``without_region``), ``scopes`` (the DNC scopes that apply), ``voice`` (the
    DNC channels that bar a call), ``priority``, ``size``, ``skip``."""
    now = _at("now")
    conds: list[Any] = [
        C.c.campaign_id == bindparam("campaign_id"),
        C.c.status == ContactStatus.ACTIVE.value,
        C.c.attempts < bindparam("max_attempts"),
        or_(C.c.next_attempt_at.is_(None), C.c.next_attempt_at <= now),
        or_(C.c.lease_until.is_(None), C.c.lease_until <= now),
        or_(C.c.valid_until.is_(None), C.c.valid_until >= bindparam("valid_from")),
    ]
    if lockout:
        conds.append(or_(C.c.abandoned_at.is_(None), C.c.abandoned_at <= _at("lockout_before")))
    zone_conds: list[Any] = []
    if with_region:
        zone_conds.append(tuple_(C.c.region, C.c.timezone).in_(_many("pairs")))
    if without_region:
        zone_conds.append(and_(C.c.region.is_(None), C.c.timezone.in_(_many("zones"))))
    conds.append(or_(*zone_conds))
    # Numbers on a live call or on the exact-number DNC list would be rejected in Python on
    # every call; with hundreds of live calls at the head of the order they would starve the
    # batches. Both are index probes (attempt.phone, dnc.number) on the rows walked.
    live = A.alias("live")
    conds.append(~exists().where(live.c.phone == C.c.phone, live.c.outcome.is_(None)))
    conds.append(
        ~exists().where(
            D.c.number == C.c.phone,
            D.c.is_prefix.is_(False),
            D.c.scope.in_(_many("scopes")),
            D.c.channel.in_(_many("voice")),
        )
    )
    q = (
        select(*LEASE_COLUMNS)
        .where(*conds, C.c.priority == bindparam("priority"))
        .order_by(C.c.next_attempt_at.asc().nulls_first(), C.c.id)
        .limit(bindparam("size"))
        .offset(bindparam("skip"))
    )
    return q.with_for_update(skip_locked=True) if lock else q


#: The attempts that make numbers' facts (``phones``): live ones, and those in [``lo``, ``hi``].
NUMBER_FACTS = select(A.c.phone, A.c.created_at, A.c.outcome).where(
    A.c.phone.in_(_many("phones")),
    or_(A.c.outcome.is_(None), A.c.created_at.between(_at("lo"), _at("hi"))),
)

_DNC_COLS = select(D.c.number, D.c.is_prefix, D.c.scope).where(D.c.channel.in_(_many("channels")))
#: Every prefix entry barring ``channels`` (``ix_dnc_prefix``; ``= true`` rather than
#: ``IS true``: PostgreSQL serves only the former from an index).
DNC_PREFIXES = _DNC_COLS.where(D.c.is_prefix == true())
#: The exact entries of ``numbers`` barring ``channels`` (``dnc.number``).
DNC_EXACT = _DNC_COLS.where(D.c.is_prefix == false(), D.c.number.in_(_many("numbers")))

#: Calls of contacts ``ids`` started in [``lo``, ``hi``].
CONTACT_CALLS = select(A.c.contact_id, A.c.created_at).where(
    A.c.contact_id.in_(_many("ids")), A.c.created_at.between(_at("lo"), _at("hi"))
)
#: Counted messages of contacts ``ids`` that may fall after ``lo``.
CONTACT_MESSAGES = select(M.c.contact_id, M.c.created_at, M.c.submitted_at, M.c.ended_at).where(
    M.c.contact_id.in_(_many("ids")),
    M.c.budget.is_(True),
    or_(M.c.created_at >= _at("lo"), M.c.submitted_at >= _at("lo"), M.c.ended_at.is_(None)),
)

#: The highest contact id (the campaign shape's cache key).
MAX_CONTACT_ID = select(func.max(C.c.id))
#: Distinct (region, zone, priority) of a campaign's (``campaign_id``) active contacts.
CAMPAIGN_SHAPE = (
    select(C.c.region, C.c.timezone, C.c.priority)
    .where(C.c.campaign_id == bindparam("campaign_id"), C.c.status == ContactStatus.ACTIVE.value)
    .distinct()
)
#: Distinct (region, zone) of a campaign's active contacts at ``priority`` (callbacks).
PRIORITY_SHAPE = (
    select(C.c.region, C.c.timezone)
    .where(
        C.c.campaign_id == bindparam("campaign_id"),
        C.c.status == ContactStatus.ACTIVE.value,
        C.c.priority == bindparam("priority"),
    )
    .distinct()
)

#: Spend one attempt of a chosen contact's budget (``b_id``, ``b_attempts``, ``b_now``), only
#: if no one spent one since it was read (``b_seen``: a message's conditional UPDATE,
#: dialer.messaging.sequencer); its lease, if any, ends.
SPEND_ATTEMPT = (
    update(C)
    .where(C.c.id == bindparam("b_id"), C.c.attempts == bindparam("b_seen"))
    .values(
        attempts=bindparam("b_attempts"),
        last_attempt_at=_at("b_now"),
        lease_owner=None,
        lease_until=None,
    )
)
#: New attempt rows, their ids returned in the order of the rows given.
INSERT_ATTEMPTS = insert(A).returning(A.c.id, sort_by_parameter_order=True)

__all__ = [
    "INSERT_ATTEMPTS",
    "SPEND_ATTEMPT",
    "CAMPAIGN_SHAPE",
    "CONTACT_CALLS",
    "CONTACT_MESSAGES",
    "DNC_EXACT",
    "DNC_PREFIXES",
    "LEASE_COLUMNS",
    "MAX_CONTACT_ID",
    "NUMBER_FACTS",
    "PRIORITY_SHAPE",
    "lease_statement",
]
