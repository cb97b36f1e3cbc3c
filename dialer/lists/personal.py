"""Personal callbacks, agent-first: the store's side.

A personal callback (``callbacks.book_callback`` with an agent) is its agent's from its due
time to its fallback time: the campaign's hopper does not lease the contact before the
fallback (its next attempt is the fallback time), and the floor (``dialer.floor.personal``)
dials it to that agent - the agent's phone first, then the customer - whenever that agent is
ready. The steps here, each one transaction:

1. ``due_personal``: the callbacks due now whose agent can take calls (an enabled user bound
   to a phone);
2. ``claim``: one worker takes the callback (``pending`` -> ``calling``, a conditional
   ``UPDATE``: two workers never ring the agent for it both);
3. ``refusal``: the compliance rules at this instant, before the agent is disturbed;
4. ``start_personal``: once the agent answered, the attempt row of the customer's leg, under
   every rule again (the hopper's own ``start_attempts``: window, DNC, attempt and daily
   caps, a live call on the number): the compliance checks apply at the customer's leg;
5. ``unclaim``: the agent did not answer, or a rule said no: the callback waits again.

A worker that dies between 2 and 4 leaves the callback ``calling``: at the fallback time the
campaign's hopper dials the contact as any callback (``callback_dialled`` closes it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dialer.errors import ComplianceError
from dialer.lists import hopper
from dialer.lists.callbacks import CallbackState
from dialer.store.models import Attempt, Campaign, Contact
from dialer.store.people import AppUser, Callback


@dataclasses.dataclass(frozen=True, slots=True)
class PersonalDue:
    """A personal callback due now, and the phone of the agent it belongs to."""

    callback_id: int
    contact_id: int
    agent: str  # the user's name
    interface: str  # their phone (queue member interface)
    due_at: dt.datetime
    fallback_at: dt.datetime


def due_personal(
    s: Session, campaign_id: int, now: dt.datetime, limit: int = 50
) -> list[PersonalDue]:
    """The campaign's personal callbacks due at ``now`` and not yet fallen back, earliest
    first, whose agent is an enabled user bound to a phone (an index range over the due
    callbacks: ``ix_callback_due``)."""
    rows = s.execute(
        select(
            Callback.id,
            Callback.contact_id,
            Callback.agent,
            AppUser.interface,
            Callback.due_at,
            Callback.fallback_at,
        )
        .join(AppUser, AppUser.username == Callback.agent)
        .where(
            Callback.campaign_id == campaign_id,
            Callback.state == CallbackState.PENDING.value,
            Callback.due_at <= now,
            Callback.fallback_at > now,
            AppUser.disabled.is_(False),
            AppUser.interface.is_not(None),
        )
        .order_by(Callback.due_at, Callback.id)
        .limit(limit)
    )
    return [
        PersonalDue(cid, contact, agent, iface, _aware(due), _aware(fallback))
        for cid, contact, agent, iface, due, fallback in rows
        if agent and iface and fallback is not None
    ]


def claim(s: Session, callback_id: int) -> bool:
    """Take the callback for this worker (``pending`` -> ``calling``); False: another did."""
    done = s.execute(
        update(Callback)
        .where(Callback.id == callback_id, Callback.state == CallbackState.PENDING.value)
        .values(state=CallbackState.CALLING.value)
    )
    return bool(getattr(done, "rowcount", 0))


def unclaim(s: Session, callback_id: int) -> None:
    """Give a claimed callback back (its agent did not answer, a rule said no): it waits for
    the agent again, and for the campaign at its fallback time."""
    s.execute(
        update(Callback)
        .where(Callback.id == callback_id, Callback.state == CallbackState.CALLING.value)
        .values(state=CallbackState.PENDING.value)
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _its_turn(s: Session, callback_id: int) -> tuple[Callback, Contact, Campaign]:
    """The claimed callback, its contact (due now for its agent: its next attempt is the
    callback's due time, not the fallback time the campaign waits for) and campaign."""
    cb = s.get(Callback, callback_id)
    if cb is None or cb.state != CallbackState.CALLING.value:
        raise ComplianceError(f"callback {callback_id} is no longer pending")
    contact = s.get(Contact, cb.contact_id)
    campaign = s.get(Campaign, cb.campaign_id)
    if contact is None or campaign is None:
        raise ComplianceError(f"callback {callback_id}: its contact or campaign is gone")
    contact.next_attempt_at = _aware(cb.due_at)
    return cb, contact, campaign


def refusal(s: Session, callback_id: int, now: dt.datetime, *, daily_cap: int) -> str | None:
    """Why the customer may not be dialled now (None: they may), the rules of any call;
    nothing is written (the session is rolled back)."""
    try:
        _, contact, campaign = _its_turn(s, callback_id)
    except ComplianceError as exc:
        return str(exc)
    if contact.lease_until is not None and _aware(contact.lease_until) > now:
        return "the contact is being dialled"
    reason = hopper.check_contact(s, contact, campaign, now, daily_cap=daily_cap)
    s.rollback()
    return reason.value if reason is not None else None


def start_personal(
    s: Session,
    callback_id: int,
    now: dt.datetime,
    *,
    owner: str,
    daily_cap: int,
    agent_channel: str,
) -> Attempt:
    """The attempt row of the customer's leg, written under every rule (``ComplianceError``
    when one says no: nothing is written). Its detail names the agent and the channel on
    which the agent waits (the Originate bridges the customer to it)."""
    cb, contact, campaign = _its_turn(s, callback_id)
    if contact.lease_until is not None and _aware(contact.lease_until) > now:
        raise ComplianceError(f"contact {contact.id} is being dialled")
    cb.state = CallbackState.PENDING.value  # ``start_attempts`` marks it dialled
    (started,) = hopper.start_attempts(
        s, [contact], campaign, now, daily_cap=daily_cap, owner=owner
    )
    if isinstance(started, ComplianceError):
        raise started
    started.detail = {
        **(started.detail or {}),
        "personal": {"agent": cb.agent, "channel": agent_channel, "callback": cb.id},
    }
    s.flush()
    return started


__all__ = ["PersonalDue", "claim", "due_personal", "refusal", "start_personal", "unclaim"]
