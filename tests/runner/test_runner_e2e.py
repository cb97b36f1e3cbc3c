"""Campaigns on the simulated floor, end to end: each dialling mode, the 2-second rule and
the abandon count, DNC mid-campaign. Everything runs over real sockets (AMI, FastAGI) on a
scaled clock (``speed`` simulated seconds per real second)."""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from dialer.app.demo import SimFloor, demo_start
from dialer.floor.view import AgentState
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import import_contacts
from dialer.lists.dnc import add_entry
from dialer.outcomes import Outcome
from dialer.pacing.types import AgentState as PAgent
from dialer.settings import Ceilings, Settings
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.ami.messages import Event
from dialer.telephony.subscription import UNREAD_EVENTS
from dialer.telephony.tracker import READ_VARIABLES

START = demo_start(dt.date(2026, 12, 1))  # a Tuesday, 10:00 in Beijing
#: the power-mode tests set a 50% cap to see the policy's own fallback, not the ceiling's
SETTINGS = Settings(compliance=Ceilings(abandon_cap=0.5))
QUEUES = Path(__file__).resolve().parent / "queues.conf"


def campaign(name: str, mode: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "mode": mode,
        "queue": "sales",
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "max_attempts": 1,
        "retry": {},
        "pacing": {"ring_timeout_s": 20, "wrapup_s": 3, "calls_per_second": 50},
    }
    doc.update(kw)
    return doc


def floor_scenario(
    agents: int, *, answer: float = 0.9, talk: float = 30.0, patience: float | None = None
) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "seed": 11,
        "called_party": {
            "invalid_share": 0.0,
            "busy_share": 0.0,
            "congestion_share": 0.0,
            "answer_probability": answer,
            "ring_s": {"dist": "uniform", "mean": 4, "sd": 2, "min": 2, "max": 8},
            "machine_share": 0.0,
            "hangup_after_s": None,
            "queue_patience_s": patience,
        },
        "agents": [],
    }
    if agents:
        sc["agents"].append(
            {
                "queue": "sales",
                "count": agents,
                "interface": "PJSIP/t-{n:02d}",
                "answer_s": 0.2,
                "talk_s": {"dist": "fixed", "mean": talk},
                "wrapup_s": 3,
            }
        )
    return sc


def load(store: Store, tmp: Path, doc: dict[str, Any], phones: list[str]) -> None:
    spec = parse_campaign(doc)
    path = tmp / f"{spec.name}.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["phone", "name"])
        for p in phones:
            w.writerow([p, "客户"])
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        report = import_contacts(s, row, path, default_region="CN", now=START.astimezone(dt.UTC))
        assert report.imported == len(phones)


def numbers(n: int, base: int = 0) -> list[str]:
    """Mobiles whose last three digits avoid the simulator's deterministic test numbers."""
    return [f"+86139{base + i:05d}{(i % 7) + 1}{(i % 5) + 2}{(i % 3) + 5}" for i in range(n)]


async def run_floor(
    store: Store,
    scenario: dict[str, Any],
    *,
    speed: float | None = 40.0,
    max_speed: float | None = None,
    record: bool = False,
    until_idle: bool = True,
    during: Callable[[SimFloor], Any] | None = None,
    observe: Callable[..., None] | None = None,
    timeout: float = 60.0,
) -> SimFloor:
    floor = SimFloor(
        store,
        SETTINGS,
        start=START,
        speed=speed,  # None: simulated time, which a loaded machine's stalls cannot move on
        max_speed=max_speed,
        scenario=scenario,
        queues=QUEUES,
        record=record,
        tick_s=0.5,
    )
    async with floor:
        if observe is not None:
            floor.dialer.on_decision.append(observe)
        tasks = [asyncio.create_task(floor.dialer.run(until_idle=until_idle, quiet_s=60.0))]
        if during is not None:
            tasks.append(asyncio.create_task(during(floor)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(tasks)
        while tasks[0] in pending and loop.time() < deadline:
            done, pending = await asyncio.wait(
                pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                t.result()  # an assertion inside `during` fails the test here
        assert tasks[0].done(), "the campaign did not finish in time"
        for t in pending:
            t.cancel()
    return floor


def attempts(store: Store) -> list[Attempt]:
    with store.session() as s:
        return list(s.scalars(select(Attempt).order_by(Attempt.id)))


async def test_progressive_never_more_calls_than_idle_agents(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, campaign("prog", "progressive"), numbers(30))
    seen: list[tuple[int, int, int]] = []

    def observe(run: Any, inp: Any, n: int) -> None:
        idle = int((inp.agent_state == PAgent.IDLE).sum())
        seen.append((idle, len(inp.call_age_s), n))

    heard: collections.Counter[str] = collections.Counter()

    def listen(e: Event) -> None:
        key = {"VarSet": "Variable", "Newexten": "Application"}.get(e.name)
        heard[f"{e.name}:{e.headers.get(key)}" if key else e.name] += 1

    async def tap(floor: SimFloor) -> None:
        floor.core.subscribe(listen)

    floor = await run_floor(store, floor_scenario(4), observe=observe, during=tap)
    rows = attempts(store)
    assert len(rows) == 30 and all(r.outcome for r in rows)
    assert seen and any(n > 0 for _, _, n in seen)
    # the switch sent only what the dialer reads (dialer.telephony.subscription)
    assert floor.core.events_filtered
    assert heard["AgentConnect"] and heard["Hangup"] and heard["Newchannel"]
    assert not set(UNREAD_EVENTS) & set(heard)
    assert {k.split(":")[1] for k in heard if k.startswith("VarSet:")} <= READ_VARIABLES
    for idle, in_flight, n in seen:
        assert in_flight + n <= max(idle, 0) or n == 0, (idle, in_flight, n)
    assert {r.outcome for r in rows} <= {
        Outcome.AGENT_HANDLED,
        Outcome.NO_ANSWER,
        Outcome.ABANDONED,
    }
    handled = [r for r in rows if r.outcome == Outcome.AGENT_HANDLED]
    assert handled and all(r.bridged_at and r.agent for r in handled)


async def test_power_keeps_its_ratio_and_abandons_are_counted_like_ami(
    store: Store, tmp_path: Path
) -> None:
    doc = campaign(
        "power",
        "power",
        pacing={
            "ring_timeout_s": 40,
            "wrapup_s": 3,
            "power_ratio": 3.0,
            "calls_per_second": 50,
            "abandon_cap": 0.5,
        },
    )
    load(store, tmp_path, doc, numbers(40))
    ratios: list[tuple[int, int, int]] = []

    def observe(run: Any, inp: Any, n: int) -> None:
        idle = int((inp.agent_state == PAgent.IDLE).sum())
        ringing = int((~inp.call_answered).sum())
        ratios.append((idle, ringing, n))

    # speed 25 and a ring timeout far beyond the longest ring: no answer can race the timeout
    floor = await run_floor(
        store, floor_scenario(3, answer=0.95, talk=40), record=True, observe=observe, speed=25.0
    )
    for idle, ringing, n in ratios:
        assert ringing + n <= 3 * idle or n == 0, (idle, ringing, n)
    assert any(n > idle for idle, _, n in ratios), "power mode never dialled above one per agent"
    rows = attempts(store)
    abandoned = [r for r in rows if r.outcome == Outcome.ABANDONED]
    live = [r for r in rows if r.live_answer]
    assert abandoned, "three lines per agent with 95% answers must overflow the agents"
    # every abandoned caller heard the safe-harbour message, with the evidence kept
    for r in abandoned:
        assert r.answered_at and r.greeting_end_at and r.message_played_at and r.bridged_at is None
    # the same rate counted independently from the AMI events the PBX emitted
    joins = {e.get("Uniqueid") for e in floor.pbx.events if e.name == "QueueCallerJoin"}
    abandons = {e.get("Uniqueid") for e in floor.pbx.events if e.name == "QueueCallerAbandon"}
    assert len(abandons) == len(abandoned)
    assert len(joins) == len(live)
    from dialer.lists.stats import abandon_rate

    with store.session() as s:
        rate = abandon_rate(s, rows[0].campaign_id, since=None)
    assert rate.rate == pytest.approx(len(abandons) / len(joins))


async def test_broadcast_holds_channels_and_calls_per_second(store: Store, tmp_path: Path) -> None:
    doc = campaign(
        "bc",
        "broadcast",
        flow="notice",
        queue=None,
        pacing={"channels": 4, "calls_per_second": 2, "ring_timeout_s": 20},
    )
    load(store, tmp_path, doc, numbers(16))
    peak = 0

    async def sample(floor: SimFloor) -> None:
        nonlocal peak
        while True:
            peak = max(peak, floor.core.live_calls())
            await asyncio.sleep(0.005)

    # speed 10: the dialer's own scheduling latency (a few ms) stays small in simulated time
    floor = await run_floor(
        store, floor_scenario(0, answer=0.8), during=sample, record=True, speed=10.0
    )
    rows = attempts(store)
    assert len(rows) == 16 and all(r.outcome for r in rows)
    assert 3 <= peak <= 4
    # when the switch received each Originate: the ;1 leg's Newchannel, on the PBX's clock
    times = sorted(
        e.timestamp
        for e in floor.pbx.events
        if e.name == "Newchannel" and (e.get("Channel") or "").endswith(";1")
    )
    assert len(times) == 16
    jitter = 0.15  # loopback and database latency, times the speed factor
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < 1.0 - jitter) <= 2, (
            "more than 2 calls in one second"
        )
    assert any(r.outcome == Outcome.COMPLETED for r in rows)


async def test_preview_dials_only_what_an_agent_asked_for(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, campaign("pv", "preview"), numbers(5))

    async def agent_asks(floor: SimFloor) -> None:
        await asyncio.sleep(0.5)
        assert attempts(store) == []  # nothing dialled before anyone asked
        first = await floor.dialer.preview_next("pv", "PJSIP/t-01", actor="test")
        assert first is not None and "****" in first["phone"]
        await asyncio.sleep(0.5)
        second = await floor.dialer.preview_next("pv", "PJSIP/t-02", actor="test")
        assert second is not None
        await asyncio.sleep(2.0)
        floor.dialer.stop()

    await run_floor(store, floor_scenario(2), during=agent_asks, until_idle=False)
    rows = attempts(store)
    assert len(rows) == 2
    assert [r.agent for r in rows] == ["PJSIP/t-01", "PJSIP/t-02"] or all(r.outcome for r in rows)


async def test_contact_put_on_dnc_mid_campaign_is_never_dialled(
    store: Store, tmp_path: Path
) -> None:
    phones = numbers(24)
    doc = campaign("dncc", "progressive", max_attempts=3, retry={"no_answer": "1m"})
    load(store, tmp_path, doc, phones)
    banned = phones[-6:]
    banned_at: list[dt.datetime] = []

    async def ban(floor: SimFloor) -> None:
        while len(attempts(store)) < 4:
            await asyncio.sleep(0.05)
        with store.session() as s:
            for p in banned:
                add_entry(s, p, reason="customer asked", source="test")
        banned_at.append(floor.dialer.now())

    await run_floor(store, floor_scenario(2, answer=0.5, talk=20), during=ban)
    rows = attempts(store)
    assert banned_at
    late = [
        r
        for r in rows
        if r.phone in banned and r.created_at > banned_at[0] + dt.timedelta(seconds=2)
    ]
    assert late == []
    assert {r.phone for r in rows} - set(banned), "the rest of the campaign was still dialled"


def test_pool_reflects_simulated_agents_after_run(store: Store, tmp_path: Path) -> None:
    """The agent pool is built from QueueStatus and events, not from configuration."""
    load(store, tmp_path, campaign("pool", "progressive"), numbers(6))
    # simulated time: at 40x on a loaded machine no call reached an agent before the end
    floor = asyncio.run(run_floor(store, floor_scenario(3), speed=None, max_speed=40.0))
    agents = floor.dialer.agents()
    assert len(agents) == 3 and {a.queues for a in agents} == {("sales",)}
    assert sum(a.calls_handled for a in agents) >= 1
    assert all(a.state in (AgentState.IDLE, AgentState.WRAPUP) for a in agents)


async def test_a_call_whose_window_closes_before_it_leaves_is_not_dialled(
    store: Store, tmp_path: Path
) -> None:
    """Leased inside the window at 19:59:50, the calls wait (for their pace, a line, the
    switch) until past 20:00: the calendar is checked again as each leaves, and none does."""
    window = {"start": "09:00", "end": "20:00", "skip_holidays": False}
    doc = campaign("late", "broadcast", flow="notice", queue=None, calling_window=window)
    doc["pacing"].update({"channels": 5})
    load(store, tmp_path, doc, numbers(3))
    start = dt.datetime(2026, 12, 1, 19, 59, 50, tzinfo=ZoneInfo("Asia/Shanghai"))
    floor = SimFloor(store, SETTINGS, start=start, speed=60.0, scenario=floor_scenario(0))
    async with floor:
        loop = floor.dialer.loop
        await loop.load_campaigns()
        run = loop.run_named("late")
        ids = await loop.lease(run, loop.clock.time(), 3)  # inside the window: leased
        assert len(ids) == 3
        while loop.clock.time() < start.timestamp() + 12:  # 20:00:02 in Beijing
            await asyncio.sleep(0.02)
        loop.spawn(run, ids)
        await asyncio.gather(*loop.tasks)
        await floor.core.batches.flush()
        assert floor.core.originates_sent == 0
    rows = attempts(store)
    assert [r.outcome for r in rows] == [Outcome.FAILED] * 3
    assert all("outside_window" in (r.detail or {}).get("end_reason", "") for r in rows)
