"""Manual dialling: a number an agent types, under the same rules as any dial.

The number is parsed as people write it (``contacts.parse_phone``, the settings' default
region); it becomes (or finds) a contact of the campaign, and ``hopper.start_attempt`` writes
the attempt only if every compliance rule holds now (calling window in the number's zone,
holidays, DNC, attempt limit, daily cap per number, no live call to it): otherwise
``ComplianceError`` names the rule and nothing is written.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.errors import ConfigError
from dialer.lists import hopper
from dialer.lists.contacts import parse_phone
from dialer.store.models import Attempt, Campaign, Contact


def start_manual(
    s: Session,
    campaign: Campaign,
    text: str,
    *,
    default_region: str,
    now: dt.datetime,
    daily_cap: int,
    agent: str,
) -> Attempt:
    parsed = parse_phone(text.strip()[:40], default_region)
    if parsed is None:
        raise ConfigError("that is not a valid phone number")
    contact = s.scalars(
        select(Contact).where(Contact.campaign_id == campaign.id, Contact.phone == parsed.e164)
    ).one_or_none()
    if contact is None:
        if parsed.timezone is None:
            raise ConfigError("the number's time zone is unknown: its calling window cannot hold")
        contact = Contact(
            campaign_id=campaign.id,
            phone=parsed.e164,
            region=parsed.region,
            timezone=parsed.timezone,
            external_id=f"manual:{agent}"[:100],
        )
        s.add(contact)
        s.flush()
    attempt = hopper.start_attempt(s, contact, campaign, now, daily_cap=daily_cap)
    attempt.agent = agent
    attempt.detail = {**(attempt.detail or {}), "manual_by": agent}
    return attempt


__all__ = ["start_manual"]
