"""The agent pool and the abandon breaker on a real Asterisk 22: members app_queue cannot
ring (INVALID 4, UNAVAILABLE 5), paused members, members who ring and never answer, wrap-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.agents import AgentState

from .conftest import RealFloor, campaign, load, phone


def attempts(store: Store) -> list[Attempt]:
    with store.session() as s:
        rows = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        s.expunge_all()
    return rows


async def settle(floor: RealFloor, seconds: float = 1.5) -> None:
    await floor.core.wait_ready(10)
    await asyncio.sleep(seconds)


async def test_invalid_members_are_never_dialled_for(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    """The defect the real switch showed: members in device states 4 and 5 were idle agents,
    and 10 of 10 answered customers were abandoned. Now nobody is dialled, and the console
    says why."""
    load(
        store,
        tmp_path,
        campaign("ghost-run", "progressive", queue="ghosts"),
        [{"phone": phone("111", i)} for i in range(10)],
    )
    await real_floor.dialer.load_campaigns()
    task = asyncio.create_task(real_floor.dialer.run())
    await asyncio.sleep(6)
    agents = {a.name: a.state for a in real_floor.dialer.agents() if "ghosts" in a.queues}
    (snap,) = real_floor.dialer.campaigns()
    real_floor.dialer.stop()
    await task
    assert set(agents.values()) == {AgentState.UNAVAILABLE}, agents
    assert len(agents) == 3
    assert attempts(store) == []  # no customer dialled, so none abandoned
    assert snap.held_reason and "INVALID or UNAVAILABLE" in snap.held_reason


async def test_paused_and_wrapup_members(
    store: Store, tmp_path: Path, real_floor: RealFloor, asterisk
) -> None:
    await settle(real_floor)
    states = {a.name: a.state for a in real_floor.dialer.agents()}
    assert states["Agent 03"] is AgentState.PAUSED
    assert states["Agent 04"] is AgentState.IDLE
    # a call to the wrap-up queue: talking, then wrap-up (inferred: AMI does not show it)
    load(
        store,
        tmp_path,
        campaign("wrap", "progressive", queue="wrapq", pacing={"wrapup_s": 8}),
        [{"phone": phone("111", 1)}],
    )
    await real_floor.dialer.load_campaigns()
    seen: set[AgentState] = set()
    task = asyncio.create_task(real_floor.dialer.run(until_idle=True, quiet_s=2))
    for _ in range(120):
        await asyncio.sleep(0.1)
        seen |= {a.state for a in real_floor.dialer.agents() if a.name == "Agent 04"}
        if AgentState.WRAPUP in seen:
            break
    await asyncio.wait_for(task, 60)
    assert {AgentState.TALKING, AgentState.WRAPUP} <= seen
    (att,) = attempts(store)
    assert att.outcome == Outcome.AGENT_HANDLED and att.agent == "Agent 04"


async def test_breaker_holds_a_campaign_whose_agent_never_answers(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    """The only member rings and never picks up, so app_queue shows it idle between rings:
    pacing sees a free agent, and every answered customer waits out the hold limit. The abandon
    breaker opens after three such abandons in a row and the campaign stops dialling; the
    console and ``hopper explain`` say why. The member ringing and idle again is no floor
    change: no probe call is placed while nothing on the floor changed."""
    from dialer.lists import hopper
    from dialer.store.models import Campaign

    load(
        store,
        tmp_path,
        campaign("deaf-run", "progressive", queue="deaf"),
        [{"phone": phone("111", i)} for i in range(10)],
    )
    await real_floor.dialer.load_campaigns()
    task = asyncio.create_task(real_floor.dialer.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            (snap,) = real_floor.dialer.campaigns()
            if snap.held_reason:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(5)  # held: nothing more is dialled while the floor is unchanged
        (snap,) = real_floor.dialer.campaigns()
    finally:
        real_floor.dialer.stop()
        await task
    await real_floor.settle()
    rows = attempts(store)
    assert snap.held_reason, snap
    with store.session() as s:
        cid = s.scalars(select(Campaign.id).where(Campaign.name == "deaf-run")).one()
        held = hopper.breaker_hold(s, cid)
    assert held is not None and "abandon" in held[1]
    opened_at = held[0]
    # three abandons trip it; a fourth call may have left while the third customer was still
    # hearing the safe-harbour message (the agent looked idle again): nothing after it opened
    assert 3 <= len(rows) <= 4 and {r.outcome for r in rows} == {Outcome.ABANDONED}, rows
    assert all(r.created_at <= opened_at for r in rows), [(r.created_at, opened_at) for r in rows]
