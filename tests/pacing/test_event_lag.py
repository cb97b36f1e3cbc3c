"""Late events: while the switch's events are read later than ``pacing.max_event_lag_s``, no
agent policy dials more than progressive would; under it, nothing changes. And the lag meter
that feeds them (``dialer.telephony.lag``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.lists.campaigns import Pacing
from dialer.pacing import AgentState, CallInFlight, PacingInput, cold_start, make_policy
from dialer.pacing.policies import EVENTS_LATE
from dialer.telephony.lag import EventLag

AGENT_POLICIES = ("predictive", "power", "adaptive-baseline", "erlang-c")
SETTINGS = Pacing(calls_per_second=1000, max_lines_per_agent=5, power_ratio=3.0)


def progressive(inp: PacingInput) -> int:
    """One call per idle agent not covered by a call in flight (at least none)."""
    return max(inp.idle_agents - inp.calls_in_flight, 0)


def build(
    agents: list[tuple[AgentState, float]],
    calls: list[CallInFlight],
    lag: float,
    *,
    now: float = 100.0,
    pacing: Pacing = SETTINGS,
) -> PacingInput:
    est = dataclasses.replace(cold_start(pacing), samples=400)  # past the warm-up
    return PacingInput.build(now, agents, calls, est, pacing, event_lag_s=lag)


agent_lists = st.lists(
    st.tuples(st.sampled_from(list(AgentState)), st.floats(0, 600)), min_size=0, max_size=40
)
call_lists = st.lists(
    st.builds(CallInFlight, st.floats(0, 30), st.booleans()), min_size=0, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(AGENT_POLICIES),
    agents=agent_lists,
    calls=call_lists,
    lag=st.floats(1.0, 120.0, exclude_min=True),
    history=st.lists(st.floats(0.1, 30), min_size=0, max_size=5),
)
def test_events_read_late_never_dial_more_than_progressive(
    name: str,
    agents: list[tuple[AgentState, float]],
    calls: list[CallInFlight],
    lag: float,
    history: list[float],
) -> None:
    policy = make_policy(name)
    now = 100.0
    for step in history:  # some feedback state first, on time
        now += step
        policy.decide(build(agents, calls, 0.0, now=now))
    inp = build(agents, calls, lag, now=now + 1.0)
    assert inp.events_late
    assert policy.decide(inp) <= progressive(inp)
    assert policy.mode(inp) == EVENTS_LATE


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(AGENT_POLICIES),
    agents=agent_lists,
    calls=call_lists,
    lag=st.floats(0.0, 1.0),
)
def test_events_on_time_change_nothing(
    name: str, agents: list[tuple[AgentState, float]], calls: list[CallInFlight], lag: float
) -> None:
    inp = build(agents, calls, lag)
    assert not inp.events_late
    assert make_policy(name).decide(inp) == make_policy(name).decide(build(agents, calls, 0.0))
    assert make_policy(name).mode(inp) != EVENTS_LATE


def test_the_limit_is_the_campaigns_setting_and_progressive_is_not_relabelled() -> None:
    agents = [(AgentState.IDLE, 5.0)] * 6 + [(AgentState.TALKING, 200.0)] * 14
    strict = Pacing(calls_per_second=1000, max_lines_per_agent=5, max_event_lag_s=0.2)
    fresh = make_policy("predictive").decide(build(agents, [], 0.5))
    assert fresh > 6  # predictive dials ahead of the agents about to finish ...
    assert make_policy("predictive").decide(build(agents, [], 0.5, pacing=strict)) == 6
    pol = make_policy("progressive")
    inp = build(agents, [], 30.0)
    assert (pol.decide(inp), pol.mode(inp)) == (6, "progressive")
    assert make_policy("broadcast").mode(inp) == "broadcast"  # no agents: not concerned
    with pytest.raises(ValueError):
        Pacing(max_event_lag_s=0)


def test_lag_is_the_delay_above_the_least_one_seen() -> None:
    lag = EventLag(hold_s=10.0)
    assert (lag.lag_s(0.0), lag.floor_s) == (0.0, 0.0)
    # the switch's clock is 5 s behind ours and events take 0.01 s to be read: lag ~0
    assert lag.observe(1000.0, 1005.01) == 0.0
    assert lag.observe(1001.0, 1006.01) == pytest.approx(0.0)
    assert lag.floor_s == pytest.approx(5.01)
    # the loop stalls: an event raised at 1002 is read 3 s later than usual
    assert lag.observe(1002.0, 1010.01) == pytest.approx(3.0)
    assert lag.observe(1008.0, 1013.02) == pytest.approx(0.01)
    assert lag.last_s == pytest.approx(0.01)
    # the worst of the last 10 s holds until it is 10 s old, then the on-time ones show
    assert lag.lag_s(1019.0) == pytest.approx(3.0)
    assert lag.lag_s(1020.5) == pytest.approx(0.01)
    assert lag.lag_s(1040.0) == 0.0
    assert lag.max_s == pytest.approx(3.0)
    assert lag.take_worst() == pytest.approx(3.0) and lag.take_worst() == 0.0


def test_a_clock_that_steps_is_followed_within_the_floor_window() -> None:
    lag = EventLag(hold_s=1.0, floor_window_s=120.0, floor_bucket_s=30.0)
    t = 0.0
    for _ in range(10):
        t += 10.0
        lag.observe(t, t + 0.01)
    # our clock steps 2 s ahead: every event looks 2 s late ...
    late = [lag.observe(t + i, t + i + 2.01) for i in range(1, 200)]
    assert late[0] == pytest.approx(2.0)
    # ... until the steps' delays are the least of the window
    assert late[-1] == pytest.approx(0.0)
