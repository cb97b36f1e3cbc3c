"""The call tracker: one state machine per attempt, fed by AMI events, ending in one outcome.

Why it looks like this (what real Asterisk 22 showed, ``shared/asterisk/README.md``):
- Events for a call arrive *before* its ``OriginateResponse``; a failed ``OriginateResponse``
  may even come between the two legs' ``Hangup`` events. So a call is not over when the
  ``OriginateResponse`` says "Failure", nor when one leg hangs up: it is over when every leg we
  saw has hung up *and* we know whether it was answered (``OriginateResponse``, or an ``Up``).
- Correlation is by the ``ChannelId`` we chose (uuid4, fixed length: Asterisk matches ids by
  prefix). The Local channel's second leg is ``OtherChannelId`` or ``<ChannelId>;2``. Agent
  channels carry our id as ``Linkedid`` only and are deliberately *not* correlated.
- ``OriginateResponse`` ``Reason`` is the last control frame (4 answered, 5 busy, 8 congestion,
  3 rang out, 0 anything else); the cause is the ``Hangup`` ``Cause`` (Q.850).
- The called party can answer as the Originate's timeout runs out: the ``;2`` leg goes ``Up``
  and then the ``;1`` leg is torn down with ``OriginateResponse`` ``Failure`` (Reason 3) - in
  either order. The customer picked up and was hung up on with nobody there: for a call meant
  for agents that is an abandon (a live answer not bridged), otherwise ``failed``.
- AMD has no event: ``VarSet AMDSTATUS``. The IVR reports with ``VarSet IVR_RESULT/IVR_NEXT``;
  the dialplan marks the safe-harbour prompt with ``VarSet DIALER_MSG=played``.

Rules of this file:
- Pure: no I/O, no clock. Every ``feed`` takes ``now`` (epoch seconds); outputs are values.
- The lifecycle is the table ``TRANSITIONS``; a signal with no entry raises
  ``IllegalTransition``. Signals that change nothing but are legal are explicit self-loops.
- An event's facts are written on the call only after its signal passed the table: a refused
  event leaves no trace (a QueueCallerJoin refused while dialling cannot make an abandon).
- Asterisk's numbers are looked up in tables (``REASON_OUTCOME``, ``CAUSE_OUTCOME``, ...);
  ``decide`` is the single place an outcome is chosen, from ``OutcomeFacts`` and, when the
  dialer core has it, the IVR session's say. Exactly one ``Finished`` is emitted per attempt;
  after it the attempt's ids are forgotten, so late events are ignored.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence

from dialer.errors import IllegalTransition
from dialer.outcomes import AttemptState, Outcome
from dialer.telephony.ami.messages import Event, Headers

S = AttemptState


class Signal(enum.Enum):
    """What an AMI event means for one call."""

    NEW_LEG = "new_leg"
    RINGING = "ringing"
    ANSWER = "answer"
    ORIGINATE_OK = "originate_ok"
    ORIGINATE_FAILED = "originate_failed"
    AMD = "amd"
    AGI_START = "agi_start"
    IVR_RESULT = "ivr_result"
    QUEUE_JOIN = "queue_join"
    QUEUE_ABANDON = "queue_abandon"
    QUEUE_LEAVE = "queue_leave"
    AGENT_CONNECT = "agent_connect"
    AGENT_COMPLETE = "agent_complete"
    MESSAGE_PLAYED = "message_played"
    VAR = "var"  # another variable we keep (AGISTATUS, QUEUESTATUS, ...)
    LEG_DOWN = "leg_down"
    END = "end"


_LIVE_INFO = (Signal.NEW_LEG, Signal.VAR, Signal.LEG_DOWN, Signal.ORIGINATE_OK, Signal.ANSWER)

#: The lifecycle. (state, signal) -> next state. Anything else is illegal.
TRANSITIONS: dict[tuple[AttemptState, Signal], AttemptState] = {
    **{(S.DIALING, sig): S.DIALING for sig in (Signal.NEW_LEG, Signal.VAR, Signal.LEG_DOWN)},
    (S.DIALING, Signal.RINGING): S.RINGING,
    (S.DIALING, Signal.ORIGINATE_FAILED): S.DIALING,
    (S.DIALING, Signal.ANSWER): S.ANSWERED,
    (S.DIALING, Signal.ORIGINATE_OK): S.ANSWERED,
    (S.DIALING, Signal.END): S.ENDED,
    **{(S.RINGING, sig): S.RINGING for sig in (Signal.NEW_LEG, Signal.VAR, Signal.LEG_DOWN)},
    (S.RINGING, Signal.RINGING): S.RINGING,
    (S.RINGING, Signal.ORIGINATE_FAILED): S.RINGING,
    (S.RINGING, Signal.ANSWER): S.ANSWERED,
    (S.RINGING, Signal.ORIGINATE_OK): S.ANSWERED,
    (S.RINGING, Signal.END): S.ENDED,
    **{(S.ANSWERED, sig): S.ANSWERED for sig in _LIVE_INFO},
    (S.ANSWERED, Signal.RINGING): S.ANSWERED,  # DialBegin may trail the Up on Local legs
    # the ;2 leg answered as the Originate timed out: its Failure follows the Up
    (S.ANSWERED, Signal.ORIGINATE_FAILED): S.ANSWERED,
    (S.ANSWERED, Signal.AMD): S.ANSWERED,
    (S.ANSWERED, Signal.MESSAGE_PLAYED): S.ANSWERED,
    (S.ANSWERED, Signal.AGI_START): S.IN_IVR,
    (S.ANSWERED, Signal.QUEUE_JOIN): S.QUEUED,
    (S.ANSWERED, Signal.AGENT_CONNECT): S.WITH_AGENT,  # a personal callback: Bridge()
    (S.ANSWERED, Signal.END): S.ENDED,
    **{(S.IN_IVR, sig): S.IN_IVR for sig in _LIVE_INFO},
    (S.IN_IVR, Signal.AGI_START): S.IN_IVR,
    (S.IN_IVR, Signal.IVR_RESULT): S.IN_IVR,
    (S.IN_IVR, Signal.MESSAGE_PLAYED): S.IN_IVR,
    (S.IN_IVR, Signal.QUEUE_JOIN): S.QUEUED,
    (S.IN_IVR, Signal.END): S.ENDED,
    **{(S.QUEUED, sig): S.QUEUED for sig in _LIVE_INFO},
    (S.QUEUED, Signal.QUEUE_ABANDON): S.QUEUED,
    (S.QUEUED, Signal.QUEUE_LEAVE): S.QUEUED,
    (S.QUEUED, Signal.MESSAGE_PLAYED): S.QUEUED,
    (S.QUEUED, Signal.AGENT_CONNECT): S.WITH_AGENT,
    (S.QUEUED, Signal.END): S.ENDED,
    **{(S.WITH_AGENT, sig): S.WITH_AGENT for sig in _LIVE_INFO},
    (S.WITH_AGENT, Signal.QUEUE_LEAVE): S.WITH_AGENT,
    (S.WITH_AGENT, Signal.AGENT_COMPLETE): S.WITH_AGENT,
    (S.WITH_AGENT, Signal.END): S.ENDED,
}


class OriginateReason(enum.IntEnum):
    """``OriginateResponse`` ``Reason``: the last control frame seen (not a cause)."""

    OTHER = 0  # no such extension, unallocated, cancelled, ...
    HANGUP = 1
    RINGING = 3  # rang until the Originate timeout
    ANSWERED = 4
    BUSY = 5
    CONGESTION = 8


class Cause(enum.IntEnum):
    """Q.850 hang-up causes Asterisk reports on ``Hangup``."""

    UNKNOWN = 0
    UNALLOCATED = 1
    NO_ROUTE_TRANSIT_NET = 2
    NO_ROUTE_DESTINATION = 3
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    NORMAL_UNSPECIFIED = 31
    CONGESTION = 34
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    SWITCH_CONGESTION = 42


class AMDStatus(enum.StrEnum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"
    HANGUP = "HANGUP"


#: Outcome of a call that was never answered, by Originate reason (when it is telling).
REASON_OUTCOME: dict[OriginateReason, Outcome] = {
    OriginateReason.BUSY: Outcome.BUSY,
    OriginateReason.CONGESTION: Outcome.CONGESTION,
    OriginateReason.RINGING: Outcome.NO_ANSWER,
    OriginateReason.HANGUP: Outcome.NO_ANSWER,
}

#: Otherwise by the most telling hang-up cause of its legs.
CAUSE_OUTCOME: dict[Cause, Outcome] = {
    Cause.UNALLOCATED: Outcome.INVALID_NUMBER,
    Cause.NO_ROUTE_TRANSIT_NET: Outcome.INVALID_NUMBER,
    Cause.NO_ROUTE_DESTINATION: Outcome.INVALID_NUMBER,
    Cause.NUMBER_CHANGED: Outcome.INVALID_NUMBER,
    Cause.INVALID_NUMBER_FORMAT: Outcome.INVALID_NUMBER,
    Cause.USER_BUSY: Outcome.BUSY,
    Cause.CALL_REJECTED: Outcome.BUSY,  # the called party declined: retried like busy
    Cause.NO_USER_RESPONSE: Outcome.NO_ANSWER,
    Cause.NO_ANSWER: Outcome.NO_ANSWER,
    Cause.SUBSCRIBER_ABSENT: Outcome.NO_ANSWER,
    Cause.CONGESTION: Outcome.CONGESTION,
    Cause.SWITCH_CONGESTION: Outcome.CONGESTION,
    Cause.NETWORK_OUT_OF_ORDER: Outcome.CONGESTION,
    Cause.TEMPORARY_FAILURE: Outcome.CONGESTION,
    Cause.DESTINATION_OUT_OF_ORDER: Outcome.FAILED,
}

#: Channel states (``ChannelState``) that mean the far end answered / is ringing.
STATE_UP = "6"
STATE_RINGING = "5"

#: Variables the tracker keeps from ``VarSet``.
KEPT_VARS = frozenset({"AGISTATUS", "QUEUESTATUS", "IVR_NEXT", "DIALSTATUS", "DIALER_IVR"})
#: Every variable whose ``VarSet`` the tracker reads (``_varset``); the switch is asked to send
#: no other (``dialer.telephony.subscription``).
READ_VARIABLES = KEPT_VARS | {"AMDSTATUS", "AMDCAUSE", "IVR_RESULT", "DIALER_MSG"}
#: The dialplan applications whose ``Newexten`` the tracker reads (``_new_exten``).
READ_APPLICATIONS = frozenset({"AGI"})
#: ``VarSet DIALER_IVR=failed``: the dialplan found the flow failed (no IVR_NEXT: it never ran
#: or its server died; ``IVR_NEXT=failed``: it crashed mid-way) and rescued the caller. The IVR's
#: own ``IVR_NEXT=failed`` says the same if the caller leaves before the dialplan's mark.
IVR_FAILED_MARK = "failed"

#: Seconds to wait for a missing ``OriginateResponse`` / leg ``Hangup`` before ending anyway.
END_GRACE_S = 5.0
#: Seconds past the ring timeout after which a call with no sign of life is given up.
WATCHDOG_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class CallPlan:
    """What the dialplan was asked to do with the call (the Originate's variables)."""

    amd: str = "off"  # off | hangup | message
    flow: str | None = None
    queue: str | None = None
    ring_timeout_s: float = 25.0
    #: a personal callback, agent first: the agent's answered channel the customer is bridged
    #: to (``Bridge()``, no queue: its ``BridgeEnter`` is the connect)
    agent: str | None = None
    agent_name: str | None = None  # who that agent is (the attempt's ``agent``)


@dataclasses.dataclass
class Call:
    """Everything the tracker knows about one attempt's call (mutable, tracker-owned)."""

    attempt_id: int
    channel_id: str
    other_channel_id: str | None
    action_id: str | None
    plan: CallPlan
    originated_at: float
    state: AttemptState = S.DIALING
    legs: dict[str, bool] = dataclasses.field(default_factory=dict)  # uniqueid -> alive
    first_down: str | None = None  # the uniqueid that hung up first
    originate_reason: int | None = None
    originate_ok: bool | None = None
    originate_error: str | None = None  # synchronous Response: Error
    causes: dict[str, int] = dataclasses.field(default_factory=dict)
    ringing_at: float | None = None
    answered_at: float | None = None
    greeting_end_at: float | None = None
    queued_at: float | None = None
    bridged_at: float | None = None
    message_played_at: float | None = None
    ended_at: float | None = None
    all_down_at: float | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    queue: str | None = None
    agent: str | None = None
    agent_name: str | None = None  # who that agent is (the attempt's ``agent``)
    via_ivr: bool = False
    queue_abandoned: bool = False
    ivr_result: str | None = None
    vars: dict[str, str] = dataclasses.field(default_factory=dict)
    last_event_at: float | None = None
    resynced: bool = False
    outcome: Outcome | None = None
    end_reason: str | None = None

    def is_customer_leg(self, uid: str) -> bool:
        return uid == self.other_channel_id or uid == self.channel_id + ";2"

    @property
    def hangup_cause(self) -> int | None:
        """The most telling cause: a non-zero one of the customer leg, else of any leg."""
        best: int | None = None
        for uid, cause in self.causes.items():
            if cause and self.is_customer_leg(uid):
                return cause
            if cause and best is None:
                best = cause
        if best is None and self.causes:
            return 0
        return best

    def outcome_facts(self) -> OutcomeFacts:
        return OutcomeFacts(
            originate_error=self.originate_error is not None,
            originate_failed=self.originate_ok is False,
            answered=self.answered_at is not None,
            originate_reason=self.originate_reason,
            hangup_cause=self.hangup_cause,
            amd_status=self.amd_status,
            bridged=self.bridged_at is not None,
            queued_at=self.queued_at,
            via_ivr=self.via_ivr,
            in_ivr=self.state is S.IN_IVR,
            ivr_result=self.ivr_result,
            queue_status=self.vars.get("QUEUESTATUS"),
            agi_status=self.vars.get("AGISTATUS"),
            ivr_failed=IVR_FAILED_MARK in (self.vars.get("DIALER_IVR"), self.vars.get("IVR_NEXT")),
            planned_flow_or_queue=bool(self.plan.flow or self.plan.queue),
            planned_agents=bool(self.plan.queue) and not self.plan.flow,
            customer_hung_up_first=self.first_down is not None
            and self.is_customer_leg(self.first_down),
        )

    @property
    def live_answer(self) -> bool:
        """Answered and not a machine (AMD off, HUMAN or NOTSURE): DESIGN section 9."""
        return self.answered_at is not None and self.amd_status != AMDStatus.MACHINE


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    attempt_id: int
    before: AttemptState
    after: AttemptState
    signal: Signal
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """The attempt's one outcome and the facts behind it (seconds since the epoch)."""

    attempt_id: int
    outcome: Outcome
    end_reason: str
    originated_at: float
    ringing_at: float | None
    answered_at: float | None
    greeting_end_at: float | None
    queued_at: float | None
    bridged_at: float | None
    message_played_at: float | None
    ended_at: float
    originate_reason: int | None
    hangup_cause: int | None
    amd_status: str | None
    queue: str | None
    agent: str | None
    result: str | None
    live_answer: bool
    resynced: bool
    detail: dict[str, str]
    #: what the outcome was decided from; None when it was set from outside (watchdog, ...)
    facts: OutcomeFacts | None = None


Update = Transition | Finished
#: The facts an event carries, written on the call only once its signal is known to be legal.
Facts = Callable[[], None]
Step = tuple[Signal, Facts]


def _nothing() -> None:
    return None


def _both(first: Facts, second: Facts) -> Facts:
    def facts() -> None:
        first()
        second()

    return facts


#: What the IVR's own session record says it ended as (``ivr_session.status``): a flow that
#: failed (``error``) is the IVR's fault, a hang-up the caller's.
IVR_STATUS_OUTCOME: dict[str, Outcome] = {
    "completed": Outcome.COMPLETED,
    "hangup": Outcome.CUSTOMER_HANGUP,
    "error": Outcome.IVR_FAILED,
}
#: Outcomes the IVR session may correct (AMI only shows ``IVR_RESULT`` and ``AGISTATUS``).
IVR_REFINABLE = frozenset({Outcome.COMPLETED, Outcome.CUSTOMER_HANGUP, Outcome.FAILED})


@dataclasses.dataclass(frozen=True, slots=True)
class OutcomeFacts:
    """Everything the outcome of a call depends on, as AMI showed it."""

    originate_error: bool
    answered: bool
    originate_reason: int | None
    hangup_cause: int | None
    amd_status: str | None
    bridged: bool
    queued_at: float | None
    via_ivr: bool
    in_ivr: bool
    ivr_result: str | None
    queue_status: str | None
    agi_status: str | None
    ivr_failed: bool
    planned_flow_or_queue: bool
    customer_hung_up_first: bool
    #: ``OriginateResponse`` said Failure (for an answered call: the race at the ring timeout)
    originate_failed: bool = False
    planned_agents: bool = False  # the dialplan was to queue the call for agents, no flow


@dataclasses.dataclass(frozen=True, slots=True)
class IvrSay:
    """The IVR session's own record of the call (read from the store by the dialer core)."""

    status: str
    result: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    result: str | None


def decide(facts: OutcomeFacts, ivr: IvrSay | None = None) -> Verdict:
    """The single place where a call's facts, and the IVR session's say when there is one,
    become one outcome (DESIGN section 9) and its business result."""
    outcome = _outcome_of(facts)
    result = facts.ivr_result
    if ivr is not None and outcome in IVR_REFINABLE and facts.queued_at is None:
        outcome = IVR_STATUS_OUTCOME.get(ivr.status, outcome)
        result = ivr.result or result
    elif ivr is not None and outcome is Outcome.IVR_FAILED:
        result = ivr.result or result  # the partial result the flow reached before it failed
    return Verdict(outcome, result)


def decide_untraced(ivr: IvrSay | None) -> Verdict:
    """A call that ended while no dialer watched (a restart, an AMI outage) and that the switch
    no longer shows: the store decides before ``unknown`` does. An IVR session that finished
    (completed, caller hung up, error) is the call's record; ``unknown`` only where neither the
    switch nor the store knows."""
    if ivr is not None and ivr.status in IVR_STATUS_OUTCOME:
        return Verdict(IVR_STATUS_OUTCOME[ivr.status], ivr.result)
    return Verdict(Outcome.UNKNOWN, None)


def decide_outcome(call: Call) -> Outcome:
    """The outcome of a followed call from what AMI showed (no IVR session record)."""
    return decide(call.outcome_facts()).outcome


def _outcome_of(f: OutcomeFacts) -> Outcome:
    if f.originate_error:
        return Outcome.FAILED
    if not f.answered:
        return _unanswered(f)
    if f.amd_status == AMDStatus.MACHINE:
        return Outcome.MACHINE
    if f.bridged:
        return Outcome.AGENT_HANDLED
    if f.originate_failed and f.queued_at is None and not (f.via_ivr or f.in_ivr):
        # answered as the Originate gave up: the switch hung up on a live customer before
        # the dialplan ran - a live answer the agents never got is an abandon
        return Outcome.ABANDONED if f.planned_agents else Outcome.FAILED
    if f.ivr_failed:
        # the flow failed (never ran, crashed, its server died); the dialplan sent the
        # customer to the queue or an apology
        return Outcome.IVR_FAILED
    if f.queued_at is not None:
        if not f.via_ivr:
            # sent to agents by the dialer and never bridged: a timeout at the hold limit or
            # a caller who gave up while waiting are both abandons
            return Outcome.ABANDONED
        if f.queue_status == "TIMEOUT":
            return Outcome.COMPLETED  # the flow ended in a transfer nobody took
        return Outcome.CUSTOMER_HANGUP
    if f.via_ivr or f.in_ivr:
        if f.ivr_result is not None:
            return Outcome.COMPLETED
        if f.agi_status == "FAILURE":
            return Outcome.FAILED
        return Outcome.CUSTOMER_HANGUP
    if f.planned_flow_or_queue:
        # answered, then gone before the flow or the queue began
        return Outcome.CUSTOMER_HANGUP
    if f.customer_hung_up_first:
        return Outcome.CUSTOMER_HANGUP
    return Outcome.COMPLETED


def _unanswered(f: OutcomeFacts) -> Outcome:
    if f.originate_reason is not None:
        try:
            by_reason = REASON_OUTCOME.get(OriginateReason(f.originate_reason))
        except ValueError:
            by_reason = None
        if by_reason is not None:
            return by_reason
    if f.hangup_cause is not None:
        try:
            by_cause = CAUSE_OUTCOME.get(Cause(f.hangup_cause))
        except ValueError:
            by_cause = None
        if by_cause is not None:
            return by_cause
    return Outcome.FAILED


class CallTracker:
    """Attempts in flight, indexed by every id their events may carry."""

    def __init__(self) -> None:
        self.calls: dict[int, Call] = {}
        self._by_uid: dict[str, int] = {}
        self._by_action: dict[str, int] = {}
        self.reconnect_epoch: float | None = None
        self.ignored_events = 0

    # -- registration -------------------------------------------------------------------

    def register(
        self,
        attempt_id: int,
        channel_id: str,
        *,
        other_channel_id: str | None = None,
        action_id: str | None = None,
        plan: CallPlan = CallPlan(),
        now: float,
    ) -> Call:
        """Start following an attempt. Call *before* the Originate is written to the socket."""
        if attempt_id in self.calls:
            raise IllegalTransition("call", self.calls[attempt_id].state, "register again")
        call = Call(attempt_id, channel_id, other_channel_id, action_id, plan, originated_at=now)
        self.calls[attempt_id] = call
        self._by_uid[channel_id] = attempt_id
        self._by_uid[channel_id + ";2"] = attempt_id
        if other_channel_id:
            self._by_uid[other_channel_id] = attempt_id
        if action_id:
            self._by_action[action_id] = attempt_id
        return call

    def live(self) -> list[Call]:
        return list(self.calls.values())

    def counts(self) -> dict[AttemptState, int]:
        out: dict[AttemptState, int] = {s: 0 for s in S if s not in (S.CREATED, S.ENDED)}
        for call in self.calls.values():
            out[call.state] = out.get(call.state, 0) + 1
        return out

    def attempt_for(self, event: Event) -> int | None:
        h = event.headers
        uid = h.get("Uniqueid")
        if uid is not None and uid in self._by_uid:
            return self._by_uid[uid]
        if uid is None:
            dest = h.get("DestUniqueid")
            if dest is not None and dest in self._by_uid:
                return self._by_uid[dest]
        if event.name == "OriginateResponse":
            aid = h.get("ActionID")
            if aid is not None and aid in self._by_action:
                return self._by_action[aid]
        return None

    # -- feeding -------------------------------------------------------------------------

    def feed(self, event: Event, now: float) -> list[Update]:
        """Apply one AMI event. Events of no attempt we follow are ignored."""
        attempt_id = self.attempt_for(event)
        if attempt_id is None:
            self.ignored_events += 1
            return []
        call = self.calls[attempt_id]
        call.last_event_at = now
        out: list[Update] = []
        for signal, facts in self._steps(call, event, now):
            after = self._legal(call, signal)  # refuses before any fact is written
            facts()
            self._move(call, signal, after, now, out)
        self._maybe_end(call, now, out)
        return out

    def originate_rejected(self, attempt_id: int, message: str, now: float) -> list[Update]:
        """The Originate action itself got ``Response: Error``: nothing was dialled."""
        call = self.calls.get(attempt_id)
        if call is None:
            return []
        call.originate_error = message or "error"
        out: list[Update] = []
        self._finish(call, now, out, reason="originate rejected")
        return out

    def end(self, attempt_id: int, outcome: Outcome, now: float, reason: str) -> list[Update]:
        """End an attempt from outside the event stream (``interrupted``, ``unknown``)."""
        call = self.calls.get(attempt_id)
        if call is None:
            return []
        out: list[Update] = []
        self._finish(call, now, out, reason=reason, outcome=outcome)
        return out

    def tick(self, now: float) -> list[Update]:
        """Time-based endings: a missing last event, or a call with no sign of life."""
        out: list[Update] = []
        for call in list(self.calls.values()):
            all_down = bool(call.legs) and not any(call.legs.values())
            if all_down and call.all_down_at is not None and now - call.all_down_at >= END_GRACE_S:
                self._finish(call, now, out, reason="legs down, no OriginateResponse")
            elif (
                call.originate_ok is False
                and call.last_event_at is not None
                and now - call.last_event_at >= END_GRACE_S
            ):
                self._finish(call, now, out, reason="originate failed, legs not reported")
            elif (
                call.state in (S.DIALING, S.RINGING)
                and call.originate_ok is None
                and now - call.originated_at >= call.plan.ring_timeout_s + WATCHDOG_S
            ):
                self._finish(call, now, out, reason="watchdog", outcome=Outcome.UNKNOWN)
        return out

    # -- event -> signals ------------------------------------------------------------------
    #
    # An event becomes steps: a signal and the facts it carries (a function that writes them
    # on the call). Each step's signal is checked against ``TRANSITIONS`` first; the facts are
    # applied only when the transition is legal, so a refused event leaves no trace.

    def _steps(self, call: Call, event: Event, now: float) -> list[Step]:
        read = _READERS.get(event.name)
        return read(self, call, event.headers, now) if read is not None else []

    def _legs(self, call: Call, uid: str | None) -> Facts:
        def facts() -> None:
            if uid:
                call.legs.setdefault(uid, True)

        return facts

    def _new_channel(self, call: Call, h: Headers, now: float) -> list[Step]:
        steps = [(Signal.NEW_LEG, self._legs(call, h.get("Uniqueid")))]
        if h.get("ChannelState") == STATE_UP:
            steps.append((Signal.ANSWER, self._answer(call, now)))
        return steps

    def _new_state(self, call: Call, h: Headers, now: float) -> list[Step]:
        legs = self._legs(call, h.get("Uniqueid"))
        st = h.get("ChannelState")
        if st == STATE_UP:
            return [(Signal.ANSWER, _both(legs, self._answer(call, now)))]
        if st == STATE_RINGING:
            return [(Signal.RINGING, _both(legs, self._ringing(call, now)))]
        return [(Signal.VAR, legs)]

    def _dial_begin(self, call: Call, h: Headers, now: float) -> list[Step]:
        if h.get("Uniqueid") is None:  # the Originate's own dial (only Dest* fields)
            return [(Signal.RINGING, self._ringing(call, now))]
        return []

    def _originate_response(self, call: Call, h: Headers, now: float) -> list[Step]:
        reason = _int(h.get("Reason"))
        ok = (h.get("Response") or "").lower() == "success" or reason == OriginateReason.ANSWERED

        def facts() -> None:
            call.originate_reason = reason
            call.originate_ok = ok
            if ok and call.answered_at is None:
                call.answered_at = now
                if call.plan.amd == "off":
                    call.greeting_end_at = now

        return [(Signal.ORIGINATE_OK if ok else Signal.ORIGINATE_FAILED, facts)]

    def _hangup(self, call: Call, h: Headers, now: float) -> list[Step]:
        uid = h.get("Uniqueid")

        def facts() -> None:
            if uid:
                if call.first_down is None:
                    call.first_down = uid
                call.legs[uid] = False
                call.causes[uid] = _int(h.get("Cause")) or 0
                if not any(call.legs.values()):
                    call.all_down_at = now

        return [(Signal.LEG_DOWN, facts)]

    def _new_exten(self, call: Call, h: Headers, now: float) -> list[Step]:
        if (h.get("Application") or "") not in READ_APPLICATIONS:
            return []

        def facts() -> None:
            call.via_ivr = True

        return [(Signal.AGI_START, facts)]

    def _queue_join(self, call: Call, h: Headers, now: float) -> list[Step]:
        def facts() -> None:
            call.queued_at = call.queued_at or now
            call.queue = h.get("Queue")
            if call.state is S.IN_IVR:
                call.via_ivr = True

        return [(Signal.QUEUE_JOIN, facts)]

    def _queue_abandon(self, call: Call, h: Headers, now: float) -> list[Step]:
        def facts() -> None:
            call.queue_abandoned = True

        return [(Signal.QUEUE_ABANDON, facts)]

    def _queue_leave(self, call: Call, h: Headers, now: float) -> list[Step]:
        return [(Signal.QUEUE_LEAVE, _nothing)]

    def _agent_connect(self, call: Call, h: Headers, now: float) -> list[Step]:
        def facts() -> None:
            call.bridged_at = now
            call.agent = h.get("MemberName") or h.get("Interface")
            call.queue = h.get("Queue") or call.queue

        return [(Signal.AGENT_CONNECT, facts)]

    def _bridge_enter(self, call: Call, h: Headers, now: float) -> list[Step]:
        """A personal callback's customer entering the bridge with the waiting agent (queue
        calls connect with ``AgentConnect``; their ``BridgeEnter`` says nothing more)."""
        agent = call.plan.agent
        if agent is None or call.bridged_at is not None or h.get("Uniqueid") != call.channel_id:
            return []

        def facts() -> None:
            call.bridged_at = now
            call.agent = call.plan.agent_name or agent

        return [(Signal.AGENT_CONNECT, facts)]

    def _agent_complete(self, call: Call, h: Headers, now: float) -> list[Step]:
        def facts() -> None:
            call.vars["AGENT_TALKTIME"] = h.get("TalkTime") or ""
            call.vars["AGENT_COMPLETE_REASON"] = h.get("Reason") or ""

        return [(Signal.AGENT_COMPLETE, facts)]

    def _answer(self, call: Call, now: float) -> Facts:
        def facts() -> None:
            if call.answered_at is None:
                call.answered_at = now
                if call.plan.amd == "off":
                    call.greeting_end_at = now

        return facts

    def _ringing(self, call: Call, now: float) -> Facts:
        def facts() -> None:
            if call.ringing_at is None:
                call.ringing_at = now

        return facts

    def _varset(self, call: Call, h: Headers, now: float) -> list[Step]:
        var, value = h.get("Variable") or "", h.get("Value") or ""
        if var == "AMDSTATUS":

            def amd() -> None:
                call.amd_status = value
                call.greeting_end_at = now

            return [(Signal.AMD, amd)]
        if var == "AMDCAUSE":

            def amd_cause() -> None:
                call.amd_cause = value

            return [(Signal.VAR, amd_cause)]
        if var == "IVR_RESULT":

            def ivr_result() -> None:
                call.ivr_result = value
                call.via_ivr = True

            return [(Signal.IVR_RESULT, ivr_result)]
        if var == "DIALER_MSG" and value == "played":

            def played() -> None:
                call.message_played_at = now

            return [(Signal.MESSAGE_PLAYED, played)]
        if var in KEPT_VARS:

            def kept() -> None:
                call.vars[var] = value

            return [(Signal.VAR, kept)]
        return []

    # -- the machine ---------------------------------------------------------------------

    @staticmethod
    def _legal(call: Call, signal: Signal) -> AttemptState:
        after = TRANSITIONS.get((call.state, signal))
        if after is None:
            raise IllegalTransition("call", call.state, signal)
        return after

    @staticmethod
    def _move(
        call: Call, signal: Signal, after: AttemptState, now: float, out: list[Update]
    ) -> None:
        before = call.state
        if after is not before:
            call.state = after
            out.append(Transition(call.attempt_id, before, after, signal, now))

    def _step(self, call: Call, signal: Signal, now: float, out: list[Update]) -> None:
        self._move(call, signal, self._legal(call, signal), now, out)

    def _maybe_end(self, call: Call, now: float, out: list[Update]) -> None:
        if call.state is S.ENDED:
            return
        legs_down = bool(call.legs) and not any(call.legs.values())
        known = call.originate_ok is not None or call.answered_at is not None
        if legs_down and known:
            self._finish(call, now, out, reason="hangup")
        elif not call.legs and call.originate_ok is False:
            # events come before the OriginateResponse: no leg by now means none will come
            self._finish(call, now, out, reason="originate failed, no channel")

    def _finish(
        self,
        call: Call,
        now: float,
        out: list[Update],
        *,
        reason: str,
        outcome: Outcome | None = None,
    ) -> None:
        if call.state is S.ENDED:
            return
        self._step(call, Signal.END, now, out)
        call.ended_at = now
        call.end_reason = reason
        facts: OutcomeFacts | None = None
        if outcome is None:
            facts = call.outcome_facts()
            outcome = decide(facts).outcome
        call.outcome = decided = outcome
        self._forget(call)
        detail = {k: v for k, v in call.vars.items() if v}
        if call.amd_cause:
            detail["AMDCAUSE"] = call.amd_cause
        if call.bridged_at is not None and call.greeting_end_at is not None and not call.via_ivr:
            # answer-to-agent delay (the 2-second rule is enforced by the queue timeout; this
            # lets the abandon statistics audit it)
            detail["bridge_delay_s"] = f"{call.bridged_at - call.greeting_end_at:.3f}"
        out.append(
            Finished(
                attempt_id=call.attempt_id,
                outcome=decided,
                end_reason=reason,
                originated_at=call.originated_at,
                ringing_at=call.ringing_at,
                answered_at=call.answered_at,
                greeting_end_at=call.greeting_end_at,
                queued_at=call.queued_at,
                bridged_at=call.bridged_at,
                message_played_at=call.message_played_at,
                ended_at=now,
                originate_reason=call.originate_reason,
                hangup_cause=call.hangup_cause,
                amd_status=call.amd_status,
                queue=call.queue,
                agent=call.agent,
                result=call.ivr_result,
                live_answer=call.live_answer,
                resynced=call.resynced,
                detail=detail,
                facts=facts,
            )
        )

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.attempt_id, None)
        for key in (call.channel_id, call.channel_id + ";2", call.other_channel_id):
            if key and self._by_uid.get(key) == call.attempt_id:
                del self._by_uid[key]
        if call.action_id and self._by_action.get(call.action_id) == call.attempt_id:
            del self._by_action[call.action_id]

    # -- reconnect -------------------------------------------------------------------------

    def mark_disconnected(self, now: float) -> None:
        """The AMI connection dropped: events from here to the resync may be lost."""
        self.reconnect_epoch = now

    def reconcile(
        self,
        channels: Sequence[Event],
        now: float,
        variables: Mapping[str, Mapping[str, str]] | None = None,
    ) -> list[Update]:
        """Resync from a ``CoreShowChannels`` listing taken after a reconnect.

        An attempt with a leg in the listing is followed again (its state caught up from the
        listing: ``Up``, the application ``AGI``/``Queue``, a bridge). One with no leg listed
        and no event since the disconnect is gone without a trace: ``unknown`` - unless its
        ``OriginateResponse`` had already said it was never answered, which is enough to
        know its outcome. ``variables`` (uniqueid -> name -> value, from ``Status`` with
        ``Variables:``) restores facts whose ``VarSet`` was lost (AMD, IVR result, ...).
        """
        listed: dict[str, Event] = {}
        for ev in channels:
            uid = ev.headers.get("Uniqueid")
            if uid:
                listed[uid] = ev
        epoch = self.reconnect_epoch if self.reconnect_epoch is not None else now
        out: list[Update] = []
        for call in list(self.calls.values()):
            mine = [ev for uid, ev in listed.items() if self._by_uid.get(uid) == call.attempt_id]
            if mine:
                self._catch_up(call, mine, now, out)
                for ev in mine:
                    uid = ev.headers.get("Uniqueid") or ""
                    self._catch_up_vars(call, (variables or {}).get(uid, {}), now)
                self._maybe_end(call, now, out)
                continue
            if call.last_event_at is not None and call.last_event_at >= epoch:
                continue  # it spoke since the reconnect: its own events will end it
            if call.originate_ok is False:
                call.legs = {uid: False for uid in call.legs}
                self._finish(call, now, out, reason="resync: gone after a failed originate")
            else:
                self._finish(call, now, out, reason="resync: no trace", outcome=Outcome.UNKNOWN)
        self.reconnect_epoch = None
        return out

    def _catch_up(self, call: Call, mine: list[Event], now: float, out: list[Update]) -> None:
        call.resynced = True
        # The listing is older than the events read while the resync's actions ran: a leg
        # whose Hangup was read since is gone for good (a uniqueid never comes back), and no
        # later event would end a call the listing brought back to life.
        shown = {ev.headers.get("Uniqueid") or "" for ev in mine}
        listed_uids = {uid for uid in shown if call.legs.get(uid) is not False}
        for uid in list(call.legs):
            if uid not in listed_uids and call.legs[uid]:
                call.legs[uid] = False  # hung up while we were away
                if call.first_down is None:
                    call.first_down = uid
        for uid in listed_uids:
            call.legs[uid] = True
        if not any(call.legs.values()) and call.all_down_at is None:
            call.all_down_at = now  # the timers end it if nothing else tells its outcome
        up = any(ev.headers.get("ChannelState") == STATE_UP for ev in mine)
        apps = {ev.headers.get("Application") or "" for ev in mine}
        bridged = any(
            (ev.headers.get("BridgeId") or ev.headers.get("BridgeID"))
            and ev.headers.get("Application") in ("Queue", "Bridge")
            for ev in mine
        )
        wanted: list[Signal] = []
        if up and call.state in (S.DIALING, S.RINGING):
            self._answer(call, now)()
            wanted.append(Signal.ANSWER)
        if "AGI" in apps and call.state in (S.DIALING, S.RINGING, S.ANSWERED):
            call.via_ivr = True
            wanted.append(Signal.AGI_START)
        if "Queue" in apps and call.queued_at is None:
            call.queued_at = now
            wanted.append(Signal.QUEUE_JOIN)
        if bridged and call.bridged_at is None:
            call.bridged_at = now
            wanted.append(Signal.AGENT_CONNECT)
        for signal in wanted:
            self._step(call, signal, now, out)

    def _catch_up_vars(self, call: Call, values: Mapping[str, str], now: float) -> None:
        """Facts from channel variables, for what happened while we were away."""
        amd = values.get("AMDSTATUS")
        if amd and call.amd_status is None:
            call.amd_status = amd
            call.greeting_end_at = call.greeting_end_at or now
        if values.get("AMDCAUSE") and call.amd_cause is None:
            call.amd_cause = values["AMDCAUSE"]
        if values.get("IVR_RESULT") and call.ivr_result is None:
            call.ivr_result = values["IVR_RESULT"]
            call.via_ivr = True
        if values.get("DIALER_MSG") == "played" and call.message_played_at is None:
            call.message_played_at = now
        for name in KEPT_VARS:
            if values.get(name) and name not in call.vars:
                call.vars[name] = values[name]


#: What each AMI event we follow means: its reader turns it into steps (signal, facts).
_READERS: dict[str, Callable[[CallTracker, Call, Headers, float], list[Step]]] = {
    "Newchannel": CallTracker._new_channel,
    "Newstate": CallTracker._new_state,
    "DialBegin": CallTracker._dial_begin,
    "OriginateResponse": CallTracker._originate_response,
    "Hangup": CallTracker._hangup,
    "VarSet": CallTracker._varset,
    "Newexten": CallTracker._new_exten,
    "QueueCallerJoin": CallTracker._queue_join,
    "QueueCallerAbandon": CallTracker._queue_abandon,
    "QueueCallerLeave": CallTracker._queue_leave,
    "AgentConnect": CallTracker._agent_connect,
    "AgentComplete": CallTracker._agent_complete,
    "BridgeEnter": CallTracker._bridge_enter,
}

#: Channel variables a resync asks ``Status`` for (``Variables:``).
RESYNC_VARIABLES = (
    "AMDSTATUS",
    "AMDCAUSE",
    "IVR_RESULT",
    "IVR_NEXT",
    "QUEUESTATUS",
    "DIALER_MSG",
    "AGISTATUS",
    "DIALER_IVR",
)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
