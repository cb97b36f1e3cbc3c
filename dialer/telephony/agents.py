"""The agent pool: each queue member's state, from QueueStatus and queue events.

Why this file exists: AMI never says "this agent is free now". It reports ringing
(``AgentCalled``), bridging (``AgentConnect``), the end of a call (``AgentComplete``), pauses
and membership, and a device status that is unreliable for Local-channel members (a ringing
Local member shows ``Status: 2``). ``Status: 4`` (INVALID: the device does not exist, e.g. a
Local member whose extension is missing, or a phone whose channel driver is absent) and
``Status: 5`` (UNAVAILABLE: a phone not registered) are members app_queue never rings: they
are ``UNAVAILABLE``, never idle agents (on a real Asterisk 22, counting them as idle sent
every answered customer to a queue that rang nobody). Wrap-up is
invisible on AMI: it is inferred from ``AgentComplete`` plus the queue's ``wrapup_s``.

Rules of this file:
- One transition table (``TRANSITIONS``) owns the call activity of an agent; an event with no
  transition raises ``IllegalTransition``. The pool catches it, logs it, and re-anchors the
  agent on what the event proves (AMI events are authoritative over our model).
- Pause and membership are flags beside the activity; the state shown to supervisors and
  pacing is derived from all three (``effective_state``).
- Pure: the clock is passed in (monotonic seconds); no I/O.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dialer.errors import IllegalTransition

log = logging.getLogger(__name__)


class AgentState(enum.StrEnum):
    """What supervisors and pacing see of an agent (shown on the floor view)."""

    IDLE = "idle"
    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrapup"
    PAUSED = "paused"
    UNAVAILABLE = "unavailable"  # a member whose device is INVALID (4) or UNAVAILABLE (5)
    LOGGED_OUT = "logged_out"


#: The ``QueuePause`` reason of a wrap-up the agent's desktop holds until the disposition is
#: saved: app_queue rings nobody paused, and pacing sees the member in wrap-up, not on a break.
WRAPUP_PAUSE = "wrapup"
#: The ``QueuePause`` reason of an agent the dialer holds for a personal callback (their phone
#: rung first, then the customer): app_queue offers them no other call, and pacing and the
#: supervisors see them busy with that call.
CALLBACK_PAUSE = "callback"

#: States in which an agent is not on the floor: app_queue rings nobody in them, so pacing,
#: occupancy and the console never count them as agents.
OFF_FLOOR = frozenset({AgentState.UNAVAILABLE, AgentState.LOGGED_OUT})


class Activity(enum.StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrapup"


class AgentEvent(enum.StrEnum):
    CALLED = "AgentCalled"
    RING_NO_ANSWER = "AgentRingNoAnswer"
    CONNECT = "AgentConnect"
    COMPLETE = "AgentComplete"
    WRAPUP_DONE = "wrapup_done"  # our timer: AgentComplete + wrapup_s


A, E = Activity, AgentEvent
TRANSITIONS: dict[tuple[Activity, AgentEvent], Activity] = {
    (A.IDLE, E.CALLED): A.RINGING,
    (A.RINGING, E.CALLED): A.RINGING,  # ringall / another queue rings it too
    (A.WRAPUP, E.CALLED): A.RINGING,  # our wrap-up estimate was longer than the queue's
    (A.RINGING, E.RING_NO_ANSWER): A.IDLE,
    (A.IDLE, E.RING_NO_ANSWER): A.IDLE,  # ringall: another member answered first
    (A.RINGING, E.CONNECT): A.TALKING,
    (A.IDLE, E.CONNECT): A.TALKING,
    (A.WRAPUP, E.CONNECT): A.TALKING,
    (A.TALKING, E.COMPLETE): A.WRAPUP,
    (A.WRAPUP, E.WRAPUP_DONE): A.IDLE,
    (A.IDLE, E.WRAPUP_DONE): A.IDLE,
}

# QueueMember/QueueMemberStatus "Status" (ast_device_state)
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY, DEVICE_INVALID, DEVICE_UNAVAILABLE = 1, 2, 3, 4, 5
DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 6, 7, 8
#: app_queue rings no member in these device states (ast_device_state)
UNREACHABLE_STATUSES = frozenset({DEVICE_INVALID, DEVICE_UNAVAILABLE})


def next_activity(current: Activity, event: AgentEvent) -> Activity:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition("agent", current, event) from None


@dataclass
class Agent:
    interface: str
    name: str
    queues: set[str] = field(default_factory=set)
    activity: Activity = Activity.IDLE
    paused: bool = False
    pause_reason: str | None = None
    logged_in: bool = True
    device_status: int = DEVICE_NOT_INUSE  # the last QueueMember(Status) "Status"
    since: float = 0.0  # clock seconds when effective_state last changed
    wrapup_until: float | None = None
    calls_handled: int = 0
    #: held by this dialer for a personal callback (before the switch shows the pause)
    reserved: bool = False
    _last_state: AgentState = AgentState.IDLE

    @property
    def effective_state(self) -> AgentState:
        if not self.logged_in:
            return AgentState.LOGGED_OUT
        if self.activity is Activity.TALKING or self.reserved:
            return AgentState.TALKING
        if self.paused and self.pause_reason == CALLBACK_PAUSE:
            return AgentState.TALKING
        if self.device_status in UNREACHABLE_STATUSES:
            return AgentState.UNAVAILABLE
        if self.activity is Activity.RINGING:
            return AgentState.RINGING
        if self.paused:  # the desktop holds wrap-up as a pause until the disposition is saved
            return AgentState.WRAPUP if self.pause_reason == WRAPUP_PAUSE else AgentState.PAUSED
        if self.activity is Activity.WRAPUP:
            return AgentState.WRAPUP
        return AgentState.IDLE


class AgentPool:
    """All agents of the queues a dialer serves, keyed by member interface."""

    def __init__(
        self, wrapup_s: Mapping[str, float] | None = None, default_wrapup_s: float = 10.0
    ) -> None:
        self.agents: dict[str, Agent] = {}
        self.wrapup_s = dict(wrapup_s or {})
        self.default_wrapup_s = default_wrapup_s
        self.anomalies = 0  # illegal transitions seen (and re-anchored)

    # --- feeding -----------------------------------------------------------------------

    def load_status(self, members: Iterable[Mapping[str, str]], now: float) -> None:
        """Rebuild from ``QueueStatus`` ``QueueMember`` list events (at start, after resync)."""
        seen: set[str] = set()
        for m in members:
            iface = m.get("StateInterface") or m.get("Location") or m.get("Interface") or ""
            agent = self._agent(iface, m.get("Name") or m.get("MemberName") or iface, now)
            if iface not in seen:  # first listing of this agent in this snapshot: reset queues
                agent.queues = set()
                seen.add(iface)
            agent.queues.add(m.get("Queue", ""))
            self._apply_flags(agent, m, now)
            if m.get("InCall") == "1" and agent.activity is Activity.IDLE:
                agent.activity = Activity.TALKING
        for iface in set(self.agents) - seen:
            self.agents[iface].logged_in = False
        self._touch_all(now)

    def on_event(self, name: str, fields: Mapping[str, str], now: float) -> Agent | None:
        """Apply one AMI event; returns the agent it concerned, if any."""
        iface = fields.get("StateInterface") or fields.get("Interface") or ""
        if not iface:
            return None
        if name == "QueueMemberRemoved":
            agent = self.agents.get(iface)
            if agent is not None:
                agent.queues.discard(fields.get("Queue", ""))
                if not agent.queues:
                    agent.logged_in = False
                self._touch(agent, now)
            return agent
        agent = self._agent(iface, fields.get("MemberName") or iface, now)
        if "Queue" in fields and name != "QueueMemberRemoved":
            agent.queues.add(fields["Queue"])
        if name in ("QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause"):
            self._apply_flags(agent, fields, now)
        elif name in {e.value for e in AgentEvent}:
            event = AgentEvent(name)
            self._step(agent, event, now)
            if event is AgentEvent.COMPLETE:
                agent.calls_handled += 1
                wrap = self.wrapup_s.get(fields.get("Queue", ""), self.default_wrapup_s)
                agent.wrapup_until = now + wrap
                if wrap <= 0:
                    self._step(agent, AgentEvent.WRAPUP_DONE, now)
        self._touch(agent, now)
        return agent

    def tick(self, now: float) -> None:
        """End inferred wrap-ups whose time has come."""
        for agent in self.agents.values():
            if (
                agent.activity is Activity.WRAPUP
                and agent.wrapup_until is not None
                and now >= agent.wrapup_until
            ):
                self._step(agent, AgentEvent.WRAPUP_DONE, now)
                agent.wrapup_until = None
                self._touch(agent, now)

    # --- reading -----------------------------------------------------------------------

    def in_queue(self, queue: str | None) -> list[Agent]:
        return [a for a in self.agents.values() if queue is None or queue in a.queues]

    def count(self, state: AgentState, queue: str | None = None) -> int:
        return sum(1 for a in self.in_queue(queue) if a.effective_state is state)

    def logged_in(self, queue: str | None = None) -> int:
        """Agents on the floor: members app_queue can ring (not logged out nor unreachable)."""
        return sum(1 for a in self.in_queue(queue) if a.effective_state not in OFF_FLOOR)

    # --- internals ---------------------------------------------------------------------

    def _agent(self, iface: str, name: str, now: float) -> Agent:
        agent = self.agents.get(iface)
        if agent is None:
            agent = Agent(interface=iface, name=name, since=now)
            self.agents[iface] = agent
        return agent

    def _apply_flags(self, agent: Agent, fields: Mapping[str, str], now: float) -> None:
        if "Paused" in fields:
            agent.paused = fields["Paused"] == "1"
            agent.pause_reason = (fields.get("PausedReason") or None) if agent.paused else None
        status = fields.get("Status")
        if status is not None and status.isdigit():
            agent.device_status = int(status)
        agent.logged_in = True

    def _step(self, agent: Agent, event: AgentEvent, now: float) -> None:
        try:
            agent.activity = next_activity(agent.activity, event)
        except IllegalTransition as exc:
            self.anomalies += 1
            log.warning("agent %s: %s; re-anchoring on the event", agent.name, exc)
            agent.activity = {
                AgentEvent.CALLED: Activity.RINGING,
                AgentEvent.RING_NO_ANSWER: Activity.IDLE,
                AgentEvent.CONNECT: Activity.TALKING,
                AgentEvent.COMPLETE: Activity.WRAPUP,
                AgentEvent.WRAPUP_DONE: Activity.IDLE,
            }[event]

    def _touch(self, agent: Agent, now: float) -> None:
        state = agent.effective_state
        if state is not agent._last_state:
            agent._last_state = state
            agent.since = now

    def _touch_all(self, now: float) -> None:
        for agent in self.agents.values():
            self._touch(agent, now)
