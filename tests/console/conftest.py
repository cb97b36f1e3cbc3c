"""Fixtures: a seeded store-backed floor, and a console serving it on a free port."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from dialer.console import DialerMetrics, start_console
from dialer.store import Store

from .floorkit import T0, TOKEN, Clock, Console, StoreFloor, seed


@pytest.fixture
def floor(store: Store, tmp_path: Path) -> StoreFloor:
    files = seed(store, tmp_path)
    return StoreFloor(store, Clock(dt.datetime.now(dt.UTC), T0 + dt.timedelta(hours=2)), files)


@pytest.fixture
async def console(floor: StoreFloor, store: Store) -> AsyncIterator[Console]:
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
