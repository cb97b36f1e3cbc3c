"""The alerts card in a real headless Chromium: open alerts with their stage and age, and an
alert past its deadline shown as an alarm (its row and the banner)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dialer import CONFIG_DIR
from dialer.floor.console import start_console
from dialer.floor.console.alerts import AlertApi
from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import load_alerts
from dialer.store import Store
from dialer.store.models import Contact

from .floorkit import CHROMEDRIVER, CHROMIUM, T0, TOKEN, Clock, build_floor, seed
from .test_console_browser import LiveConsole, wait_for

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver",
)
ALERTS = load_alerts(CONFIG_DIR / "alerts.yaml")


class AlertConsole(LiveConsole):
    def __init__(self, floor: Any, store: Store) -> None:
        super().__init__(floor)
        self.store = store

    async def _start(self) -> int:
        api = AlertApi(ALERTS, self.store, env={})
        self.runner, port = await start_console(
            self.floor, port=0, token=TOKEN, registry=CollectorRegistry(), alerts=api
        )
        self.stopping = None
        return int(port)

    async def _stop(self) -> None:
        await self.runner.cleanup()


def test_alerts_card_shows_stage_age_and_the_overdue_alarm(
    browser: Any, store: Store, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    seed(store, tmp_path)
    floor = build_floor(store, Clock(dt.datetime.now(dt.UTC), T0 + dt.timedelta(hours=2)))
    with store.session() as s:
        s.add(
            Contact(
                campaign_id=1, phone="+8613912340001", timezone="Asia/Shanghai", external_id="C7"
            )
        )
        then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)  # an hour past its deadline
        req = store_alerts.parse_request(
            {"idempotency_key": "late", "type": "transaction_alert", "target": {"customer": "C7"}},
            ALERTS,
            then,
        )
        store_alerts.intake(s, "console", req, ALERTS, then)
    with AlertConsole(floor, store) as url:
        browser.get(url + "/")
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="prompt")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "login-btn").click()
        row = '#alerts tr[data-alert="1"]'

        def text(sel: str) -> str:
            got = browser.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                sel,
            )
            return str(got)

        wait_for(lambda: "past deadline" in text(f"{row} td[data-field=state]"), 10, "overdue")
        assert text(f"{row} td[data-field=stage]") == "1/4"
        assert browser.execute_script(f"return document.querySelector('{row}').className") == "over"
        wait_for(lambda: "past their deadline" in text("#banner"), 10, "the alarm banner")
