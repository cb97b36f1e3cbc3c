"""Twin tests: one scenario on the real Asterisk and on the simulated PBX; the dialer must read
the same facts from both (agents' states, what it dials, the outcome)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dialer.app.demo import SimFloor, demo_start
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.agents import AgentState
from dialer.telephony.ami.messages import Event
from ivr.flow import FlowLibrary, parse_flow
from ivr.hooks import DEFAULT_HOOKS
from tests.observer import switch_events

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


#: a flow cut off in the middle: a prompt, the result ``notified``, a hook that tells the test
#: the flow got there, then a menu waiting for a key - during which the FastAGI server dies
MIDFLOW = {
    "name": "notice",
    "start": "body",
    "nodes": {
        "body": {"kind": "play", "prompts": ["goodbye"], "next": "reached"},
        "reached": {"kind": "result", "set": "notified", "next": "mark"},
        "mark": {"kind": "action", "hook": "mark", "next": "ask"},
        "ask": {
            "kind": "menu",
            "prompts": ["notice-options"],
            "timeout_s": 20,
            "retries": 0,
            "no_input": [],
            "choices": {"1": "done"},
            "on_fail": "done",
        },
        "done": {"kind": "hangup", "prompts": ["goodbye"]},
    },
}
CUT_SCENARIO: dict[str, Any] = {
    "seed": 3,
    "called_party": {
        "invalid_share": 0.0,
        "busy_share": 0.0,
        "congestion_share": 0.0,
        "answer_probability": 1.0,
        "ring_s": {"dist": "fixed", "mean": 1},
        "machine_share": 0.0,
        "hangup_after_s": None,
        "queue_patience_s": None,
    },
    "agents": [],
}


async def _cut_mid_flow(
    floor: Any, store: Store, into_menu_s: float
) -> tuple[str | None, str | None, str, list[str]]:
    """One call; the FastAGI server dies while the flow waits in its menu. Returns the
    attempt's outcome and result, the AGISTATUS the switch set, and what the dialplan ran
    after AGI()."""
    reached = threading.Event()

    def mark(ctx: object) -> str:
        reached.set()
        return "ok"

    floor.ivr.services.library = FlowLibrary(
        {"notice": parse_flow(MIDFLOW, "notice.yaml")}, {**DEFAULT_HOOKS, "mark": mark}
    )
    apps: list[str] = []
    status: list[str] = []

    def on_event(ev: Event) -> None:
        h = ev.headers
        if ev.name == "Newexten" and h.get("Application") in ("AGI", "Playback", "Queue"):
            apps.append(f"{h.get('Application')}:{h.get('AppData', '')}")
        if ev.name == "VarSet" and h.get("Variable") == "AGISTATUS":
            status.append(h.get("Value", ""))

    async with switch_events(floor.ami_port, on_event):
        await floor.dialer.load_campaigns()
        task = asyncio.create_task(floor.dialer.run())
        loop = asyncio.get_running_loop()
        try:
            t0 = loop.time()
            while not reached.is_set():
                assert loop.time() - t0 < 30, "the flow never reached its menu"
                await asyncio.sleep(0.05)
            await asyncio.sleep(into_menu_s)
            await floor.ivr.close(grace=0.0)  # the IVR dies with the caller in its menu
            with store.session() as s:
                while (row := s.scalars(select(Attempt)).one()).outcome is None:
                    assert loop.time() - t0 < 40, "the call did not end"
                    await asyncio.sleep(0.2)
                    s.expire_all()
                outcome, result = row.outcome, row.result
        finally:
            floor.dialer.stop()
            await asyncio.wait_for(task, 10)
    after = apps[[a.split(":")[0] for a in apps].index("AGI") + 1 :]
    return outcome, result, ",".join(status), after


@pytest.mark.slow  # about 16 s: a real call into the flow, the cut, the apology; then the sim
async def test_twin_a_fastagi_connection_dying_mid_flow(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    """Issue 14: what Asterisk 22 reports when the FastAGI connection dies in the middle of a
    flow, the channel still up (AGISTATUS=SUCCESS, no IVR_NEXT), and what the shipped dialplan
    then does (the apology with the callback number), read the same from both switches."""
    doc = campaign("cut-twin", "broadcast", flow="notice", queue=None)
    rows = [{"phone": phone("999", 0)}]
    load(store, tmp_path, doc, rows)
    real = await _cut_mid_flow(real_floor, store, 1.0)

    from dialer.store import open_store

    sim_store = open_store(f"sqlite:///{tmp_path / 'sim.db'}")
    try:
        (tmp_path / "sim").mkdir()
        load(sim_store, tmp_path / "sim", doc, rows)
        async with SimFloor(
            sim_store, Settings(), start=START, speed=10, scenario=CUT_SCENARIO
        ) as sim:
            simulated = await _cut_mid_flow(sim, sim_store, 0.1)
    finally:
        sim_store.dispose()
    apology = "Playback:dialer/ivr-apology&" + "&".join(f"dialer/digit-{d}" for d in "95588")
    assert real == simulated == ("ivr_failed", "notified", "SUCCESS", [apology]), (real, simulated)
