"""The console on a running ``dialer demo``: the real runner's Floor, the simulated PBX, the IVR.

The demo runs with ``keep_running`` on a free console port over SQLite in ``tmp_path``; the
test reads the same database to see whether dialling really stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from dialer.store import open_store
from dialer.store.models import Attempt, AuditEntry, Campaign

from .floorkit import CHROMEDRIVER, CHROMIUM
from .test_console_browser import wait_for

CAMPAIGN = "card-activation-dec"
OTHER = "repayment-reminder-dec"


def token() -> str:
    return os.environ["DIALER_API_TOKEN"]  # tests/conftest.py sets it; the demo keeps it


@contextlib.asynccontextmanager
async def running_demo(workdir: Path, contacts: int = 400) -> AsyncIterator[str]:
    from dialer.app.demo import run_demo

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[dict[str, Any]] = loop.create_future()
    task = loop.create_task(
        run_demo(
            speed=40.0,
            contacts_per_campaign=contacts,
            keep_running=True,
            http_port=0,
            workdir=workdir,
            on_ready=ready.set_result,
        )
    )
    waiters: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiters, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # the demo failed before it was ready: raise its error
    assert ready in done, "demo not ready in 60 s"
    try:
        yield f"http://127.0.0.1:{ready.result()['console'][1]}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def attempts_in_db(workdir: Path) -> dict[str, int]:
    store = open_store(f"sqlite:///{workdir / 'demo.db'}", upgrade=False)
    try:
        with store.session() as s:
            return {
                name: n
                for name, n in s.execute(
                    select(Campaign.name, func.count(Attempt.id))
                    .join(Attempt, Attempt.campaign_id == Campaign.id, isouter=True)
                    .group_by(Campaign.name)
                )
            }
    finally:
        store.dispose()


def audit_actions(workdir: Path) -> list[tuple[str, str]]:
    store = open_store(f"sqlite:///{workdir / 'demo.db'}", upgrade=False)
    try:
        with store.session() as s:
            return [(a.actor, a.action) for a in s.scalars(select(AuditEntry))]
    finally:
        store.dispose()


async def test_api_on_a_running_demo(tmp_path: Path) -> None:
    async with running_demo(tmp_path) as url, aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {token()}"}
        async with http.get(f"{url}/api/campaigns") as r:
            assert r.status == 401

        async def campaign(name: str) -> dict[str, Any]:
            async with http.get(f"{url}/api/campaigns/{name}", headers=auth) as r:
                if r.status == 404:  # the runner has not loaded its campaigns yet
                    return {"attempts": 0}
                assert r.status == 200
                return dict(await r.json())

        # live numbers that move while calls run
        t0 = time.monotonic()
        while (first := (await campaign(CAMPAIGN))["attempts"]) == 0:
            assert time.monotonic() - t0 < 15, "the demo never dialled"
            await asyncio.sleep(0.2)
        while (await campaign(CAMPAIGN))["attempts"] <= first:
            assert time.monotonic() - t0 < 20, "attempts did not move"
            await asyncio.sleep(0.2)
        async with http.get(f"{url}/api/snapshot", headers=auth) as r:
            snap = await r.json()
        assert sum(snap["agents"]["by_state"].values()) > 0
        assert snap["calls"]["calls"] and all(
            "****" in c["phone_masked"] for c in snap["calls"]["calls"]
        )

        async with http.get(f"{url}/metrics") as r:
            fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
        assert {"dialer_campaign_attempts", "dialer_abandon_rate_ratio", "dialer_agents"} <= set(
            fams
        )

        # invalid pacing: refused with the reason, nothing changes; a valid one is live at once
        before = (await campaign(CAMPAIGN))["pacing"]
        async with http.patch(
            f"{url}/api/campaigns/{CAMPAIGN}/pacing", json={"ring_timeout_s": 3}, headers=auth
        ) as r:
            assert r.status == 400 and "ring_timeout_s" in (await r.json())["error"]
        assert (await campaign(CAMPAIGN))["pacing"] == before
        async with http.patch(
            f"{url}/api/campaigns/{CAMPAIGN}/pacing",
            json={"max_lines_per_agent": 1.5},
            headers={**auth, "X-Actor": "supervisor"},
        ) as r:
            assert r.status == 200
        t1 = time.monotonic()
        while (await campaign(CAMPAIGN))["pacing"]["max_lines_per_agent"] != 1.5:
            assert time.monotonic() - t1 < 1.0
            await asyncio.sleep(0.05)

        # pause: dialling of that campaign stops, the other goes on
        async with http.post(
            f"{url}/api/campaigns/{CAMPAIGN}/pause", headers={**auth, "X-Actor": "supervisor"}
        ) as r:
            assert r.status == 200 and (await r.json())["state"] == "paused"
        await asyncio.sleep(0.5)
        paused = await asyncio.to_thread(attempts_in_db, tmp_path)
        await asyncio.sleep(1.5)  # a minute of simulated time
        later = await asyncio.to_thread(attempts_in_db, tmp_path)
        assert later[CAMPAIGN] == paused[CAMPAIGN]
        assert later[OTHER] > paused[OTHER]
        actions = await asyncio.to_thread(audit_actions, tmp_path)
        assert ("console:supervisor", "campaign.pause") in actions


class DemoThread:
    """``dialer demo`` in a thread with its own loop (Selenium blocks)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo", daemon=True)

    async def _start(self) -> str:
        self._cm = running_demo(self.workdir)
        return await self._cm.__aenter__()

    def __enter__(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(90)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._cm.__aexit__(None, None, None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver",
)
def test_page_on_a_running_demo(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with DemoThread(tmp_path) as url:
        browser.get(url + "/")
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="prompt")
        browser.find_element(By.ID, "token").send_keys(token())
        browser.find_element(By.ID, "actor").send_keys("demo-supervisor")
        browser.find_element(By.ID, "login-btn").click()
        wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", what="live")
        row = f'#campaigns tr[data-campaign="{CAMPAIGN}"]'

        def cell(field: str) -> str:
            return str(
                browser.execute_script(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                    f'{row} td[data-field="{field}"]',
                )
            )

        first = int(
            wait_for(
                lambda: re.fullmatch(r"[1-9]\d*", cell("attempts")) and cell("attempts"),
                20,
                "numbers",
            )
        )
        wait_for(lambda: int(cell("attempts")) > first, 20, "attempts moving")
        agents = wait_for(
            lambda: browser.execute_script(
                "return document.querySelectorAll('#agents tbody tr').length"
            ),
            what="agents",
        )
        assert agents > 0
        assert re.fullmatch(r"\d+\.\d\d%", cell("abandon_1h"))

        shot = tmp_path / "demo-console.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("CONSOLE_SCREENSHOT"):
            import shutil

            shutil.copy(shot, os.environ["CONSOLE_SCREENSHOT"] + ".demo.png")

        for _ in range(40):  # the row is re-rendered every second: retry a stale button
            try:
                browser.find_element(By.CSS_SELECTOR, f"{row} button.pause").click()
                break
            except Exception:
                time.sleep(0.05)
        wait_for(lambda: "paused" in cell("state"), 5, "paused on the page")
        time.sleep(0.5)
        paused = attempts_in_db(tmp_path)
        time.sleep(1.5)
        later = attempts_in_db(tmp_path)
        assert later[CAMPAIGN] == paused[CAMPAIGN]  # the pause reached the runner: no more dials
        assert later[OTHER] > paused[OTHER]
        assert ("console:demo-supervisor", "campaign.pause") in audit_actions(tmp_path)

    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert (img.sum(axis=2) < 2.9).mean() > 0.15
