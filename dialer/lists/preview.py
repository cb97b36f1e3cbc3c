"""Preview dialling from the desktop: the agent is offered a contact, sees it, then dials or skips.

``offer`` leases the next eligible contact of a preview campaign to the agent (the hopper's
lease, owner ``preview:<agent>``, for ``PREVIEW_HOLD``): no attempt row is written and nothing
is dialled; asking again while an offer is held gives the same contact. ``dial_offered`` starts
the attempt under every compliance rule again (``hopper.start_attempts``: the window may have
closed meanwhile). ``skip_offered`` gives the contact back with a reason from the campaign's
``skip_reasons`` (``dialer.lists.dispositions.SkipReasonSpec``): a ``preview_skip`` row and an
audit row record it; the reason's ``then`` decides the contact's next attempt (``retry 1h``,
``rules``: as it was, ``done``, ``dnc``) and a skip is never dialled and spends no attempt
unless the reason says ``attempt: true``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.errors import AccessDenied, ComplianceError, ConfigError
from dialer.lists import hopper
from dialer.lists.campaigns import Mode, spec_of
from dialer.lists.compliance import ContactStatus
from dialer.lists.wrapup import apply_then
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact
from dialer.store.people import PreviewSkip

PREVIEW_HOLD = dt.timedelta(minutes=5)


def owner_of(agent: str) -> str:
    return f"preview:{agent}"[:64]


def _preview_campaign(row: Campaign) -> None:
    if spec_of(row).mode is not Mode.PREVIEW:
        raise ConfigError(f"campaign {row.name} is not in preview mode")


def offer(
    s: Session, row: Campaign, agent: str, now: dt.datetime, *, daily_cap: int | None = None
) -> Contact | None:
    """The contact offered to ``agent`` (held for ``PREVIEW_HOLD``), or None."""
    _preview_campaign(row)
    owner = owner_of(agent)
    held = s.scalars(
        select(Contact)
        .where(
            Contact.campaign_id == row.id,
            Contact.lease_owner == owner,
            Contact.lease_until > now,
        )
        .order_by(Contact.id)
    ).first()
    if held is not None:
        held.lease_until = now + PREVIEW_HOLD
        return held
    leased = hopper.lease(s, row, now, 1, owner, lease_for=PREVIEW_HOLD, daily_cap=daily_cap)
    return leased[0] if leased else None


def _held(s: Session, row: Campaign, contact_id: int, agent: str, now: dt.datetime) -> Contact:
    _preview_campaign(row)
    contact = s.get(Contact, contact_id)
    if (
        contact is None
        or contact.campaign_id != row.id
        or contact.lease_owner != owner_of(agent)
        or contact.lease_until is None
        or contact.lease_until <= now
    ):
        raise AccessDenied(f"contact {contact_id} is not offered to you (or the offer expired)")
    return contact


def dial_offered(
    s: Session,
    row: Campaign,
    contact_id: int,
    agent: str,
    now: dt.datetime,
    *,
    interface: str,
    owner: str | None,
    daily_cap: int | None = None,
) -> Attempt:
    """Start the attempt of the contact offered (``ComplianceError`` naming the rule when it
    may not be dialled now: the offer stays the agent's, to skip)."""
    contact = _held(s, row, contact_id, agent, now)
    (started,) = hopper.start_attempts(s, [contact], row, now, daily_cap=daily_cap, owner=owner)
    if isinstance(started, ComplianceError):
        raise started
    started.agent = interface
    started.detail = {**(started.detail or {}), "preview_by": f"user:{agent}"}
    s.add(
        AuditEntry(
            actor=f"user:{agent}",
            action=AuditAction.DIAL_PREVIEW,
            campaign_id=row.id,
            detail={"attempt": started.id, "contact": contact.id},
        )
    )
    return started


def skip_offered(
    s: Session, row: Campaign, contact_id: int, agent: str, reason: str, now: dt.datetime
) -> PreviewSkip:
    """Give the contact offered back with ``reason``; recorded and audited."""
    spec = spec_of(row)
    rules = spec.skips
    if reason not in rules:
        raise ConfigError(f"skip reason is one of {', '.join(rules)}")
    contact = _held(s, row, contact_id, agent, now)
    rule = rules[reason]
    hopper.release(s, [contact])
    if rule.attempt:
        contact.attempts = (contact.attempts or 0) + 1
        if contact.attempts >= spec.max_attempts:
            contact.status, contact.next_attempt_at = ContactStatus.DONE.value, None
    if contact.status != ContactStatus.DONE.value:
        apply_then(spec, rule, f"preview skip {reason}", contact, s, now)
    skip = PreviewSkip(
        campaign_id=row.id,
        contact_id=contact.id,
        agent=agent[:40],
        reason=reason,
        counted=rule.attempt,
        at=now,
    )
    s.add(skip)
    s.flush()
    s.add(
        AuditEntry(
            actor=f"user:{agent}",
            action=AuditAction.DIAL_PREVIEW_SKIP,
            campaign_id=row.id,
            detail={
                "contact": contact.id,
                "reason": reason,
                "then": rule.then,
                "counted": rule.attempt,
                "next_attempt_at": contact.next_attempt_at.isoformat()
                if contact.next_attempt_at
                else None,
            },
        )
    )
    return skip


__all__ = ["PREVIEW_HOLD", "dial_offered", "offer", "owner_of", "skip_offered"]
