"""Saving an agent's disposition: the record, the attempt row, and what it does to the contact.

The disposition is written as a ``disposition`` row (the last one of an attempt counts), on
the attempt (``result`` = the code, ``detail.disposition``) and its ``then`` is applied to the
contact at once. An attempt still live when the agent saves keeps the disposition in its
detail; when its outcome lands, ``hopper.finish_attempt`` applies the retry rules and then the
disposition again (``reapply``), so the agent's word wins over the outcome's rule either way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.lists.callbacks import book_callback, keep_pending
from dialer.lists.campaigns import CampaignSpec, spec_of
from dialer.lists.compliance import ContactStatus
from dialer.lists.dispositions import ThenKind, ThenRule, check_form, clean_notes
from dialer.lists.dnc import DncChannel, DncScope, add_entry
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact
from dialer.store.people import Disposition


@dataclass(frozen=True)
class Saved:
    disposition_id: int
    code: str
    then: str
    callback_id: int | None
    contact_status: str | None
    next_attempt_at: dt.datetime | None


def apply_then(
    spec: CampaignSpec, d: ThenRule, code: str, contact: Contact, s: Session, now: dt.datetime
) -> None:
    """What an agent's choice (a disposition, a preview skip) does to the contact."""
    kind = d.then_kind
    if kind is ThenKind.DONE:
        contact.status, contact.next_attempt_at = ContactStatus.DONE.value, None
    elif kind is ThenKind.DNC:
        add_entry(
            s,
            contact.phone,
            scope=DncScope.ALL,
            channel=DncChannel.VOICE,
            reason=f"agent: {code}",
            source="agent",
        )
        contact.status, contact.next_attempt_at = ContactStatus.DONE.value, None
    elif kind is ThenKind.RETRY:
        delay = d.retry_after
        assert delay is not None
        if (contact.attempts or 0) < spec.max_attempts:
            contact.status, contact.next_attempt_at = ContactStatus.ACTIVE.value, now + delay
        else:
            contact.status, contact.next_attempt_at = ContactStatus.DONE.value, None


def reapply(s: Session, attempt: Attempt, contact: Contact | None, now: dt.datetime) -> None:
    """After an outcome's retry rule: a disposition saved during the call decides again."""
    saved = (attempt.detail or {}).get("disposition")
    if contact is None or not isinstance(saved, dict):
        return
    campaign = s.get(Campaign, attempt.campaign_id)
    spec = spec_of(campaign) if campaign is not None else None
    code = saved.get("code")
    if spec is None or code not in spec.dispositions:
        return
    if spec.dispositions[code].then_kind is ThenKind.CALLBACK:
        booked = saved.get("callback_due")
        if booked and not keep_pending(s, contact):  # pending: due then (its agent's first)
            contact.status = ContactStatus.ACTIVE.value
            contact.next_attempt_at = dt.datetime.fromisoformat(booked)
        return
    apply_then(
        spec, spec.dispositions[code], code, contact, s, dt.datetime.fromisoformat(saved["at"])
    )


def save_disposition(
    s: Session,
    attempt_id: int,
    code: str,
    data: Any,
    notes: Any,
    *,
    agent: str,
    now: dt.datetime,
    callback_at: str | None = None,
    personal: bool = True,
) -> Saved:
    """Record ``code`` for the attempt; ``ConfigError``/``ComplianceError`` change nothing."""
    attempt = s.get(Attempt, attempt_id)
    if attempt is None:
        raise ConfigError(f"no attempt {attempt_id}")
    campaign = s.get(Campaign, attempt.campaign_id)
    assert campaign is not None
    spec = spec_of(campaign)
    if code not in spec.dispositions:
        known = ", ".join(spec.dispositions) or "none defined"
        raise ConfigError(f"campaign {spec.name} has no disposition {code!r} ({known})")
    form = check_form(code, spec.dispositions[code], data or {}, set(spec.fields))
    clean = clean_notes(notes)
    contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
    callback = None
    if spec.dispositions[code].then_kind is ThenKind.CALLBACK:
        if contact is None or not callback_at:
            raise ConfigError(f"{code}: give the callback's time (callback_at)")
        callback = book_callback(
            s,
            contact,
            callback_at,
            now=now,
            booked_by=f"user:{agent}",
            agent=agent if personal else None,
            attempt_id=attempt.id,
        )
    elif contact is not None:
        apply_then(spec, spec.dispositions[code], code, contact, s, now)
    row = Disposition(
        attempt_id=attempt.id,
        campaign_id=attempt.campaign_id,
        contact_id=attempt.contact_id,
        code=code,
        data=form,
        notes=clean,
        agent=agent,
        at=now,
    )
    s.add(row)
    s.flush()
    saved: dict[str, Any] = {"code": code, "by": agent, "at": now.isoformat(), "id": row.id}
    if callback is not None:
        saved["callback_due"] = callback.due_at.isoformat()
    attempt.detail = {**(attempt.detail or {}), "disposition": saved}
    attempt.result = code
    s.add(
        AuditEntry(
            actor=f"user:{agent}",
            action=AuditAction.DISPOSITION,
            campaign_id=attempt.campaign_id,
            detail={"attempt": attempt.id, "code": code, "callback": saved.get("callback_due")},
        )
    )
    return Saved(
        row.id,
        code,
        spec.dispositions[code].then,
        callback.id if callback is not None else None,
        contact.status if contact is not None else None,
        contact.next_attempt_at if contact is not None else None,
    )


__all__ = ["Saved", "apply_then", "reapply", "save_disposition"]
