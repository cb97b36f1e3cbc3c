"""Twin tests: one scenario on the real Asterisk and on the simulated PBX; the dialer must read
the same facts from both (agents' states, what it dials, the outcome)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select

from dialer.app.demo import SimFloor, demo_start
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.agents import AgentState

from .conftest import RealFloor, campaign, load, phone

START = demo_start(dt.date(2026, 12, 1))

#: the ghost queue of tests/real/conftest.py, standalone for the simulated PBX
SIM_QUEUES = """
[ghosts]
strategy = rrmemory
timeout = 15
joinempty = yes
wrapuptime = 1
member => Local/ghost01@test-agents/n,0,Ghost 01
member => Local/ghost02@test-agents/n,0,Ghost 02
"""


async def _ghost_run(dialer: object, seconds: float) -> tuple[dict[str, AgentState], str | None]:
    task = asyncio.create_task(dialer.run())  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    agents = {a.name: a.state for a in dialer.agents() if "ghosts" in a.queues}  # type: ignore[attr-defined]
    (snap,) = dialer.campaigns()  # type: ignore[attr-defined]
    dialer.stop()  # type: ignore[attr-defined]
    await task
    return agents, snap.held_reason


def _attempts(store: Store) -> int:
    with store.session() as s:
        return len(list(s.scalars(select(Attempt))))


async def test_twin_members_the_switch_cannot_ring(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    doc = campaign("ghost-twin", "progressive", queue="ghosts")
    rows = [{"phone": phone("111", i)} for i in range(5)]
    load(store, tmp_path, doc, rows)
    await real_floor.dialer.load_campaigns()
    real_agents, real_held = await _ghost_run(real_floor.dialer, 5)
    real_dialled = _attempts(store)

    from dialer.store import open_store

    sim_store = open_store(f"sqlite:///{tmp_path / 'sim.db'}")
    try:
        load(sim_store, tmp_path / "..", doc, rows)
        qfile = tmp_path / "sim-queues.conf"
        qfile.write_text(SIM_QUEUES)
        async with SimFloor(sim_store, Settings(), start=START, speed=10, queues=qfile) as sim:
            await sim.dialer.load_campaigns()
            sim_agents, sim_held = await _ghost_run(sim.dialer, 3)
        sim_dialled = _attempts(sim_store)
    finally:
        sim_store.dispose()
    ghosts = {"Ghost 01", "Ghost 02"}
    assert (
        {k: v for k, v in real_agents.items() if k in ghosts}
        == {k: v for k, v in sim_agents.items() if k in ghosts}
        == {"Ghost 01": AgentState.UNAVAILABLE, "Ghost 02": AgentState.UNAVAILABLE}
    )
    assert real_dialled == sim_dialled == 0
    assert real_held and sim_held and "INVALID or UNAVAILABLE" in real_held
