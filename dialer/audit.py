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
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_UPDATE = "user.update"  # role, phone, campaigns, name or language changed
    USER_PASSWORD = "user.password"  # a password set (by the user or an admin)
    USER_LOGIN = "user.login"
    USER_LOGIN_FAILED = "user.login_failed"
    USER_LOCKED = "user.locked"  # too many failed sign-ins: the account waits
    USER_LOGOUT = "user.logout"
    AGENT_QUEUE_LOGIN = "agent.queue_login"  # QueueAdd from the desktop
    AGENT_QUEUE_LOGOUT = "agent.queue_logout"  # QueueRemove
    AGENT_PAUSE = "agent.pause"  # QueuePause with a reason
    AGENT_READY = "agent.ready"
    AGENT_FORCED = "agent.forced"  # a supervisor paused or logged out an agent
    DISPOSITION = "attempt.disposition"
    CALLBACK_BOOK = "callback.book"
    DIAL_PREVIEW = "dial.preview"  # the agent dialled (or skipped) a previewed contact
    DIAL_MANUAL = "dial.manual"
    DIAL_PREVIEW_SKIP = "dial.preview_skip"  # the agent skipped the contact offered (reason)
