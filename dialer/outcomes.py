"""Attempt outcomes: the contract of DESIGN.md section 9.

Every attempt ends in exactly one outcome. The business *result* of an IVR flow
(``activated``, ``promised_to_pay``, ...) is a separate field, never an outcome.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    COMPLETED = "completed"  # the IVR flow ran to an end
    AGENT_HANDLED = "agent_handled"
    ABANDONED = "abandoned"  # live answer not bridged within the hold limit
    CUSTOMER_HANGUP = "customer_hangup"  # answered, then hung up before flow/agent finished
    IVR_FAILED = "ivr_failed"  # answered, the IVR flow failed: never ran, crashed, server died
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    INVALID_NUMBER = "invalid_number"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the dialer shut down with the call live
    UNKNOWN = "unknown"  # after a reconnect nothing showed what became of it


#: Outcomes that mean a person answered (used for connect counts).
LIVE_OUTCOMES = frozenset(
    {
        Outcome.COMPLETED,
        Outcome.AGENT_HANDLED,
        Outcome.ABANDONED,
        Outcome.CUSTOMER_HANGUP,
        Outcome.IVR_FAILED,
    }
)

#: ``unknown`` is retried with the campaign's ``failed`` rule (issue 4).
RETRY_KEY_FOR = {Outcome.UNKNOWN: Outcome.FAILED}


class AttemptState(enum.StrEnum):
    """Lifecycle of an attempt row; the call tracker owns the transitions."""

    CREATED = "created"  # row written, Originate not yet sent
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    IN_IVR = "in_ivr"
    QUEUED = "queued"
    WITH_AGENT = "with_agent"
    ENDED = "ended"
