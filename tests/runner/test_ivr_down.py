"""The FastAGI server goes away mid-campaign (simulated PBX, the shipped dialplan): every
answered customer still hears something - the campaign's queue or the apology with the bank's
callback number - the attempts end ``ivr_failed`` (never ``customer_hangup``), and after
repeated failures the dialer stops the campaign and raises the alarm."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dialer.app.demo import SimFloor, demo_start
from dialer.floor.alarms import IVR_FAILURES_TO_STOP, AlarmKind
from dialer.lists.campaigns import apply_campaign, get_campaign, parse_campaign
from dialer.lists.contacts import import_contacts
from dialer.outcomes import Outcome
from dialer.settings import BankSettings, Settings
from dialer.store import Store, open_store
from dialer.store.models import Attempt, IvrSession
from dialer.telephony.ami.messages import Event
from ivr.flow import FlowLibrary, parse_flow
from ivr.hooks import DEFAULT_HOOKS
from tests.observer import switch_events

FLOWS = Path(__file__).resolve().parents[2] / "config" / "flows"
START = demo_start(dt.date(2026, 12, 1))
CAMPAIGN = {
    "name": "notice-run",
    "state": "running",
    "mode": "broadcast",
    "flow": "notice",
    "channel": "Local/{number}@customer",
    "caller_id": "95588",
    "max_attempts": 1,
    "retry": {},
    "pacing": {"channels": 2, "ring_timeout_s": 20, "calls_per_second": 50},
}
SCENARIO: dict[str, Any] = {
    "seed": 5,
    "called_party": {
        "invalid_share": 0.0,
        "busy_share": 0.0,
        "congestion_share": 0.0,
        "answer_probability": 1.0,
        "ring_s": {"dist": "fixed", "mean": 2},
        "machine_share": 0.0,
        "hangup_after_s": None,
        "queue_patience_s": None,
    },
    "agents": [],
}


def load(store: Store, tmp: Path, n: int, campaign: dict[str, Any] = CAMPAIGN) -> None:
    path = tmp / "c.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["phone", "name"])
        w.writerows(
            [f"+86139{i:05d}{(i % 7) + 1}{(i % 5) + 2}{(i % 3) + 5}", "客户"] for i in range(n)
        )
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(campaign), source=None, actor="test")
        import_contacts(s, row, path, default_region="CN", now=START.astimezone(dt.UTC))


def rows(store: Store) -> list[Attempt]:
    with store.session() as s:
        return list(s.scalars(select(Attempt).order_by(Attempt.id)))


async def until(cond: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["fastagi_down", "flow_unknown_to_the_ivr"])
async def test_ivr_fault_mid_campaign_no_silence_and_the_campaign_stops(
    sqlite_url: str, tmp_path: Path, fault: str
) -> None:
    """The FastAGI server stopped, or serving flows without the campaign's (an IVR deployed
    apart with other flows). On SQLite only: the store plays no part in what is tested."""
    store = open_store(sqlite_url)
    try:
        await ivr_fault(store, tmp_path, fault)
    finally:
        store.dispose()


async def ivr_fault(store: Store, tmp_path: Path, fault: str) -> None:
    load(store, tmp_path, 30)
    settings = Settings(bank=BankSettings(callback_number="95566"))
    played: dict[str, str] = {}  # channel -> what the dialplan played after the flow failed

    def on_event(ev: Event) -> None:
        h = ev.headers
        if ev.name == "Newexten" and h.get("Application") == "Playback":
            played[h.get("Channel", "")] = h.get("AppData", "")

    async with SimFloor(store, settings, start=START, speed=80.0, scenario=SCENARIO) as floor:
        async with switch_events(floor.ami_port, on_event):
            floor.dialer.monitor.every_s = 0.2
            task = asyncio.create_task(floor.dialer.run(until_idle=False))
            try:
                await until(
                    lambda: sum(r.outcome == Outcome.COMPLETED for r in rows(store)) >= 2,
                    20,
                    "no flow completed while the IVR was up",
                )
                if fault == "fastagi_down":
                    await floor.ivr.close(grace=5.0)  # the IVR goes away mid-campaign
                else:  # the IVR now serves only another flow
                    other = tmp_path / "flows"
                    other.mkdir()
                    (other / "opt_out.yaml").write_bytes((FLOWS / "opt_out.yaml").read_bytes())
                    assert floor.ivr.reload_flows(other) == ["opt_out"]
                cut = max(r.id for r in rows(store))
                await until(
                    lambda: (
                        floor.dialer.runs
                        and all(r.spec.state.value == "paused" for r in floor.dialer.runs.values())
                    ),
                    20,
                    "the campaign was not stopped",
                )
                await until(
                    lambda: all(r.outcome for r in rows(store)),
                    20,
                    "calls still open after the stop",
                )
                # counted once the calls then in flight have ended (a lease that was already on the
                # database thread when the pause landed may still have written its row)
                placed = len(rows(store))
                await asyncio.sleep(0.5)  # 40 simulated seconds: the loop ticks many times
                health = floor.dialer.health()
            finally:
                floor.dialer.stop()
                await asyncio.wait_for(task, 10)

    after = [r for r in rows(store) if r.id > cut]
    failed = [r for r in after if r.outcome == Outcome.IVR_FAILED]
    assert len(failed) >= IVR_FAILURES_TO_STOP
    assert Outcome.CUSTOMER_HANGUP not in {r.outcome for r in after}
    # each failed call heard the apology and the configured callback number, digit by digit
    apologies = [v for v in played.values() if v.startswith("dialer/ivr-apology")]
    assert len(apologies) >= len(failed)
    assert set(apologies) == {
        "dialer/ivr-apology&" + "&".join(f"dialer/digit-{d}" for d in "95566")
    }
    # the dialer stopped dialling once stopped (calls then in flight ended), paused for good
    assert len(rows(store)) == placed
    with store.session() as s:
        assert get_campaign(s, "notice-run").state == "paused"
    kinds = {(a.kind, a.subject) for a in health.alarms}
    assert (AlarmKind.IVR_FAILURES, "notice-run") in kinds
    assert ((AlarmKind.IVR_DOWN, "fastagi") in kinds) is (fault == "fastagi_down")
    assert health.ok is (fault != "fastagi_down") and health.campaigns == {"notice-run": "held"}


#: ``notice`` as a flow that fails after it answered: the caller hears the notice, the result
#: ``notified`` is reached, then the options menu waits for a key - where the FastAGI connection
#: is cut (``connection_cut``), or, with no key, a bank hook raises (``flow_crashes``)
MIDWAY = {
    "name": "notice",
    "start": "body",
    "nodes": {
        "body": {"kind": "play", "prompts": ["notice-body"], "next": "reached"},
        "reached": {"kind": "result", "set": "notified", "next": "ask"},
        "ask": {
            "kind": "menu",
            "prompts": ["notice-options"],
            "timeout_s": 5,
            "retries": 0,
            "no_input": [],
            "choices": {"1": "done"},
            "on_fail": "boom",
        },
        "boom": {"kind": "action", "hook": "boom", "next": "done"},
        "done": {"kind": "hangup", "prompts": ["goodbye"]},
    },
}


class CuttingProxy:
    """Between the switch and the FastAGI server: drops each session (both ends, RST) as soon
    as the IVR sends ``WAIT FOR DIGIT`` - a network cut in the middle of a flow."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _conn(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, watch: bool) -> None:
            while data := await r.read(65536):
                if watch and b"WAIT FOR DIGIT" in data:
                    self.cuts += 1
                    w1.transport.abort()
                    w2.transport.abort()
                    return
                w.write(data)

        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.gather(pipe(r1, w2, False), pipe(r2, w1, True))
        w1.transport.abort()
        w2.transport.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.mark.parametrize("fault", ["flow_crashes", "connection_cut"])
async def test_a_flow_failing_mid_way_rescues_the_caller_and_counts_as_an_ivr_failure(
    sqlite_url: str, tmp_path: Path, fault: str
) -> None:
    """Issue 14: the flow answered, played its notice and reached a result, then failed - a
    bank hook raising with no error edge, or the FastAGI connection cut. The caller is never
    hung up on without a word: the dialplan plays the apology with the callback number; the
    attempt ends ``ivr_failed`` (not ``customer_hangup``, not completed) with the partial
    result kept, and the IVR-failure guard stops the campaign after 3."""
    store = open_store(sqlite_url)
    try:
        await ivr_midway(store, tmp_path, fault)
    finally:
        store.dispose()


async def ivr_midway(store: Store, tmp_path: Path, fault: str) -> None:
    load(store, tmp_path, 12)
    settings = Settings(bank=BankSettings(callback_number="95566"))
    played: dict[str, list[str]] = {}  # channel -> what the dialplan played

    def on_event(ev: Event) -> None:
        h = ev.headers
        if ev.name == "Newexten" and h.get("Application") in ("Playback", "AGI", "Queue"):
            played.setdefault(h.get("Channel", ""), []).append(
                f"{h.get('Application')}:{h.get('AppData', '')}"
            )

    def boom(ctx: object) -> None:
        raise ConnectionRefusedError("core banking unreachable")

    async with SimFloor(store, settings, start=START, speed=40.0, scenario=SCENARIO) as floor:
        lib = FlowLibrary({"notice": parse_flow(MIDWAY, "notice.yaml")}, {**DEFAULT_HOOKS})
        lib.hooks["boom"] = boom
        floor.ivr.services.library = lib  # the IVR now serves the failing flow
        proxy = CuttingProxy(floor.ivr.port)
        if fault == "connection_cut":
            port = await proxy.start()
            floor.pbx.engine.agi_port_map[("127.0.0.1", floor.ivr.port)] = ("127.0.0.1", port)
        async with switch_events(floor.ami_port, on_event):
            task = asyncio.create_task(floor.dialer.run(until_idle=False))
            try:
                await until(
                    lambda: (
                        bool(floor.dialer.runs)
                        and all(r.spec.state.value == "paused" for r in floor.dialer.runs.values())
                    ),
                    30,
                    "the campaign was not stopped",
                )
                await until(lambda: all(r.outcome for r in rows(store)), 30, "calls still open")
                health = floor.dialer.health()
            finally:
                floor.dialer.stop()
                await asyncio.wait_for(task, 10)
                await proxy.close()

    done = rows(store)
    assert len(done) >= IVR_FAILURES_TO_STOP
    assert {r.outcome for r in done} == {Outcome.IVR_FAILED}, [r.outcome for r in done]
    assert {r.result for r in done} == {"notified"}  # the partial result the flow reached
    apology = "Playback:dialer/ivr-apology&" + "&".join(f"dialer/digit-{d}" for d in "95566")
    flows = [apps for apps in played.values() if apps and apps[0].startswith("AGI:")]
    assert len(flows) >= len(done)
    assert all(apps[1:] == [apology] for apps in flows), flows  # no queue: the apology at once
    if fault == "connection_cut":
        assert proxy.cuts >= len(done)
    with store.session() as s:
        assert get_campaign(s, "notice-run").state == "paused"
        sessions = {x.status for x in s.scalars(select(IvrSession))}
    # the IVR's own record: the crash is its error; a cut connection looks like a hang-up to
    # it, but the dialplan's mark (the caller was still there) decides the outcome
    assert sessions == ({"error"} if fault == "flow_crashes" else {"hangup"})
    assert (AlarmKind.IVR_FAILURES, "notice-run") in {(a.kind, a.subject) for a in health.alarms}


async def test_a_flow_crashing_mid_way_hands_the_caller_to_the_campaigns_queue(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The campaign has a queue and the flow allows a hand-over (``rescue: queue``, the
    default): after the crash the caller joins the campaign's queue and an agent takes the
    call (``agent_handled``, with the flow's partial result); no agent failure to count."""
    store = open_store(sqlite_url)
    try:
        doc = {**CAMPAIGN, "queue": "activation-agents", "max_attempts": 1}
        load(store, tmp_path, 3, doc)
        scenario = {
            **SCENARIO,
            "agents": [
                {
                    "queue": "activation-agents",
                    "count": 3,
                    "interface": "PJSIP/sim-act-{n:03d}",
                    "answer_s": 1,
                    "talk_s": 5,
                    "wrapup_s": 1,
                    "exclusive": True,
                }
            ],
        }
        joined: list[str] = []

        def on_event(ev: Event) -> None:
            if ev.name == "QueueCallerJoin":
                joined.append(ev.headers.get("Queue", ""))

        def boom(ctx: object) -> None:
            raise ConnectionRefusedError("core banking unreachable")

        settings = Settings(bank=BankSettings(callback_number="95566"))
        async with SimFloor(store, settings, start=START, speed=40.0, scenario=scenario) as floor:
            floor.ivr.services.library = FlowLibrary(
                {"notice": parse_flow(MIDWAY, "notice.yaml")}, {**DEFAULT_HOOKS, "boom": boom}
            )
            floor.core.subscribe(on_event)
            task = asyncio.create_task(floor.dialer.run(until_idle=False))
            try:
                await until(
                    lambda: len(rows(store)) == 3 and all(r.outcome for r in rows(store)),
                    30,
                    "calls still open",
                )
            finally:
                floor.dialer.stop()
                await asyncio.wait_for(task, 10)
        done = rows(store)
        assert [(r.outcome, r.result) for r in done] == [(Outcome.AGENT_HANDLED, "notified")] * 3
        assert joined == ["activation-agents"] * 3
        with store.session() as s:
            assert {x.status for x in s.scalars(select(IvrSession))} == {"error"}
            assert get_campaign(s, "notice-run").state == "running"  # nothing to stop
    finally:
        store.dispose()
