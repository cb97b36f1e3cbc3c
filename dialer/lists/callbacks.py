"""Callbacks: a call booked for a time in the customer's zone, under the same rules as any dial.

A callback is refused (``ComplianceError`` with the rule) unless, at its due instant, the
contact may be dialled by the compliance core (``first_broken_rule``): inside the calling
window of its own zone, not on a holiday the campaign skips, the number not on the DNC list
for calls, the attempt limit not reached, the contact's validity not over. What the booking
itself changes (the contact's next attempt) is not held against it. It is due in the future
and at most ``HORIZON`` ahead. Booking sets the contact's next attempt to the due instant; a
personal callback names the agent, and falls back to the campaign ``fallback_after`` later:
until then the campaign's hopper leaves the contact to that agent (its next attempt is the
fallback time) and the floor dials it agent-first when the agent is ready
(``dialer.lists.personal``, ``dialer.floor.personal``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.errors import ComplianceError, ConfigError
from dialer.lists.campaigns import spec_of
from dialer.lists.compliance import (
    DEFAULT_CALENDAR,
    ContactState,
    ContactStatus,
    HolidayCalendar,
    NumberFacts,
    Policy,
    Reason,
    first_broken_rule,
    zone,
)
from dialer.lists.dnc import DncMatcher
from dialer.store.models import AuditEntry, Campaign, Contact
from dialer.store.people import Callback

HORIZON = dt.timedelta(days=30)
#: A contact with a callback pending sits at this priority: the hopper walks priority levels
#: from the highest, so a due callback is served before the campaign's other work.
CALLBACK_PRIORITY = 1_000_000
FALLBACK_AFTER = dt.timedelta(minutes=15)


class CallbackState(enum.StrEnum):
    PENDING = "pending"
    #: a personal callback whose agent's phone is being rung (one worker claimed it)
    CALLING = "calling"
    DIALLED = "dialled"
    REPLACED = "replaced"
    CANCELLED = "cancelled"


def hold_until(cb: Callback) -> dt.datetime:
    """When the campaign's hopper may dial the callback's contact: at its due time, or for a
    personal one at its fallback time (before that only its agent gets it)."""
    return cb.fallback_at if cb.agent and cb.fallback_at is not None else cb.due_at


def callback_refusal(
    contact: ContactState,
    policy: Policy,
    due: dt.datetime,
    now: dt.datetime,
    *,
    dnc: bool,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> Reason | str | None:
    """Why a callback at ``due`` may not be booked (None: it may). Pure."""
    if due <= now:
        return "the time has passed"
    if due > now + HORIZON:
        return f"more than {HORIZON.days} days ahead"
    # the booking re-opens the contact and sets its next attempt: neither is held against it
    booked = dataclasses.replace(contact, next_attempt_at=None, status=ContactStatus.ACTIVE.value)
    rules = dataclasses.replace(policy, running=True, daily_cap=10**9)
    return first_broken_rule(booked, rules, due, NumberFacts(dnc=dnc), calendar)


def local_instant(when: str | dt.datetime, tz: str) -> dt.datetime:
    """``2026-12-04T15:30`` read in the contact's zone (an aware value keeps its offset)."""
    if isinstance(when, str):
        try:
            when = dt.datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(f"a callback time is like 2026-12-04T15:30, not {when!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(tz))
    return when.astimezone(dt.UTC)


class CallbackSlot(enum.StrEnum):
    """Times a customer can pick by keypad ("press 1 for this afternoon ...")."""

    THIS_AFTERNOON = "this_afternoon"
    THIS_EVENING = "this_evening"
    TOMORROW_MORNING = "tomorrow_morning"
    TOMORROW_AFTERNOON = "tomorrow_afternoon"


#: Each slot: days after today and the local time, in the customer's own zone.
SLOTS: dict[CallbackSlot, tuple[int, dt.time]] = {
    CallbackSlot.THIS_AFTERNOON: (0, dt.time(15, 0)),
    CallbackSlot.THIS_EVENING: (0, dt.time(19, 0)),
    CallbackSlot.TOMORROW_MORNING: (1, dt.time(10, 0)),
    CallbackSlot.TOMORROW_AFTERNOON: (1, dt.time(15, 0)),
}


def slot_instant(slot: CallbackSlot | str, now: dt.datetime, tz: str) -> dt.datetime:
    """The instant (UTC) of ``slot`` seen from ``now`` in zone ``tz``. Pure."""
    try:
        days, at = SLOTS[CallbackSlot(slot)]
    except ValueError:
        raise ConfigError(f"callback slot is one of {', '.join(s.value for s in SLOTS)}") from None
    local = now.astimezone(zone(tz))
    day = local.date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, at, tzinfo=zone(tz)).astimezone(dt.UTC)


def book_callback(
    s: Session,
    contact: Contact,
    when: str | dt.datetime,
    *,
    now: dt.datetime,
    booked_by: str,
    agent: str | None = None,
    attempt_id: int | None = None,
    fallback_after: dt.timedelta = FALLBACK_AFTER,
    calendar: HolidayCalendar = DEFAULT_CALENDAR,
) -> Callback:
    """Book a callback (personal when ``agent`` is given); audited."""
    campaign = s.get(Campaign, contact.campaign_id)
    assert campaign is not None
    spec = spec_of(campaign)
    due = local_instant(when, contact.timezone)
    dnc = DncMatcher.for_numbers(s, [contact.phone]).blocks(contact.phone, spec.purpose.value)
    why = callback_refusal(
        ContactState.of(contact),
        Policy.of(spec, daily_cap=0),
        due,
        now,
        dnc=dnc,
        calendar=calendar,
    )
    if why is not None:
        raise ComplianceError(f"callback refused: {why}")
    before = contact.priority or 0
    for earlier in _pending(s, contact.id):  # a new booking replaces the one pending
        earlier.state = CallbackState.REPLACED.value
        before = earlier.priority_before if earlier.priority_before is not None else before
    row = Callback(
        campaign_id=contact.campaign_id,
        contact_id=contact.id,
        agent=agent,
        due_at=due,
        fallback_at=due + fallback_after if agent else None,
        booked_by=booked_by[:64],
        attempt_id=attempt_id,
        priority_before=before,
    )
    s.add(row)
    contact.status = ContactStatus.ACTIVE.value
    contact.next_attempt_at = hold_until(row)
    contact.priority = CALLBACK_PRIORITY
    s.flush()
    s.add(
        AuditEntry(
            actor=booked_by[:64],
            action=AuditAction.CALLBACK_BOOK,
            campaign_id=contact.campaign_id,
            detail={
                "callback": row.id,
                "contact": contact.id,
                "due": due.isoformat(),
                "personal": agent,
            },
        )
    )
    return row


def _pending(s: Session, contact_id: int) -> list[Callback]:
    return list(
        s.scalars(
            select(Callback).where(
                Callback.contact_id == contact_id,
                Callback.state.in_((CallbackState.PENDING.value, CallbackState.CALLING.value)),
            )
        )
    )


def keep_pending(s: Session, contact: Contact) -> bool:
    """After an outcome's retry rule: a callback pending for the contact (booked during the
    call, by the IVR or an agent) keeps it active and due then. Only a contact raised to
    ``CALLBACK_PRIORITY`` is looked up (a booking raises it)."""
    if contact.priority != CALLBACK_PRIORITY:
        return False
    pending = _pending(s, contact.id)
    if not pending:
        return False
    contact.status = ContactStatus.ACTIVE.value
    contact.next_attempt_at = min(hold_until(cb) for cb in pending)
    return True


def callback_dialled(s: Session, contact: Contact, attempt_id: int | None) -> None:
    """The contact's pending callback is being dialled: it is done, the priority goes back."""
    for cb in _pending(s, contact.id):
        cb.state = CallbackState.DIALLED.value
        cb.attempt_id = attempt_id
        if cb.priority_before is not None:
            contact.priority = cb.priority_before


__all__ = [
    "CALLBACK_PRIORITY",
    "SLOTS",
    "CallbackSlot",
    "keep_pending",
    "slot_instant",
    "FALLBACK_AFTER",
    "HORIZON",
    "CallbackState",
    "hold_until",
    "book_callback",
    "callback_dialled",
    "callback_refusal",
    "local_instant",
]
