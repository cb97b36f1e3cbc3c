from __future__ import annotations

import pytest

from dialer.errors import IllegalTransition
from dialer.floor.view import AgentState
from dialer.telephony.agents import Activity, AgentEvent, AgentPool, next_activity

IFACE = "Local/agent1@agent-sim/n"


def member(**kw: str) -> dict[str, str]:
    base = {
        "Queue": "agents",
        "Name": "Agent One",
        "StateInterface": IFACE,
        "Status": "1",
        "Paused": "0",
        "InCall": "0",
    }
    base.update(kw)
    return base


def ev(**kw: str) -> dict[str, str]:
    base = {"Queue": "agents", "MemberName": "Agent One", "Interface": IFACE}
    base.update(kw)
    return base


def test_illegal_transition_raises() -> None:
    with pytest.raises(IllegalTransition):
        next_activity(Activity.IDLE, AgentEvent.COMPLETE)


def test_call_cycle_with_inferred_wrapup() -> None:
    pool = AgentPool(wrapup_s={"agents": 5})
    pool.load_status([member()], now=0)
    assert pool.count(AgentState.IDLE) == 1
    pool.on_event("AgentCalled", ev(), now=1)
    # A ringing Local member reports Status 2; that must not log it out or make it idle.
    pool.on_event("QueueMemberStatus", ev(Status="2", Paused="0"), now=1.1)
    assert pool.agents[IFACE].effective_state is AgentState.RINGING
    pool.on_event("AgentConnect", ev(), now=3)
    assert pool.agents[IFACE].effective_state is AgentState.TALKING
    pool.on_event("AgentComplete", ev(TalkTime="11", Reason="agent"), now=14)
    # Wrap-up is invisible on AMI: Status 1 arrives, yet the agent is still wrapping up.
    pool.on_event("QueueMemberStatus", ev(Status="1", Paused="0"), now=14.1)
    a = pool.agents[IFACE]
    assert a.effective_state is AgentState.WRAPUP and a.since == 14
    pool.tick(18.9)
    assert a.effective_state is AgentState.WRAPUP
    pool.tick(19.0)
    assert a.effective_state is AgentState.IDLE and a.since == 19.0
    assert a.calls_handled == 1


def test_pause_membership_and_anomaly() -> None:
    pool = AgentPool()
    pool.on_event("QueueMemberAdded", ev(Status="1", Paused="0"), now=0)
    assert pool.count(AgentState.IDLE, "agents") == 1
    pool.on_event("QueueMemberPause", ev(Status="1", Paused="1", PausedReason="break"), now=1)
    a = pool.agents[IFACE]
    assert a.effective_state is AgentState.PAUSED and a.pause_reason == "break"
    pool.on_event("QueueMemberRemoved", ev(), now=2)
    assert a.effective_state is AgentState.LOGGED_OUT
    assert pool.logged_in() == 0
    pool2 = AgentPool()
    pool2.load_status([member()], now=0)
    pool2.on_event("AgentComplete", ev(), now=1)  # missed the connect: re-anchored, counted
    assert pool2.anomalies == 1
    assert pool2.agents[IFACE].effective_state is AgentState.WRAPUP


@pytest.mark.parametrize("status", ["4", "5"])
def test_invalid_and_unavailable_members_are_never_agents(status: str) -> None:
    """app_queue rings no member whose device is INVALID (4) or UNAVAILABLE (5): such a member
    is not an idle agent, not on the floor, and comes back when its device does."""
    pool = AgentPool()
    pool.load_status([member(Status=status)], now=0)
    a = pool.agents[IFACE]
    assert a.effective_state is AgentState.UNAVAILABLE
    assert pool.count(AgentState.IDLE, "agents") == 0 and pool.logged_in("agents") == 0
    pool.on_event("QueueMemberPause", ev(Status=status, Paused="1", PausedReason="x"), now=1)
    assert a.effective_state is AgentState.UNAVAILABLE
    pool.on_event("QueueMemberStatus", ev(Status="1", Paused="0"), now=2)
    assert a.effective_state is AgentState.IDLE and pool.logged_in("agents") == 1
    pool.on_event("QueueMemberStatus", ev(Status=status), now=3)
    assert pool.count(AgentState.IDLE, "agents") == 0
