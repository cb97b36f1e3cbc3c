"""A batch of tracker updates written with Core statements: states, and finished attempts with
their one outcome, their facts and their contact's retry rule.

Why not the ORM here: every call ends through this batch, and loading three ORM objects per
attempt (attempt, contact, campaign), setting their attributes one event at a time and letting
the unit of work diff them cost more CPU than the call's own Originate. The columns are read
in one query per table, the values computed by the same functions as ``hopper.finish_attempt``
(``hopper.contact_after``), and written in one executemany per table.

A finish that needs more than columns goes through ``hopper.finish_attempt`` (ORM) after the
rest: a contact raised to ``CALLBACK_PRIORITY`` (a callback booked during the call keeps it),
a disposition an agent saved during the call (it decides again), an attempt whose campaign is
gone, and two finishes of one contact in the same batch (in order).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from dialer.lists import hopper
from dialer.lists.callbacks import CALLBACK_PRIORITY
from dialer.lists.campaigns import spec_of
from dialer.lists.compliance import Policy, RetryDecision, retry_decision
from dialer.outcomes import AttemptState, Outcome
from dialer.store.models import Attempt, Campaign, Contact

A = cast(Table, Attempt.__table__)
C = cast(Table, Contact.__table__)
K = cast(Table, Campaign.__table__)

#: The attempt columns a finish may write (``hopper.AttemptFacts``): a fact left None keeps
#: the column's value, so each is read first and every row is written with all of them.
FACT_COLUMNS = tuple(f for f in hopper.AttemptFacts.__dataclass_fields__ if f != "channel_id")
ATTEMPTS = select(
    A.c.id,
    A.c.campaign_id,
    A.c.contact_id,
    A.c.seq,
    A.c.outcome,
    A.c.owner,
    *(A.c[name] for name in FACT_COLUMNS),
).where(A.c.id.in_(bindparam("ids", expanding=True)))
CONTACTS = select(C.c.id, C.c.attempts, C.c.priority, C.c.status, C.c.abandoned_at).where(
    C.c.id.in_(bindparam("ids", expanding=True))
)
CAMPAIGNS = select(K.c.id, K.c.spec, K.c.state).where(K.c.id.in_(bindparam("ids", expanding=True)))


def _b(name: str, table: Table) -> Any:
    return bindparam(f"b_{name}", type_=table.c[name].type)


#: Each finished attempt: its facts, outcome, state and retry time, only if it has no outcome.
END_ATTEMPT = (
    update(A)
    .where(A.c.id == bindparam("b_id"), A.c.outcome.is_(None))
    .values(
        {name: _b(name, A) for name in FACT_COLUMNS}
        | {
            "outcome": _b("outcome", A),
            "state": AttemptState.ENDED.value,
            "next_attempt_at": _b("next_attempt_at", A),
        }
    )
)
#: Each contact after its attempt's outcome (``hopper.contact_after``).
RETRY_CONTACT = (
    update(C)
    .where(C.c.id == bindparam("b_id"))
    .values(
        last_outcome=_b("last_outcome", C),
        abandoned_at=_b("abandoned_at", C),
        status=_b("status", C),
        next_attempt_at=_b("next_attempt_at", C),
    )
)
#: An attempt's state while its call lives (never over an outcome written meanwhile).
ATTEMPT_STATE = (
    update(A)
    .where(A.c.id == bindparam("b_id"), A.c.outcome.is_(None))
    .values(state=bindparam("b_state"))
)


class Ending:
    """One finish to write: the attempt's row as read, its outcome and facts, at ``ended``."""

    __slots__ = ("ended", "facts", "outcome", "row")

    def __init__(
        self, row: Any, outcome: Outcome, ended: dt.datetime, facts: hopper.AttemptFacts
    ) -> None:
        self.row = row
        self.outcome = outcome
        self.ended = ended
        self.facts = facts


def read_attempts(s: Session, ids: Sequence[int]) -> dict[int, Any]:
    """The batch's attempt rows (``ATTEMPTS`` columns) by id."""
    if not ids:
        return {}
    return {row.id: row for row in s.execute(ATTEMPTS, {"ids": list(ids)})}


def write_states(s: Session, states: dict[int, AttemptState]) -> None:
    if states:
        s.execute(ATTEMPT_STATE, [{"b_id": a, "b_state": st.value} for a, st in states.items()])


def end_attempts(
    s: Session,
    endings: Sequence[Ending],
    policy_of: Callable[[Any], Policy] | None = None,
) -> dict[int, RetryDecision]:
    """Write every ending; returns each attempt's retry decision (absent: it already had an
    outcome, or its row is gone)."""
    policy_of = policy_of or _policy
    contacts_ids = [e.row.contact_id for e in endings if e.row.contact_id is not None]
    contacts = {r.id: r for r in s.execute(CONTACTS, {"ids": contacts_ids})} if contacts_ids else {}
    campaign_ids = sorted({e.row.campaign_id for e in endings})
    campaigns = {r.id: r for r in s.execute(CAMPAIGNS, {"ids": campaign_ids})}
    repeated = {c for c in contacts_ids if contacts_ids.count(c) > 1}
    attempt_rows: list[dict[str, Any]] = []
    contact_rows: list[dict[str, Any]] = []
    later: list[Ending] = []
    out: dict[int, RetryDecision] = {}
    seen: set[int] = set()
    for e in endings:
        row = e.row
        if row.outcome is not None or row.id in seen:
            continue  # one outcome per attempt
        seen.add(row.id)
        contact = contacts.get(row.contact_id) if row.contact_id is not None else None
        campaign = campaigns.get(row.campaign_id)
        detail = e.facts.detail if e.facts.detail is not None else row.detail
        if (
            campaign is None
            or row.contact_id in repeated
            or (contact is not None and contact.priority == CALLBACK_PRIORITY)
            or isinstance((detail or {}).get("disposition"), dict)
        ):
            later.append(e)
            continue
        used = max(row.seq, contact.attempts if contact is not None else 0)
        decision = retry_decision(policy_of(campaign), e.outcome, used, e.ended)
        out[row.id] = decision
        attempt_rows.append(_attempt_values(e, decision))
        if contact is not None:
            after = {"abandoned_at": contact.abandoned_at, "status": contact.status}
            after |= hopper.contact_after(decision, e.outcome)
            contact_rows.append({"b_id": contact.id} | {f"b_{k}": v for k, v in after.items()})
    if attempt_rows:
        s.execute(END_ATTEMPT, attempt_rows)
    if contact_rows:
        s.execute(RETRY_CONTACT, contact_rows)
    for e in later:  # the ORM's way, with the rows as they are now
        attempt = s.get(Attempt, e.row.id, populate_existing=True)
        if attempt is not None and attempt.outcome is None:
            out[e.row.id] = hopper.finish_attempt(s, attempt, e.outcome, e.ended, e.facts)
    return out


def _attempt_values(e: Ending, decision: RetryDecision) -> dict[str, Any]:
    values: dict[str, Any] = {"b_id": e.row.id}
    for name in FACT_COLUMNS:
        value = getattr(e.facts, name)
        if name == "detail" and value is not None:
            value = dict(value)
        values[f"b_{name}"] = value if value is not None else getattr(e.row, name)
    if values["b_ended_at"] is None:
        values["b_ended_at"] = e.ended
    values["b_outcome"] = e.outcome.value
    values["b_next_attempt_at"] = decision.next_attempt_at
    return values


_POLICIES: dict[int, tuple[Any, Policy]] = {}


def _policy(campaign: Any) -> Policy:
    """The campaign's retry policy (the daily cap plays no part in retries), one per spec."""
    spec = spec_of(campaign)
    hit = _POLICIES.get(campaign.id)
    if hit is None or hit[0] is not spec:
        hit = _POLICIES[campaign.id] = (spec, Policy.of(spec, daily_cap=0))
    return hit[1]


__all__ = ["Ending", "end_attempts", "read_attempts", "write_states"]
