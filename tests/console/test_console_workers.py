"""A worker's console shows every worker on the store: heartbeat, state, what each switch said."""

from __future__ import annotations

import datetime as dt

import aiohttp
from prometheus_client import CollectorRegistry

from dialer.floor.console import start_console
from dialer.floor.fleet import Fleet
from dialer.settings import Settings
from dialer.store import Store
from dialer.store import workers as registry

from .floorkit import TOKEN


async def test_workers_api_and_snapshot(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    a, b = registry.WorkerIdentity("a", host="h1"), registry.WorkerIdentity("b", host="h2")
    switch = {"ami_ready": True, "live_calls": 7, "originates_sent": 90, "agents": {"idle": 3}}
    with store.session() as s:
        registry.register(s, a, now - dt.timedelta(minutes=5))
        registry.register(s, b, now)
        registry.claim_switch(s, "pbx1", a, now - dt.timedelta(minutes=5))
        registry.claim_switch(s, "pbx2", b, now)
        registry.heartbeat(s, b, now, {"switches": {"pbx2": switch}})
    with store.session() as s:
        health = [h.to_json(now) for h in registry.health(s, now)]
    fleet = Fleet(store, Settings(), dialers=dict)
    fleet.set_health(health)
    runner, port = await start_console(
        fleet, port=0, token=TOKEN, registry=CollectorRegistry(), store=store
    )
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.get(f"http://127.0.0.1:{port}/api/workers") as r:
                assert r.status == 200
                got = {w["id"]: w for w in await r.json()}
            async with http.get(f"http://127.0.0.1:{port}/api/snapshot") as r:
                snap = await r.json()
    finally:
        await runner.cleanup()
    assert got["a"]["state"] == "dead" and got["a"]["switches"] == []
    assert got["a"]["heartbeat_age_s"] >= 300
    assert got["b"]["state"] == "alive" and got["b"]["switches"] == ["pbx2"]
    assert got["b"]["info"]["switches"]["pbx2"]["live_calls"] == 7
    assert [w["id"] for w in snap["workers"]] == ["a", "b"]
    assert snap["campaigns"] == [] and snap["agents"]["agents"] == []


async def test_standby_console_shows_the_store_and_controls_campaigns(store: Store) -> None:
    """A standby worker (the console host) serves no switch: campaigns come from the store,
    and a pause made there is written for every worker to pick up."""
    from dialer.app.worker import WorkerService
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.settings import AMISettings, WorkerSettings

    doc = {"name": "c1", "state": "running", "purpose": "service", "mode": "progressive"}
    with store.session() as s:
        apply_campaign(s, parse_campaign({**doc, "queue": "q"}), source=None, actor="t")
    settings = Settings(
        asterisk=(AMISettings(name="pbx1", port=1),),
        worker=WorkerSettings(heartbeat_s=1, dead_after_s=5),
    )
    service = WorkerService(
        store, settings, registry.WorkerIdentity("console"), agi_url="agi://x", standby=True
    )
    await service.register()
    try:
        await service._round()  # one heartbeat round: nothing to claim, the store's view
        assert service.runs == {}
        fleet = service.fleet
        [c] = fleet.campaigns()
        assert (c.name, c.state, c.calls_in_flight) == ("c1", "running", 0)
        assert [w["id"] for w in fleet.workers()] == ["console"]
        await fleet.pause("c1", actor="sup")
        assert [c.state for c in fleet.campaigns()] == ["paused"]
    finally:
        await service.shutdown(0.0)
    with store.session() as s:
        assert [(h.id, h.stopped) for h in registry.health(s, dt.datetime.now(dt.UTC))] == [
            ("console", True)
        ]
