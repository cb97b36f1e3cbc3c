"""The live page in a real headless Chromium (Debian's chromium + chromium-driver).

Skips when either is absent. Selenium is pointed at /usr/bin/chromedriver and
/usr/bin/chromium explicitly and runs offline, so selenium-manager never downloads anything.
The console and a store-backed floor run in a thread with their own event loop while the
floor plays a call every 0.3 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.floor.console import start_console
from dialer.floor.service import Dialer
from dialer.store import Store
from dialer.store.models import AuditEntry

from .floorkit import CARD, CHROMEDRIVER, CHROMIUM, T0, TOKEN, Clock, build_floor, run_ticks, seed

NAME = "card-activation-test"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver",
)


class LiveConsole:
    """The console in a thread with its own loop (Selenium blocks)."""

    def __init__(self, floor: Dialer) -> None:
        self.floor = floor
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="console", daemon=True)

    async def _start(self) -> int:
        self.runner, port = await start_console(
            self.floor, port=0, token=TOKEN, registry=CollectorRegistry(), push_interval_s=0.3
        )
        self.stopping = asyncio.Event()
        self.ticker = asyncio.get_running_loop().create_task(
            run_ticks(self.floor, 0.3, self.stopping)
        )
        return port

    async def _stop(self) -> None:
        self.stopping.set()
        await self.ticker
        await self.runner.cleanup()

    def __enter__(self) -> str:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_for(cond: Callable[[], Any], timeout: float = 8.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = cond()
        except Exception as exc:  # stale elements while the page re-renders
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or cond}: {last!r}")


def test_live_page(browser: Any, store: Store, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    files = seed(store, tmp_path)
    floor = build_floor(store, Clock(dt.datetime.now(dt.UTC), T0 + dt.timedelta(hours=2)))
    with LiveConsole(floor) as url:
        browser.get(url + "/")
        # token prompt on first load
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="token prompt")
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "login-btn").click()
        wait_for(
            lambda: "Wrong token" in browser.find_element(By.ID, "login-msg").text, what="refusal"
        )
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "actor").send_keys("selenium")
        browser.find_element(By.ID, "login-btn").click()
        wait_for(
            lambda: not browser.find_element(By.ID, "login").is_displayed(), what="prompt closed"
        )
        wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", what="live")
        # the cookie is HttpOnly: the page's script cannot read it
        assert "dialer_session" not in browser.execute_script("return document.cookie")

        row = f'#campaigns tr[data-campaign="{NAME}"]'

        def js(sel: str, prop: str = "textContent") -> Any:
            # one atomic read inside the page: the tables are re-rendered on every push, so an
            # element Selenium found can go stale before its text is read
            return browser.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e[arguments[1]] : null;",
                sel,
                prop,
            )

        def cell(field: str) -> str:
            return str(js(f'{row} td[data-field="{field}"]'))

        def click(sel: str) -> None:
            for _ in range(40):
                try:
                    browser.find_element(By.CSS_SELECTOR, sel).click()
                    return
                except StaleElementReferenceException:
                    time.sleep(0.05)
            raise AssertionError(f"could not click {sel}")

        first = int(
            wait_for(
                lambda: re.fullmatch(r"\d+", cell("attempts")) and cell("attempts"), what="numbers"
            )
        )
        assert first >= 40
        later = int(
            wait_for(
                lambda: int(cell("attempts")) > first + 2 and cell("attempts"),
                what="numbers moving",
            )
        )
        assert later > first
        assert re.fullmatch(r"\d+\.\d\d%", cell("abandon_30d"))
        assert "over" in js(f'{row} td[data-field="abandon_30d"]', "className")
        assert "OVER the cap" in browser.find_element(By.ID, "banner").text
        # the seeded floor's switch never connected: the page says so, whatever "live" says
        assert "ami:default DOWN" in browser.find_element(By.ID, "banner").text
        assert re.fullmatch(r"\d/6", cell("progress").strip())
        agent_rows = browser.execute_script(
            "return [...document.querySelectorAll('#agents tbody tr')].map(r => r.textContent)"
        )
        assert len(agent_rows) == 5
        assert all(re.search(r"\d+:\d\d", r) for r in agent_rows)
        wait_for(lambda: js("#calls tbody tr"), what="calls")
        assert "placeholder" not in browser.page_source.split("<tbody>", 1)[1][:200]
        painted = browser.execute_script(
            "const c=document.getElementById('plot'), d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;"
            "let n=0; for (let i=3;i<d.length;i+=4) if (d[i]>0) n++; return n;"
        )
        assert painted > 2000  # axes, labels and two lines were drawn
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(u.startswith(url) for u in loaded), loaded  # works offline: no CDN

        # an invalid pacing change is refused with the reason; a valid one is applied
        click(f"{row} button.pacing")
        box = browser.find_element(
            By.CSS_SELECTOR, '#pacing-fields input[name="max_lines_per_agent"]'
        )
        box.clear()
        box.send_keys("20")
        browser.find_element(By.CSS_SELECTOR, '#pacing-form button[type="submit"]').click()
        wait_for(
            lambda: "max_lines_per_agent" in browser.find_element(By.ID, "pacing-msg").text,
            what="refusal",
        )
        assert "err" in browser.find_element(By.ID, "pacing-msg").get_attribute("class")
        assert [c.pacing["max_lines_per_agent"] for c in floor.campaigns() if c.name == NAME] == [
            3.0
        ]
        box.clear()
        box.send_keys("2.5")
        browser.find_element(By.CSS_SELECTOR, '#pacing-form button[type="submit"]').click()
        wait_for(
            lambda: "applied" in browser.find_element(By.ID, "pacing-msg").text, what="applied"
        )
        assert [c.pacing["max_lines_per_agent"] for c in floor.campaigns() if c.name == NAME] == [
            2.5
        ]

        # preview mode: the agent asks for the next contact; it shows masked
        Select(browser.find_element(By.ID, "pacing-campaign")).select_by_value("preview-test")
        wait_for(lambda: js("#preview", "className") == "", what="preview panel")
        click("#preview-btn")
        out = wait_for(lambda: js("#preview-out"), what="preview contact")
        assert "****" in out and CARD not in out

        # an invalid campaign file: "Reload files" is refused, the reason is on the page
        path = files[NAME]
        path.write_text(path.read_text().replace("ring_timeout_s: 25", "ring_timeout_s: 5"))
        click("#reload-btn")
        wait_for(lambda: "Reload refused" in (js("#banner") or ""), what="refusal banner")
        assert "ring_timeout_s" in js("#banner")
        wait_for(lambda: "ring_timeout_s" in (js(f"{row} + tr.error-row") or ""), what="error row")
        assert [c.pacing["ring_timeout_s"] for c in floor.campaigns() if c.name == NAME] == [25.0]

        if os.environ.get("CONSOLE_SCREENSHOT"):  # the lower half, for looking at by eye
            browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            time.sleep(0.3)
            browser.save_screenshot(os.environ["CONSOLE_SCREENSHOT"] + ".bottom.png")

        shot = tmp_path / "console.png"
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        browser.save_screenshot(str(shot))

        # pause from the page reaches the floor and dialling stops
        click(f"{row} button.pause")
        wait_for(
            lambda: [c.state for c in floor.campaigns() if c.name == NAME] == ["paused"],
            what="paused",
        )
        wait_for(lambda: js(f"{row} button.resume"), what="resume button")
        [n_paused] = [c.attempts for c in floor.campaigns() if c.name == NAME]
        time.sleep(1.0)  # ~3 more ticks of the floor: none may dial this campaign
        assert [c.attempts for c in floor.campaigns() if c.name == NAME] == [n_paused]
        assert cell("attempts") == str(n_paused)
        with store.session() as s:
            actors = [(a.actor, a.action) for a in s.scalars(select(AuditEntry))]
        assert ("console:selenium", AuditAction.CAMPAIGN_PAUSE) in actors
        assert ("console:selenium", AuditAction.CAMPAIGN_PACING) in actors

    from matplotlib.image import imread

    keep = os.environ.get("CONSOLE_SCREENSHOT")
    if keep:  # for looking at it by eye
        shutil.copy(shot, keep)
    img = imread(shot)[..., :3]
    assert img.shape[0] >= 700 and img.shape[1] >= 1300
    nonwhite = (img.sum(axis=2) < 2.9).mean()
    assert nonwhite > 0.15  # not a blank page
    assert np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0).shape[0] > 50
