"""The abandon circuit breaker (dialer.pacing.breaker): its table, the trip rule, the probe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.errors import IllegalTransition
from dialer.pacing.breaker import (
    TRANSITIONS,
    AbandonBreaker,
    BreakerEvent,
    BreakerState,
    next_state,
)


def test_table_is_total_for_what_the_floor_sends() -> None:
    for state in BreakerState:
        for event in (BreakerEvent.BRIDGED, BreakerEvent.RESET, BreakerEvent.FLOOR_CHANGED):
            assert (state, event) in TRANSITIONS
    with pytest.raises(IllegalTransition):
        next_state(BreakerState.OPEN, BreakerEvent.TRIP)


def test_three_abandons_with_free_agents_open_it_and_hold_dialling() -> None:
    b = AbandonBreaker(threshold=3)
    assert not b.on_abandon(1.0, free_agents=2, probe=False)
    assert not b.on_abandon(2.0, free_agents=2, probe=False)
    assert b.allowed(5) == 5
    assert b.on_abandon(3.0, free_agents=1, probe=False)
    assert b.state is BreakerState.OPEN and b.allowed(5) == 0
    assert b.reason and "3 answered customers" in b.reason


def test_abandons_with_busy_agents_are_the_caps_business() -> None:
    b = AbandonBreaker(threshold=3)
    for t in range(10):
        assert not b.on_abandon(float(t), free_agents=0, probe=False)
    assert b.state is BreakerState.CLOSED


def test_a_bridged_call_clears_the_count() -> None:
    b = AbandonBreaker(threshold=3)
    b.on_abandon(1.0, free_agents=1, probe=False)
    b.on_abandon(2.0, free_agents=1, probe=False)
    b.on_bridged(3.0)
    b.on_abandon(4.0, free_agents=1, probe=False)
    b.on_abandon(5.0, free_agents=1, probe=False)
    assert b.state is BreakerState.CLOSED


def test_one_probe_after_the_floor_changes_then_closed_or_open_again() -> None:
    b = AbandonBreaker(threshold=1)
    b.on_abandon(1.0, free_agents=1, probe=False)
    assert b.state is BreakerState.OPEN
    b.on_floor(2.0, BreakerEvent.FLOOR_CHANGED)
    assert b.state is BreakerState.HALF_OPEN and b.allowed(4) == 1
    b.placed(1)
    assert b.allowed(4) == 0  # one probe at a time
    assert b.on_abandon(3.0, free_agents=1, probe=True)
    assert b.state is BreakerState.OPEN and b.allowed(4) == 0
    b.on_floor(4.0, BreakerEvent.AGENT_ACTIVITY)
    b.placed(1)
    b.on_bridged(5.0, probe=True)
    assert b.state is BreakerState.CLOSED and b.allowed(4) == 4 and b.reason is None


@given(st.lists(st.tuples(st.sampled_from(["abandon", "bridged", "other"]), st.integers(0, 3))))
def test_never_more_than_one_probe_in_flight_while_not_closed(ops: list[tuple[str, int]]) -> None:
    b = AbandonBreaker(threshold=2)
    t = 0.0
    in_flight: list[bool] = []  # probe flags of calls placed
    for op, free in ops:
        t += 1.0
        n = b.allowed(3)
        if b.is_open:
            assert n <= 1 and b.probes_in_flight + n <= 1
        b.placed(n)
        in_flight += [b.state is BreakerState.HALF_OPEN] * n
        if not in_flight:
            in_flight.append(False)
        probe = in_flight.pop(0)
        if op == "abandon":
            b.on_abandon(t, free_agents=free, probe=probe)
        elif op == "bridged":
            b.on_bridged(t, probe=probe)
        else:
            b.on_other_end(probe=probe)
        if b.state is BreakerState.OPEN:
            b.on_floor(t, BreakerEvent.FLOOR_CHANGED)
