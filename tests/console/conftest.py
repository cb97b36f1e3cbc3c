"""Fixtures: the real floor over a seeded store, and a console serving it on a free port."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from dialer.floor.console import DialerMetrics, start_console
from dialer.floor.service import Dialer
from dialer.store import Store

from .floorkit import CHROMEDRIVER, CHROMIUM, FLAGS, T0, TOKEN, Clock, Console, build_floor, seed


@pytest.fixture
def files(store: Store, tmp_path: Path) -> dict[str, Path]:
    """The seeded store's campaign files, by campaign name."""
    return seed(store, tmp_path)


@pytest.fixture
def floor(store: Store, files: dict[str, Path]) -> Dialer:
    """The real floor over the seeded store, two hours into the shift."""
    return build_floor(store, Clock(dt.datetime.now(dt.UTC), T0 + dt.timedelta(hours=2)))


@pytest.fixture
async def console(floor: Dialer, store: Store) -> AsyncIterator[Console]:
    registry = CollectorRegistry()
    metrics = DialerMetrics(registry)
    runner, port = await start_console(
        floor,
        port=0,
        token=TOKEN,
        registry=registry,
        metrics=metrics,
        store=store,
        push_interval_s=0.2,
    )
    async with aiohttp.ClientSession() as http:
        yield Console(f"http://127.0.0.1:{port}", floor, registry, metrics, http, [])
    await runner.cleanup()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must not fetch anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
