"""Console overhead on a large synthetic floor (not a test; prints figures).

    .venv/bin/python -m tests.console.bench_console

A floor of 10 campaigns, 200 agents, 300 calls and an 8-hour shift at one point a minute,
held in memory so that only the console's own cost is measured: JSON per snapshot, request
latency of /api/snapshot and /metrics, and the server's CPU per second with 20 pages open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import resource
import statistics
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from dialer.floor.console import start_console
from dialer.floor.view import (
    AgentSnapshot,
    AgentState,
    CallSnapshot,
    CampaignSnapshot,
    Dependency,
    Health,
    HistoryPoint,
    RateWindow,
)

TOKEN = "bench-token"
NOW = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)


class BigFloor:
    def __init__(self) -> None:
        states = list(AgentState)
        self._campaigns = [
            CampaignSnapshot(
                name=f"campaign-{i}",
                state="running",
                mode="predictive",
                effective_mode="predictive",
                purpose="service",
                contacts=50_000,
                contacts_done=12_000 + i,
                attempts=30_000,
                calls_in_flight=30,
                dial_level=1.8,
                lines_per_agent=2.1,
                answer_rate=0.42,
                abandon={
                    w: RateWindow(1000, 21, 0.021)
                    for w in ("1m", "1h", "today", "24h", "30d", "to_date", "cap_window")
                },
                abandon_cap=0.03,
                hopper_eligible=4000,
                hopper_reasons={"outside_window": 10, "retry_later": 900, "dnc": 12},
                pacing={"abandon_cap": 0.03, "max_lines_per_agent": 3.0, "ring_timeout_s": 25.0},
                outcomes={"busy": 100, "no_answer": 2000, "agent_handled": 9000},
            )
            for i in range(10)
        ]
        self._agents = [
            AgentSnapshot(
                f"Local/{1000 + i}@agents",
                (f"q{i % 10}",),
                states[i % 5],
                NOW - dt.timedelta(seconds=i),
                i,
            )
            for i in range(200)
        ]
        self._calls = [
            CallSnapshot(100_000 + i, f"campaign-{i % 10}", "ringing", NOW, "+86138****0000")
            for i in range(300)
        ]
        self._history = [
            HistoryPoint(NOW - dt.timedelta(minutes=480 - i), 0.85, 0.02, 200, 300)
            for i in range(480)
        ]

    def now(self) -> dt.datetime:
        return NOW

    def campaigns(self) -> list[CampaignSnapshot]:
        return self._campaigns

    def agents(self) -> list[AgentSnapshot]:
        return self._agents

    def calls(self) -> list[CallSnapshot]:
        return self._calls

    def history(self) -> list[HistoryPoint]:
        return self._history

    def health(self) -> Health:
        return Health(NOW, (Dependency("ami:default", True), Dependency("store", True)), {}, ())

    async def pause(self, campaign: str, *, actor: str) -> None: ...
    async def resume(self, campaign: str, *, actor: str) -> None: ...
    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        return {}

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        return None

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        return []


async def main() -> None:
    runner, port = await start_console(
        BigFloor(), port=0, token=TOKEN, registry=CollectorRegistry()
    )
    url = f"http://127.0.0.1:{port}"
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=hdr) as http:
        for path in ("/api/snapshot", "/metrics"):
            times, size = [], 0
            for _ in range(200):
                t = time.perf_counter()
                async with http.get(url + path) as r:
                    size = len(await r.read())
                times.append(time.perf_counter() - t)
            print(
                f"{path}: {size / 1024:.0f} KiB, median {statistics.median(times) * 1000:.1f} ms, "
                f"p95 {sorted(times)[189] * 1000:.1f} ms (200 sequential requests)"
            )

        async def page(stop: asyncio.Event) -> int:
            n = 0
            async with http.get(url + "/api/events") as r:
                while not stop.is_set():
                    line = await r.content.readline()
                    n += line.startswith(b"event: snapshot")
            return n

        async with http.get(url + "/api/events") as r:
            sizes: list[int] = []
            while len(sizes) < 2:
                line = await r.content.readline()
                if line.startswith(b"data: {"):
                    sizes.append(len(line))
        print(
            f"/api/events: first push {sizes[0] / 1024:.0f} KiB (with the shift history), "
            f"then {sizes[1] / 1024:.0f} KiB per push while the history has no new point"
        )

        stop = asyncio.Event()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(page(stop)) for _ in range(20)]
        await asyncio.sleep(5)
        stop.set()
        await runner.cleanup()  # ends the streams
        counts = await asyncio.gather(*tasks, return_exceptions=True)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - t0
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        got = sum(c for c in counts if isinstance(c, int))
        print(
            f"20 pages on /api/events for {wall:.1f} s: {got} snapshots pushed, "
            f"process CPU {cpu / wall * 100:.0f}% of one core (server and the 20 clients)"
        )
    print(f"(pid {os.getpid()})")


if __name__ == "__main__":
    asyncio.run(main())
