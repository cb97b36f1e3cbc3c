#!/usr/bin/env python3
"""Issue 15: how long from ``AgentConnect`` to the screen-pop in the agent's browser, as a figure.

One agent, signed in to the console as a person, works a predictive campaign on the simulated
floor (the real dialer, console and IVR over the simulated Asterisk, SQLite): logged in to the
queue, ready, with the desktop's event stream (``GET /api/desk/events``) open in an HTTP client
as the page opens it. For each of ``--calls`` calls the script takes the moment the switch's
``AgentConnect`` for that phone reaches the dialer (the desk's own listener) and the moment the
``pop`` event for that call is read by the client; between calls it saves a disposition, as an
agent does, and the next call comes.

The baseline, in the same process, on the same event loop and meanwhile: a bare
server-sent-events round trip - a trigger set in the server, one event written to an open
stream of a second aiohttp app, read by a client (what any pop costs at least). Both are
printed as p50 / p90 / p99 / max in milliseconds, and the pop's figures as a ratio of the
baseline's.

    .venv/bin/python scripts/bench_pop.py [--calls 40] [--speed 30]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry

from dialer.app.demo import SimFloor, demo_start
from dialer.floor.console import start_console
from dialer.lists.campaigns import apply_campaign, load_campaign_file
from dialer.lists.contacts import import_contacts
from dialer.lists.users import Passwords, Role, add_user
from dialer.settings import load_settings
from dialer.store import open_store

PHONE = "PJSIP/bench-01"
PASSWORD = "violet-harbour-ledger-42"
TOKEN = "tQ8-vX2kR7pLm4Zs9WcN1bYh"
QUEUES = """\
[general]
persistentmembers = no
autofill = yes

[bench]
strategy = rrmemory
timeout = 15
retry = 1
wrapuptime = 0
joinempty = yes
ringinuse = no
"""
CAMPAIGN = {
    "name": "pop-bench",
    "state": "running",
    "mode": "predictive",  # one agent: progressive below the minimum team
    "purpose": "collections",
    "queue": "bench",
    "channel": "Local/{number}@customer",
    "caller_id": "95588",
    "max_attempts": 1,
    "fields": {"amount_due": "decimal", "card_number": {"type": "digits", "length": 16}},
    "script": "您好，这里是银行信用卡中心。",
    "dispositions": {"paid_already": {"then": "done"}},
    "pacing": {"hold_limit_s": 60, "ring_timeout_s": 20, "wrapup_s": 0, "abandon_cap": 0.5},
}
SCENARIO = {
    "seed": 5,
    "called_party": {
        "invalid_share": 0.0,
        "busy_share": 0.0,
        "congestion_share": 0.0,
        "answer_probability": 1.0,
        "ring_s": {"dist": "uniform", "mean": 1.5, "sd": 0.3, "min": 1, "max": 2},
        "machine_share": 0.0,
        "hangup_after_s": None,
        "queue_patience_s": None,
    },
    "agents": [],
}


def quantiles(xs: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in xs)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": ms[-1], "n": len(ms)}


async def sse_events(resp: aiohttp.ClientResponse) -> Any:
    """(event, data) pairs of a server-sent-event stream."""
    event = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, line[6:]


class BareSSE:
    """The baseline: one event written on a trigger to an open stream, read by a client."""

    def __init__(self) -> None:
        self.trigger = asyncio.Event()
        self.sent_at = 0.0

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"retry: 1000\n\n")
        try:
            while True:
                await self.trigger.wait()
                self.trigger.clear()
                await resp.write(b"event: ping\ndata: {}\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def measure(self, n: int, gap_s: float) -> list[float]:
        app = web.Application()
        app.router.add_get("/events", self.stream)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        out = []
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/events") as resp,
            ):
                events = sse_events(resp)
                for _ in range(n):
                    await asyncio.sleep(gap_s)
                    t0 = time.monotonic()
                    self.trigger.set()
                    async for name, _ in events:
                        if name == "ping":
                            out.append(time.monotonic() - t0)
                            break
        finally:
            await runner.cleanup()
        return out


def prepare(workdir: Path, calls: int) -> tuple[Any, Any]:
    store = open_store(f"sqlite:///{workdir / 'bench.db'}")
    (workdir / "dialer.yaml").write_text(
        "default_region: CN\ncompliance: {hold_limit_s: 60, abandon_cap: 0.5}\n",
        encoding="utf-8",
    )
    settings = load_settings(workdir / "dialer.yaml")
    (workdir / "queues.conf").write_text(QUEUES, encoding="utf-8")
    cfile = workdir / "pop-bench.yaml"
    cfile.write_text(yaml.safe_dump(CAMPAIGN, allow_unicode=True), encoding="utf-8")
    contacts = workdir / "contacts.csv"
    with contacts.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["phone", "name", "amount_due", "card_number"])
        for i in range(calls + 5):
            phone = f"+86139{i:05d}{(i % 7) + 1}{(i % 5) + 2}{(i % 3) + 5}"
            w.writerow([phone, f"客户{i}", f"{1000 + i}.50", "6222021234567890"])
    cheap = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    with store.session() as s:
        row, _ = apply_campaign(s, load_campaign_file(cfile), source=str(cfile), actor="bench")
        import_contacts(s, row, contacts, default_region="CN", now=dt.datetime.now(dt.UTC))
        add_user(
            s, "bench.agent", Role.AGENT, PASSWORD, actor="bench", passwords=cheap, interface=PHONE
        )
    return store, settings


async def measure_pops(
    workdir: Path, calls: int, speed: float
) -> tuple[list[float], list[float], float]:
    store, settings = prepare(workdir, calls)
    connected: dict[int, float] = {}
    pops: list[float] = []
    sim = SimFloor(
        store,
        settings,
        start=demo_start(dt.date(2026, 12, 1)),
        speed=speed,
        scenario=SCENARIO,
        queues=workdir / "queues.conf",
    )
    t_start = time.monotonic()
    async with sim:
        runner, port = await start_console(
            sim.dialer,
            port=0,
            token=TOKEN,
            registry=CollectorRegistry(),
            store=store,
            passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)),
        )
        url = f"http://127.0.0.1:{port}"
        # the baseline runs meanwhile, on the same loop, under the floor's load
        bare = asyncio.create_task(BareSSE().measure(max(3 * calls, 40), gap_s=0.1))
        sim.dialer.desk.on_connect(lambda c: connected.setdefault(c.attempt_id, time.monotonic()))
        await sim.dialer.load_campaigns()
        loop_task = asyncio.create_task(sim.dialer.run(until_idle=False))
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                login = {"username": "bench.agent", "password": PASSWORD}
                async with http.post(url + "/api/login", json=login) as r:
                    assert r.status == 200, await r.text()
                async with http.post(url + "/api/desk/queues", json={"action": "login"}) as r:
                    assert r.status == 200, await r.text()
                async with http.get(url + "/api/desk/events") as stream:
                    async with http.post(url + "/api/desk/state", json={"state": "ready"}) as r:
                        assert r.status == 200
                    async with asyncio.timeout(30 + calls * 20):
                        async for name, data in sse_events(stream):
                            if name != "pop":
                                continue
                            arrived = time.monotonic()
                            pop = json.loads(data)
                            aid = pop["attempt_id"]
                            pops.append(arrived - connected[aid])
                            if len(pops) >= calls:
                                break
                            body = {"attempt_id": aid, "code": "paid_already"}
                            async with http.post(url + "/api/desk/disposition", json=body) as r:
                                assert r.status == 200, await r.text()
        finally:
            sim.dialer.stop()
            try:
                await asyncio.wait_for(loop_task, 15)
            except (TimeoutError, asyncio.CancelledError):
                pass
            await runner.cleanup()
        baseline = await bare
    return pops, baseline, time.monotonic() - t_start


def row(label: str, q: dict[str, float], base: dict[str, float] | None = None) -> str:
    cells = "".join(f"{q[k]:>10.1f}" for k in ("p50", "p90", "p99", "max"))
    ratio = ""
    if base is not None:
        ratio = "   x" + " x".join(f"{q[k] / base[k]:.1f}" for k in ("p50", "p99"))
    return f"{label:34}{int(q['n']):>5}{cells}{ratio}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--speed", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pop-") as tmp:
        pops, bare, wall = await measure_pops(Path(tmp), args.calls, args.speed)
    base = quantiles(bare)
    print(f"screen-pop latency on the simulated floor (speed {args.speed:g}x), milliseconds")
    print(f"{'':34}{'n':>5}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}   ratio p50 p99")
    print(row("bare SSE round trip (baseline)", base))
    print(row("AgentConnect -> pop at the client", quantiles(pops), base))
    print(f"wall: floor {wall:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
