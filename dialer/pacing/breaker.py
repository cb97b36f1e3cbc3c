"""The abandon circuit breaker: stop dialling a campaign whose answered customers are being
abandoned while the dialer believes agents are free.

Why: pacing trusts the agent pool. When the pool is wrong - members whose devices app_queue
cannot ring, agents who never pick up, a queue name that does not match - every answered
customer waits out the hold limit and is abandoned, in any mode, while pacing keeps seeing
idle agents and keeps dialling (seen on a real Asterisk 22: 10 of 10 customers abandoned in
progressive mode). The abandon cap reacts only after the damage is in the window. The breaker
reacts to the pattern itself: ``threshold`` abandons in a row, each with at least one agent
believed free at that moment, and no call bridged in between.

States (one table, ``TRANSITIONS``; an event with no transition raises):
- ``closed``: dialling as pacing decides; abandons with free agents are counted, a bridged
  call clears the count.
- ``open``: no dialling. It stays open until the floor gives a reason to believe again: an
  agent of the queue takes a call (``AgentConnect``), or the queue's members change (added,
  removed, device state or pause changed) - then ``half_open`` - or a supervisor resets it.
- ``half_open``: one probe call at a time. Bridged: ``closed``. Abandoned: ``open`` again.
Pure: times are passed in; no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dialer.errors import IllegalTransition


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(enum.StrEnum):
    TRIP = "trip"  # the threshold of abandons with free agents was reached
    PROBE_ABANDONED = "probe_abandoned"
    BRIDGED = "bridged"  # a call of the campaign reached an agent
    AGENT_ACTIVITY = "agent_activity"  # AgentConnect on the queue
    FLOOR_CHANGED = "floor_changed"  # members added/removed, device state or pause changed
    RESET = "reset"  # a supervisor


S, E = BreakerState, BreakerEvent
TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (S.CLOSED, E.TRIP): S.OPEN,
    (S.CLOSED, E.BRIDGED): S.CLOSED,
    (S.CLOSED, E.AGENT_ACTIVITY): S.CLOSED,
    (S.CLOSED, E.FLOOR_CHANGED): S.CLOSED,
    (S.CLOSED, E.RESET): S.CLOSED,
    (S.OPEN, E.AGENT_ACTIVITY): S.HALF_OPEN,
    (S.OPEN, E.FLOOR_CHANGED): S.HALF_OPEN,
    (S.OPEN, E.BRIDGED): S.CLOSED,  # a call placed before it opened reached an agent
    (S.OPEN, E.RESET): S.CLOSED,
    (S.HALF_OPEN, E.BRIDGED): S.CLOSED,
    (S.HALF_OPEN, E.PROBE_ABANDONED): S.OPEN,
    (S.HALF_OPEN, E.AGENT_ACTIVITY): S.HALF_OPEN,
    (S.HALF_OPEN, E.FLOOR_CHANGED): S.HALF_OPEN,
    (S.HALF_OPEN, E.RESET): S.CLOSED,
}


def next_state(current: BreakerState, event: BreakerEvent) -> BreakerState:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition("breaker", current, event) from None


@dataclass
class AbandonBreaker:
    """One campaign's breaker. ``allowed()`` caps what pacing may dial now."""

    threshold: int = 3
    state: BreakerState = BreakerState.CLOSED
    strikes: int = 0  # abandons with free agents since the last bridged call
    since: float | None = None  # when the current state began
    reason: str | None = None
    probes_in_flight: int = 0
    trips: int = 0  # times it opened (for /metrics)

    @property
    def is_open(self) -> bool:
        return self.state is not BreakerState.CLOSED

    def allowed(self, wanted: int) -> int:
        """How many of ``wanted`` calls may be placed now."""
        if self.state is BreakerState.CLOSED:
            return wanted
        if self.state is BreakerState.OPEN:
            return 0
        return max(0, min(wanted, 1 - self.probes_in_flight))

    def placed(self, n: int) -> None:
        """``n`` calls were placed (probes while half open)."""
        if self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight += n

    def on_abandon(self, now: float, *, free_agents: int, probe: bool) -> bool:
        """An answered call of the campaign was abandoned. Returns True if this opened it."""
        if probe and self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            self._go(BreakerEvent.PROBE_ABANDONED, now)
            self.reason = f"the probe call was abandoned too ({free_agents} agent(s) believed free)"
            self.trips += 1
            return True
        if free_agents <= 0:
            return False  # agents really were busy: the abandon cap's business, not ours
        self.strikes += 1
        if self.state is BreakerState.CLOSED and self.strikes >= self.threshold:
            self._go(BreakerEvent.TRIP, now)
            self.reason = (
                f"{self.strikes} answered customers in a row abandoned while "
                f"{free_agents} agent(s) looked free: the queue's agents are not taking calls"
            )
            self.trips += 1
            return True
        return False

    def on_other_end(self, *, probe: bool) -> None:
        """A call of the campaign ended without reaching the queue (busy, no answer, ...)."""
        if probe:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)

    def on_bridged(self, now: float, *, probe: bool = False) -> None:
        if probe:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
        self.strikes = 0
        if self.state is not BreakerState.CLOSED:
            self.reason = None
        self._go(BreakerEvent.BRIDGED, now)

    def on_floor(self, now: float, event: BreakerEvent) -> None:
        """Agent activity or a change of the queue's members."""
        self._go(event, now)

    def hold(self, now: float, reason: str) -> None:
        """Start open (the store says it was open when the last run stopped)."""
        self.state = BreakerState.OPEN
        self.since = now
        self.reason = reason

    def reset(self, now: float) -> None:
        self.strikes = 0
        self.reason = None
        self.probes_in_flight = 0
        self._go(BreakerEvent.RESET, now)

    def _go(self, event: BreakerEvent, now: float) -> None:
        new = next_state(self.state, event)
        if new is not self.state:
            self.state = new
            self.since = now
            if new is BreakerState.CLOSED:
                self.probes_in_flight = 0
