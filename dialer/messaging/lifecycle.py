"""The life of one outbound message (SMS or e-mail), as a transition table.

Why a table: a message must be handed to the gateway at most once. The ways back to
``queued`` are ``unavailable`` (the gateway provably did not take it: refused connection,
5xx) and ``cleared`` (below); a request that left without an answer goes to ``in_doubt`` and only a report from
the network takes it further. Reports arrive out of order (an SMSC ack after the delivery
report), twice, or after a doubt: each such case is a row below, so nothing is silently
ignored and an event with no row raises ``IllegalTransition``.

A doubt is *cleared* (back to ``queued``) only by proof that the gateway never took the
message: a message handed over after it on the same route has been acknowledged by the SMSC
for a while and this one has had no report. Kannel queues per route in order, so the later
one cannot overtake a message Kannel holds.

    queued --claim--> submitting --accepted--> accepted --smsc_ack--> sent --delivered--> delivered
       |                 |  |  \\--unavailable--> queued (retried later)        \\--failed/expired
       |                 |  \\--rejected--> failed
       |                 \\--no_answer / recover--> in_doubt --report--> sent|delivered|failed
       |                                               |--cleared--> queued
       |                                               \\--doubt_timeout--> unknown
       \\--blocked--> suppressed (DNC, window, invalid address: never sent)
"""

from __future__ import annotations

import enum

from dialer.errors import IllegalTransition


class MsgState(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    ACCEPTED = "accepted"  # the gateway / SMTP server took it
    IN_DOUBT = "in_doubt"
    SENT = "sent"  # the SMSC acknowledged it
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"


class MsgEvent(enum.StrEnum):
    CLAIM = "claim"
    ACCEPTED = "accepted"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    RECOVER = "recover"  # found 'submitting' after a restart
    BLOCKED = "blocked"
    BUFFERED = "buffered"
    SMSC_ACK = "smsc_ack"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    BOUNCED = "bounced"  # e-mail: a DSN came back
    DOUBT_TIMEOUT = "doubt_timeout"
    CLEARED = "cleared"  # proven never taken: a later message was acknowledged, this one not


FINAL = frozenset(
    {
        MsgState.DELIVERED,
        MsgState.FAILED,
        MsgState.EXPIRED,
        MsgState.SUPPRESSED,
        MsgState.UNKNOWN,
    }
)
S, E = MsgState, MsgEvent

_REPORTS = (E.BUFFERED, E.SMSC_ACK, E.DELIVERED, E.FAILED, E.EXPIRED, E.BOUNCED)
_AFTER_REPORT = {
    E.BUFFERED: S.SENT,
    E.SMSC_ACK: S.SENT,
    E.DELIVERED: S.DELIVERED,
    E.FAILED: S.FAILED,
    E.EXPIRED: S.EXPIRED,
    E.BOUNCED: S.FAILED,
}

TRANSITIONS: dict[tuple[MsgState, MsgEvent], MsgState] = {
    (S.QUEUED, E.CLAIM): S.SUBMITTING,
    (S.QUEUED, E.BLOCKED): S.SUPPRESSED,
    (S.SUBMITTING, E.ACCEPTED): S.ACCEPTED,
    (S.SUBMITTING, E.UNAVAILABLE): S.QUEUED,
    (S.SUBMITTING, E.REJECTED): S.FAILED,
    (S.SUBMITTING, E.NO_ANSWER): S.IN_DOUBT,
    (S.SUBMITTING, E.RECOVER): S.IN_DOUBT,
    (S.SUBMITTING, E.BLOCKED): S.SUPPRESSED,
    (S.IN_DOUBT, E.DOUBT_TIMEOUT): S.UNKNOWN,
    (S.IN_DOUBT, E.CLEARED): S.QUEUED,
    # a report can beat sendsms's own answer back (Kannel answers after queueing)
    **{(S.SUBMITTING, e): _AFTER_REPORT[e] for e in _REPORTS},
    **{(s, e): _AFTER_REPORT[e] for s in (S.ACCEPTED, S.IN_DOUBT, S.SENT) for e in _REPORTS},
    # a late accepted answer after a report already moved the message on
    **{(s, E.ACCEPTED): s for s in (S.SENT, S.DELIVERED, S.FAILED, S.EXPIRED)},
    # stale or repeated reports after the end: the end stands
    **{(s, e): s for s in (S.DELIVERED, S.FAILED, S.EXPIRED, S.UNKNOWN) for e in _REPORTS},
}
# a bounce after delivery (e-mail: accepted by the next hop, then returned) still fails it
TRANSITIONS[(S.DELIVERED, E.BOUNCED)] = S.FAILED
TRANSITIONS[(S.UNKNOWN, E.DELIVERED)] = S.DELIVERED
TRANSITIONS[(S.UNKNOWN, E.SMSC_ACK)] = S.SENT


def step(state: MsgState | str, event: MsgEvent) -> MsgState:
    key = (MsgState(state), event)
    try:
        return TRANSITIONS[key]
    except KeyError:
        raise IllegalTransition("message", key[0], event) from None


__all__ = ["FINAL", "TRANSITIONS", "MsgEvent", "MsgState", "step"]
