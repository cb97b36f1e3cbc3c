"""Health and alarms: /healthz names each dependency and fails (503) while one is down; the
alarms (switch down, IVR down or failing, store down, abandon cap near/over, breaker open, no
agents) are one list in the log, the API, the page's snapshot and /metrics; the IVR guard
stops a campaign whose answered customers keep meeting an IVR that does not run."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import socket
from typing import Any

import pytest
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.floor.alarms import Alarm, AlarmBoard, AlarmKind, CampaignState, find_alarms
from dialer.floor.service import Dialer
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import AuditEntry, Campaign
from dialer.telephony.core import FinishedAttempt

from .floorkit import Console

T = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)


def camp(**kw: Any) -> CampaignState:
    base: dict[str, Any] = {
        "name": "c",
        "running": True,
        "uses_agents": True,
        "queue": "sales",
        "live_answers": 100,
        "abandoned": 0,
        "cap": 0.03,
        "breaker_reason": None,
        "agents_logged_in": 5,
        "stopped_by_ivr": None,
    }
    return CampaignState(**{**base, **kw})


def alarms(*campaigns: CampaignState, **kw: Any) -> set[tuple[str, str]]:
    args: dict[str, Any] = {
        "switch": "default",
        "switch_up": True,
        "switch_error": None,
        "fastagi_up": True,
        "fastagi_error": None,
        "store_up": True,
        "store_error": None,
        **kw,
    }
    return {(a.kind.value, a.subject) for a in find_alarms(campaigns=campaigns, **args)}


def test_each_alarm_kind_from_the_floors_state() -> None:
    assert alarms(camp()) == set()
    assert alarms(camp(), switch_up=False, switch_error="refused") == {("switch_down", "default")}
    assert alarms(camp(), fastagi_up=False, fastagi_error="x") == {("ivr_down", "fastagi")}
    assert alarms(camp(), fastagi_up=None) == set()  # not probed (no flow): no alarm
    assert alarms(camp(), store_up=False, store_error="x") == {("store_down", "store")}
    assert alarms(camp(abandoned=3)) == {("abandon_near", "c")}  # 3.0% of 100 at a 3% cap
    assert alarms(camp(abandoned=2)) == set()
    assert alarms(camp(abandoned=4)) == {("abandon_over", "c")}
    assert alarms(camp(breaker_reason="3 abandons")) == {("breaker_open", "c")}
    assert alarms(camp(agents_logged_in=0)) == {("no_agents", "c")}
    assert alarms(camp(agents_logged_in=0), switch_up=False) == {("switch_down", "default")}
    assert alarms(camp(agents_logged_in=0), agents_known=False) == set()  # not listed yet
    assert alarms(camp(agents_logged_in=0, uses_agents=False)) == set()  # an IVR-only run
    assert alarms(camp(abandoned=9, running=False)) == set()  # paused: nothing to watch
    assert alarms(camp(abandoned=2, live_answers=6)) == set()  # too few answers to judge
    assert alarms(camp(abandoned=2, live_answers=20)) == {("abandon_over", "c")}
    assert alarms(camp(running=False, stopped_by_ivr="3 in a row")) == {("ivr_failures", "c")}


def test_the_board_logs_a_raise_and_a_clear_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dialer.floor.alarms")
    board = AlarmBoard()
    down = Alarm(AlarmKind.SWITCH_DOWN, "default", "AMI down: refused")
    for i in range(5):
        board.sync([down], T + dt.timedelta(seconds=i))
    [active] = board.active()
    assert active.since == T and active.to_json()["kind"] == "switch_down"
    board.sync([], T + dt.timedelta(seconds=9))
    assert board.active() == []
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", "ALARM switch_down default: AMI down: refused"),
        ("WARNING", "alarm cleared: switch_down default"),
    ]


async def test_healthz_fails_while_the_switch_is_down_and_metrics_show_it(
    console: Console,
) -> None:
    console.floor.monitor.switch_grace_s = 0.0  # the alarm at once (a blip waits 3 s)
    status, body = await console.request("GET", "/healthz", auth=False)
    assert status == 503 and body["ok"] is False
    # without a credential: each dependency up or down, and nothing that names a campaign
    assert body == {"ok": False, "at": body["at"], "dependencies": body["dependencies"]}
    assert all(d == {"up": d["up"]} for d in body["dependencies"].values())
    assert body["dependencies"]["ami:default"]["up"] is False
    raw = (await console.request("GET", "/healthz", auth=False, headers={"Authorization": "x"}))[1]
    assert "campaigns" not in raw and "test" not in str(raw)  # a wrong token is no credential
    status, body = await console.request("GET", "/healthz")  # the API token: the detail
    assert status == 503 and body["ok"] is False
    assert body["dependencies"]["ami:default"]["up"] is False
    assert body["dependencies"]["ami:default"]["detail"]
    assert body["campaigns"] == {"card-activation-test": "running", "preview-test": "running"}
    assert ("switch_down", "default") in {(a["kind"], a["subject"]) for a in body["alarms"]}
    _, text = await console.request("GET", "/metrics", auth=False)
    assert 'dialer_dependency_up{dependency="ami:default"} 0.0' in text
    assert 'dialer_alarm{kind="switch_down",subject="default"} 1.0' in text
    status, listed = await console.request("GET", "/api/alarms")
    assert status == 200 and any(a["kind"] == "switch_down" for a in listed)
    _, snap = await console.request("GET", "/api/snapshot")
    assert snap["health"]["ok"] is False  # what the page's banner reads

    console.floor.core.client.ready.set()  # logged in
    status, body = await console.request("GET", "/healthz", auth=False)
    assert status == 200 and body["ok"] is True
    assert body["dependencies"]["ami:default"] == {"up": True}


async def test_the_probes_see_fastagi_and_the_store(floor: Dialer) -> None:
    floor.core.client.ready.set()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    floor.core.rows.agi_url = f"agi://127.0.0.1:{dead}"
    await floor.monitor.check()
    h = floor.health()
    deps = {d.name: d for d in h.dependencies}
    assert not h.ok and not deps["fastagi"].up and deps["store"].up
    assert "refused" in deps["fastagi"].detail.lower()
    assert ("ivr_down", "fastagi") in {(a.kind.value, a.subject) for a in h.alarms}

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    floor.core.rows.agi_url = f"agi://127.0.0.1:{port}"
    try:
        await floor.monitor.check()
    finally:
        server.close()
    assert floor.health().ok
    summary = floor.monitor.summary()
    assert summary.startswith("ami:default up, store up, fastagi up; campaigns 2 running")
    assert "ivr_down" not in summary.split("alarms:")[1]  # the seeded shift's own remain
    assert "; AMI events read up to 0.0 s late; " in summary


def ivr_failed(attempt_id: int, outcome: Outcome = Outcome.IVR_FAILED) -> FinishedAttempt:
    """What the guard reads of a finished attempt: its outcome (the facts are the core's)."""
    return FinishedAttempt(attempt_id, outcome, None, None)  # type: ignore[arg-type]


async def test_repeated_ivr_failures_stop_the_campaign_until_a_supervisor_resumes(
    floor: Dialer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dialer.floor.alarms")
    floor.core.client.ready.set()
    [run] = [r for r in floor.runs.values() if r.spec.name == "card-activation-test"]
    guard = floor.loop.ivr_guard
    guard.finished(run, ivr_failed(1))
    guard.finished(run, ivr_failed(2))
    guard.finished(run, ivr_failed(3, Outcome.COMPLETED))  # the flow ran: the count starts over
    guard.finished(run, ivr_failed(4))
    guard.finished(run, ivr_failed(5))
    assert run.spec.state.value == "running"
    guard.finished(run, ivr_failed(6))
    assert run.spec.state.value == "paused"  # at once: no further dial
    await asyncio.gather(*guard._writes)
    with store.session() as s:
        assert s.get(Campaign, run.id).state == "paused"  # type: ignore[union-attr]
        [audit] = s.scalars(
            select(AuditEntry).where(AuditEntry.action == AuditAction.CAMPAIGN_PAUSE.value)
        )
        assert audit.actor.endswith(":ivr-guard") and "3 answered calls" in audit.detail["reason"]
    h = floor.health()
    assert h.campaigns["card-activation-test"] == "held"
    [alarm] = [a for a in h.alarms if a.kind is AlarmKind.IVR_FAILURES]
    assert alarm.subject == "card-activation-test"
    assert any("ALARM campaign card-activation-test" in r.getMessage() for r in caplog.records)

    await floor.resume("card-activation-test", actor="console:sup")
    assert not [a for a in floor.health().alarms if a.kind is AlarmKind.IVR_FAILURES]
    assert dataclasses.replace(alarm, message="x").key == alarm.key


async def test_a_workers_fleet_reports_every_switch_and_a_standby_its_store(
    floor: Dialer, store: Store
) -> None:
    """``dialer run`` serves the console a ``Fleet``: its health joins its switches'; a
    standby worker (no switch) knows the store from its heartbeat."""
    from dialer.floor.fleet import Fleet
    from dialer.settings import Settings

    fleet = Fleet(store, Settings(), dialers=lambda: {"default": floor})
    h = fleet.health()
    assert not h.ok and {d.name for d in h.dependencies} == {"ami:default", "store"}
    floor.core.client.ready.set()
    assert fleet.health().ok and fleet.health().campaigns == floor.health().campaigns

    standby = Fleet(store, Settings(), dialers=dict)
    assert standby.health().ok
    standby.set_store_ok(False)  # a heartbeat failed
    h = standby.health()
    assert not h.ok and h.to_json()["dependencies"]["store"]["up"] is False
