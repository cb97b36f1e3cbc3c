"""Safe on the floor, on a real Asterisk 22: the FastAGI server going away mid-campaign, or a
flow crashing after it answered, leaves no customer in silence (the shipped dialplan plays the
apology with the callback number) and stops the campaign with an alarm; a stopped switch makes
``/healthz`` fail within 10 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.floor.alarms import IVR_FAILURES_TO_STOP, AlarmKind
from dialer.floor.console import start_console
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt, Campaign, IvrSession
from dialer.telephony.ami.messages import Event
from ivr.flow import FlowLibrary, parse_flow
from ivr.hooks import DEFAULT_HOOKS
from tests.observer import switch_events

from .conftest import RealFloor, campaign, load, phone
from .pbx import Asterisk

TOKEN = "real-switch-console-token-Zq8x2LmP4v"


def attempts(store: Store) -> list[Attempt]:
    with store.session() as s:
        rows = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        s.expunge_all()
    return rows


async def test_fastagi_down_mid_campaign_no_silent_call_and_the_alarm(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    doc = campaign("notice-real", "broadcast", flow="notice", queue=None)
    doc["pacing"].update({"channels": 3})
    load(store, tmp_path, doc, [{"phone": phone("999", i)} for i in range(8)])
    played: dict[str, str] = {}

    def on_event(ev: Event) -> None:
        h = ev.headers
        if ev.name == "Newexten" and h.get("Application") == "Playback":
            played[h.get("Channel", "")] = h.get("AppData", "")

    floor = real_floor.dialer
    async with switch_events(real_floor.ami_port, on_event):
        floor.monitor.every_s = 0.5
        await real_floor.core.wait_ready(10)
        await floor.load_campaigns()
        task = asyncio.create_task(floor.run())
        try:
            t0 = time.monotonic()
            while not any(c.state == "in_ivr" for c in floor.calls()):  # the flow has the call
                assert time.monotonic() - t0 < 15, "no call reached the IVR"
                await asyncio.sleep(0.1)
            await real_floor.ivr.close(grace=0.0)  # the IVR dies with a caller in it
            while not all(r.spec.state.value == "paused" for r in floor.runs.values()):
                assert time.monotonic() - t0 < 28, [a.outcome for a in attempts(store)]
                await asyncio.sleep(0.2)
            while any(a.outcome is None for a in attempts(store)):
                assert time.monotonic() - t0 < 40, "calls left open"
                await asyncio.sleep(0.2)
            await floor.monitor.check()
            health = floor.health()
        finally:
            floor.stop()
            await asyncio.wait_for(task, 10)
    rows = attempts(store)
    outcomes = [a.outcome for a in rows]
    assert Outcome.CUSTOMER_HANGUP not in outcomes, outcomes  # nobody blamed, nobody silent
    assert outcomes.count(Outcome.IVR_FAILED) >= IVR_FAILURES_TO_STOP, outcomes
    assert len(rows) < 8  # stopped before the list ran out
    apology = "dialer/ivr-apology&" + "&".join(f"dialer/digit-{d}" for d in "95588")
    heard = [v for v in played.values() if v == apology]
    assert len(heard) >= outcomes.count(Outcome.IVR_FAILED)
    with store.session() as s:
        assert s.scalars(select(Campaign.state)).one() == "paused"
    kinds = {(a.kind, a.subject) for a in health.alarms}
    assert (AlarmKind.IVR_FAILURES, "notice-real") in kinds
    assert (AlarmKind.IVR_DOWN, "fastagi") in kinds and not health.ok


async def test_healthz_fails_within_10_s_of_the_switch_stopping(
    store: Store, tmp_path: Path, real_floor: RealFloor, asterisk: Asterisk
) -> None:
    await real_floor.core.wait_ready(10)
    runner, port = await start_console(
        real_floor.dialer, port=0, token=TOKEN, registry=CollectorRegistry()
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # the detail (alarms) is for a credential: anonymous callers see up/down only
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=bearer) as http:
            async with http.get(f"{url}/healthz") as r:
                body = await r.json()
                assert r.status == 200 and body["dependencies"]["ami:default"]["up"], body
            await asyncio.to_thread(asterisk.stop)  # the switch is gone (its process ended)
            t0 = time.monotonic()
            while True:
                async with http.get(f"{url}/healthz") as r:
                    if r.status == 503:
                        body = await r.json()
                        break
                assert time.monotonic() - t0 < 10, "healthz still says ok"
                await asyncio.sleep(0.2)
            assert body["dependencies"]["ami:default"]["up"] is False
            while not any(a["kind"] == "switch_down" for a in body["alarms"]):
                assert time.monotonic() - t0 < 10, body  # the alarm, after a 3 s grace
                await asyncio.sleep(0.2)
                async with http.get(f"{url}/healthz") as r:
                    body = await r.json()
            async with http.get(f"{url}/metrics") as r:
                text = await r.text()
            assert 'dialer_dependency_up{dependency="ami:default"} 0.0' in text
            assert 'dialer_alarm{kind="switch_down",subject="default"} 1.0' in text
    finally:
        await runner.cleanup()


#: ``notice`` as a flow that crashes after it answered: a prompt is heard, the result
#: ``notified`` reached, then a bank hook raises (no error edge)
CRASHING = {
    "name": "notice",
    "start": "body",
    "nodes": {
        "body": {"kind": "play", "prompts": ["goodbye"], "next": "reached"},
        "reached": {"kind": "result", "set": "notified", "next": "boom"},
        "boom": {"kind": "action", "hook": "boom", "next": "done"},
        "done": {"kind": "hangup", "prompts": ["goodbye"]},
    },
}


@pytest.mark.slow  # about 12 s: real calls through a prompt, the crash and the apology
async def test_a_flow_crashing_after_it_answered_apologises_and_stops_the_campaign(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    """Issue 14 on Asterisk 22: a flow that answered, spoke and then crashed. The caller hears
    the apology with the callback number (the shipped dialplan, on the IVR's IVR_NEXT=failed),
    the attempt ends ``ivr_failed`` with the partial result, and the guard stops the campaign
    after 3 with its alarm."""
    doc = campaign("crash-real", "broadcast", flow="notice", queue=None)
    doc["pacing"].update({"channels": 3})
    load(store, tmp_path, doc, [{"phone": phone("999", i)} for i in range(9)])

    def boom(ctx: object) -> None:
        raise ConnectionRefusedError("core banking unreachable")

    real_floor.ivr.services.library = FlowLibrary(
        {"notice": parse_flow(CRASHING, "notice.yaml")}, {**DEFAULT_HOOKS, "boom": boom}
    )
    apps: dict[str, list[str]] = {}

    def on_event(ev: Event) -> None:
        h = ev.headers
        if ev.name == "Newexten" and h.get("Application") in ("AGI", "Playback", "Queue"):
            apps.setdefault(h.get("Channel", ""), []).append(
                f"{h.get('Application')}:{h.get('AppData', '')}"
            )

    floor = real_floor.dialer
    async with switch_events(real_floor.ami_port, on_event):
        await real_floor.core.wait_ready(10)
        await floor.load_campaigns()
        task = asyncio.create_task(floor.run())
        try:
            t0 = time.monotonic()
            while not all(r.spec.state.value == "paused" for r in floor.runs.values()):
                assert time.monotonic() - t0 < 40, [a.outcome for a in attempts(store)]
                await asyncio.sleep(0.2)
            while any(a.outcome is None for a in attempts(store)):
                assert time.monotonic() - t0 < 60, "calls left open"
                await asyncio.sleep(0.2)
            health = floor.health()
        finally:
            floor.stop()
            await asyncio.wait_for(task, 10)
    rows = attempts(store)
    assert IVR_FAILURES_TO_STOP <= len(rows) < 9  # stopped before the list ended
    assert {a.outcome for a in rows} == {Outcome.IVR_FAILED}, [a.outcome for a in rows]
    assert {a.result for a in rows} == {"notified"}  # the partial result is kept
    apology = "Playback:dialer/ivr-apology&" + "&".join(f"dialer/digit-{d}" for d in "95588")
    flows = [seq for seq in apps.values() if seq and seq[0].startswith("AGI:")]
    assert len(flows) == len(rows) and all(seq[1:] == [apology] for seq in flows), flows
    with store.session() as s:
        assert s.scalars(select(Campaign.state)).one() == "paused"
        assert {x.status for x in s.scalars(select(IvrSession))} == {"error"}
    kinds = {(a.kind, a.subject) for a in health.alarms}
    assert (AlarmKind.IVR_FAILURES, "crash-real") in kinds and health.ok  # the IVR itself is up
