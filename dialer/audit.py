"""The names of audit rows (``audit_log.action``): one enum, so a supervisor's action is named
the same wherever it is written and wherever it is read back."""

from __future__ import annotations

import enum


class AuditAction(enum.StrEnum):
    CAMPAIGN_CREATE = "campaign.create"  # a campaign file applied for the first time
    CAMPAIGN_APPLY = "campaign.apply"  # a campaign file re-applied
    CAMPAIGN_PAUSE = "campaign.pause"
    CAMPAIGN_RESUME = "campaign.resume"
    CAMPAIGN_PACING = "campaign.pacing"  # pacing keys changed from the console
    BREAKER_OPEN = "breaker.open"  # the abandon breaker held a campaign's dialling (an alarm)
    BREAKER_CLOSED = "breaker.closed"  # agents take calls again: dialling resumed
