"""A worker's console shows every worker on the store: heartbeat, state, what each switch said."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

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


def test_workers_panel_in_the_browser(browser: Any, store: Store, tmp_path: Path) -> None:
    """The page lists every worker with its state and, for a live one, each switch's figures."""
    from selenium.webdriver.common.by import By

    from .test_console_browser import wait_for

    now = dt.datetime.now(dt.UTC)
    a, b = (
        registry.WorkerIdentity("w-dead", host="h1"),
        registry.WorkerIdentity("w-live", host="h2"),
    )
    sw = {"ami_ready": True, "live_calls": 12, "originates_sent": 340, "agents": {"talking": 9}}
    with store.session() as s:
        registry.register(s, a, now - dt.timedelta(minutes=3))
        registry.register(s, b, now)
        registry.claim_switch(s, "pbx2", b, now)
        registry.heartbeat(
            s, b, now, {"switches": {"pbx2": sw, "pbx3": {**sw, "ami_ready": False}}}
        )
        health = [h.to_json(now) for h in registry.health(s, now)]
    fleet = Fleet(store, Settings(), dialers=dict)
    fleet.set_health(health)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(
        start_console(fleet, port=0, token=TOKEN, registry=CollectorRegistry(), store=store),
        loop,
    ).result(10)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="prompt")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "login-btn").click()
        wait_for(lambda: browser.find_element(By.ID, "workers-card").is_displayed(), what="panel")
        rows = wait_for(
            lambda: browser.execute_script(
                "return [...document.querySelectorAll('#workers tbody tr')]"
                ".map(r => [r.dataset.worker, r.textContent])"
            ),
            what="worker rows",
        )
        browser.save_screenshot(str(tmp_path / "workers.png"))
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    text = {w: [t for k, t in rows if k == w] for w in ("w-dead", "w-live")}
    assert len(text["w-dead"]) == 1 and "dead" in text["w-dead"][0]
    assert len(text["w-live"]) == 2  # one row per switch it reported
    assert "alive" in text["w-live"][0] and "pbx2" in text["w-live"][0]
    assert "340" in text["w-live"][0] and "talking 9" in text["w-live"][0]
    assert "pbx3" in text["w-live"][1] and "down" in text["w-live"][1]
