"""Dialling asked for by an agent: a number typed on the desktop (``manual_dial``), the contact
a preview campaign offered (``preview_dial``).

The attempt row is written under the compliance rules (``dialer.lists.manual``) in a worker
thread, then handed to the campaign loop's own originate path (pacer, tracker, outcome), as
a preview dial is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.lists.manual import start_manual
from dialer.lists.preview import dial_offered
from dialer.privacy import mask_phone
from dialer.store.models import Attempt, AuditEntry, Campaign

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignLoop


async def _dial(
    loop: CampaignLoop, campaign: str, start: Callable[[Session, Campaign, dt.datetime], Attempt]
) -> dict[str, Any]:
    """Write the attempt ``start`` makes (in a worker thread), then originate it."""
    run = loop.run_named(campaign)
    now = dt.datetime.fromtimestamp(loop.clock.time(), dt.UTC)

    def write() -> tuple[int, str]:
        with loop.store.session() as s:
            row = s.get(Campaign, run.id)
            assert row is not None
            attempt = start(s, row, now)
            s.flush()
            return attempt.id, attempt.phone

    attempt_id, phone = await asyncio.to_thread(write)
    loop.attempt_phone[attempt_id] = phone
    loop.spawn(run, [attempt_id])
    loop.wake()
    return {"attempt_id": attempt_id, "phone": mask_phone(phone), "campaign": campaign}


async def manual_dial(
    loop: CampaignLoop, campaign: str, number: str, *, agent: str, actor: str
) -> dict[str, Any]:
    """Dial ``number`` for ``agent`` in ``campaign``; ``ComplianceError`` when a rule says no."""

    def start(s: Session, row: Campaign, now: dt.datetime) -> Attempt:
        attempt = start_manual(
            s,
            row,
            number,
            default_region=loop.settings.default_region,
            now=now,
            daily_cap=loop.settings.max_calls_per_number_per_day,
            agent=agent,
        )
        s.flush()
        s.add(
            AuditEntry(
                actor=actor,
                action=AuditAction.DIAL_MANUAL,
                campaign_id=row.id,
                detail={"attempt": attempt.id, "phone": mask_phone(attempt.phone)},
            )
        )
        return attempt

    return await _dial(loop, campaign, start)


async def preview_dial(
    loop: CampaignLoop, campaign: str, contact_id: int, *, agent: str, interface: str
) -> dict[str, Any]:
    """Dial the contact offered to ``agent`` (``ComplianceError`` when a rule says no now)."""

    def start(s: Session, row: Campaign, now: dt.datetime) -> Attempt:
        return dial_offered(
            s,
            row,
            contact_id,
            agent,
            now,
            interface=interface,
            owner=loop.owner,
            daily_cap=loop.settings.max_calls_per_number_per_day,
        )

    return await _dial(loop, campaign, start)


__all__ = ["manual_dial", "preview_dial"]
