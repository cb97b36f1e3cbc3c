"""The console on the REAL runner (``dialer.floor.service.Dialer`` on the simulated floor): pacing
changes through a hot-reloaded campaign file and through ``PATCH .../pacing``.

Issue 9 asks: an invalid pacing change (through the file and through the API) is refused and
nothing changes; a valid one changes the dial level within a second. The dial level is read
where the runner decides it: every pacing decision is observed (``Dialer.on_decision``) with
the idle agents, the calls already in flight for them (ringing, or answered and waiting) and
the calls it places. A power-mode campaign at ``power_ratio`` 1.0 never has more of those than
idle agents; at 3.0 it has up to three per idle agent.

The floor: the simulated PBX with four agents, callers who mostly do not answer (so agents
sit idle and the ratio shows), on a clock running ``SPEED`` times real time. The console is
started by ``dialer.app.compose.serve_console`` exactly as ``dialer run`` starts it; its file
watcher polls the campaigns folder next to the settings file once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sqlalchemy import select

from dialer.app.compose import serve_console
from dialer.app.demo import SimFloor, demo_start
from dialer.lists.campaigns import apply_campaign, load_campaign_file
from dialer.lists.contacts import import_contacts
from dialer.pacing.types import AgentState as PAgent
from dialer.settings import load_settings
from dialer.store import Store
from dialer.store.models import AuditEntry, Campaign

START = demo_start(dt.date(2026, 12, 1))  # a Tuesday, 10:00 in Beijing
QUEUES = Path(__file__).resolve().parent.parent / "runner" / "queues.conf"
SPEED = 20.0  # simulated seconds per real second
AGENTS = 4
#: a valid change must reach the dial level within this many real seconds
WITHIN_S = 1.0
#: the watcher polls once a second; the reload itself then has WITHIN_S
WATCH_POLL_S = 1.0


def campaign_doc(name: str, *, power_ratio: float = 1.0) -> dict[str, Any]:
    return {
        "name": name,
        "state": "running",
        "mode": "power",
        "queue": "sales",
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "max_attempts": 1,
        "retry": {},
        "pacing": {
            "power_ratio": power_ratio,
            "ring_timeout_s": 20,
            "wrapup_s": 3,
            "calls_per_second": 50,
            "abandon_cap": 0.5,  # power mode falls back to progressive over the cap
        },
    }


def scenario() -> dict[str, Any]:
    """Four agents; three callers in ten never answer, so idle agents are the rule."""
    return {
        "seed": 11,
        "called_party": {
            "invalid_share": 0.0,
            "busy_share": 0.0,
            "congestion_share": 0.0,
            "answer_probability": 0.3,
            "ring_s": {"dist": "uniform", "mean": 4, "sd": 2, "min": 2, "max": 8},
            "machine_share": 0.0,
            "hangup_after_s": None,
            "queue_patience_s": None,
        },
        "agents": [
            {
                "queue": "sales",
                "count": AGENTS,
                "interface": "PJSIP/t-{n:02d}",
                "answer_s": 0.2,
                "talk_s": {"dist": "fixed", "mean": 20},
                "wrapup_s": 3,
            }
        ],
    }


def numbers(n: int) -> list[str]:
    """Mobiles whose last three digits avoid the simulator's deterministic test numbers."""
    return [f"+86139{i:05d}{(i % 7) + 1}{(i % 5) + 2}{(i % 3) + 5}" for i in range(n)]


def write_yaml(path: Path, doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    # a later edit of the same size inside the file system's timestamp granularity would be
    # skipped by an mtime+size watcher: make every edit visible as a new mtime
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@dataclass
class Decision:
    at: float  # time.monotonic() when the runner decided
    idle: int
    in_flight: int  # ringing or answered-and-waiting calls of the campaign
    placed: int

    @property
    def lines(self) -> int:
        """Calls working for the idle agents once this decision is carried out."""
        return self.in_flight + self.placed


@dataclass
class Live:
    floor: SimFloor
    url: str
    http: aiohttp.ClientSession
    campaign_file: Path
    decisions: list[Decision] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {os.environ['DIALER_API_TOKEN']}"}

    async def campaign(self, name: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/api/campaigns/{name}", headers=self.auth) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def reloads(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/api/reloads", headers=self.auth) as r:
            assert r.status == 200
            return list(await r.json())

    def since(self, t: float) -> list[Decision]:
        return [d for d in self.decisions if d.at >= t]

    async def wait_for_idle_decisions(self, count: int = 20, timeout: float = 15.0) -> float:
        """Until the runner has decided ``count`` times with idle agents; returns the mark."""
        t0 = time.monotonic()
        while sum(1 for d in self.decisions if d.idle > 0 and d.at >= t0) < count:
            assert time.monotonic() - t0 < timeout, "the runner never saw idle agents"
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def first_above_one(self, t: float, within: float) -> Decision:
        """The first decision after ``t`` that works more than one line per idle agent."""
        while True:
            hits = [d for d in self.since(t) if d.idle > 0 and d.lines > d.idle]
            if hits:
                return hits[0]
            assert time.monotonic() - t < within, (
                "no decision above one line per idle agent",
                [(d.idle, d.in_flight, d.placed) for d in self.since(t)][:20],
            )
            await asyncio.sleep(0.01)


def audit(store: Store, name: str, action: str) -> list[AuditEntry]:
    with store.session() as s:
        cid = s.scalars(select(Campaign.id).where(Campaign.name == name)).one()
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.campaign_id == cid, AuditEntry.action == action)
        )
        return [
            AuditEntry(actor=a.actor, action=a.action, campaign_id=cid, detail=dict(a.detail or {}))
            for a in rows
        ]


def stored_pacing(store: Store, name: str) -> dict[str, Any]:
    with store.session() as s:
        row = s.scalars(select(Campaign).where(Campaign.name == name)).one()
        return dict(row.spec["pacing"])


@contextlib.asynccontextmanager
async def live_floor(store: Store, tmp_path: Path, name: str) -> AsyncIterator[Live]:
    """Settings file + campaigns folder in ``tmp_path``; the campaign applied from its file,
    contacts imported; the simulated floor, the runner and its console running."""
    settings_file = tmp_path / "dialer.yaml"
    settings_file.write_text(
        "default_region: CN\ncampaigns_dir: campaigns\ncompliance: {abandon_cap: 0.5}\n",
        encoding="utf-8",
    )
    settings = load_settings(settings_file)
    (tmp_path / "campaigns").mkdir()
    campaign_file = tmp_path / "campaigns" / f"{name}.yaml"
    write_yaml(campaign_file, campaign_doc(name))
    contacts = tmp_path / f"{name}.csv"
    with contacts.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["phone", "name"])
        w.writerows([p, "客户"] for p in numbers(400))
    with store.session() as s:
        row, _ = apply_campaign(
            s, load_campaign_file(campaign_file), source=str(campaign_file.resolve()), actor="test"
        )
        report = import_contacts(
            s, row, contacts, default_region="CN", now=START.astimezone(dt.UTC)
        )
        assert report.imported == 400

    floor = SimFloor(
        store, settings, start=START, speed=SPEED, scenario=scenario(), queues=QUEUES, tick_s=0.5
    )
    async with floor:
        runner, port = await serve_console(
            floor.dialer, host="127.0.0.1", port=0, watch_config=True, sighup=False
        )
        live = Live(floor, f"http://127.0.0.1:{port}", aiohttp.ClientSession(), campaign_file)

        def observe(run: Any, inp: Any, n: int) -> None:
            idle = int((inp.agent_state == PAgent.IDLE).sum())
            live.decisions.append(Decision(time.monotonic(), idle, int(inp.calls_in_flight), n))

        floor.dialer.on_decision.append(observe)
        task = asyncio.create_task(floor.dialer.run(until_idle=False))
        try:
            yield live
            assert not task.done(), task  # the runner must still be dialling
        finally:
            floor.dialer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            await live.http.close()
            await runner.cleanup()


def assert_ratio_one(decisions: list[Decision]) -> None:
    """Power ratio 1.0: never more calls working than idle agents."""
    assert decisions
    for d in decisions:
        assert d.lines <= d.idle or d.placed == 0, d


async def test_pacing_through_the_campaign_file_is_hot_reloaded(
    store: Store, tmp_path: Path
) -> None:
    name = "hot-power"
    async with live_floor(store, tmp_path, name) as live:
        mark = await live.wait_for_idle_decisions()
        before = await live.campaign(name)
        assert before["pacing"]["power_ratio"] == 1.0 and before.get("last_error") is None
        assert before["pacing"] == stored_pacing(store, name)
        assert_ratio_one(live.decisions)

        # an invalid value: refused with the reason (reload log and campaign), nothing changes
        write_yaml(live.campaign_file, campaign_doc(name, power_ratio=0.5))
        t0 = time.monotonic()
        while not (refused := [e for e in await live.reloads() if not e["ok"]]):
            assert time.monotonic() - t0 < WATCH_POLL_S + 1.5, "the invalid file was not seen"
            await asyncio.sleep(0.05)
        assert len(refused) == 1
        assert refused[0]["actor"] == "file-watcher"
        assert refused[0]["path"] == str(live.campaign_file)
        assert "power_ratio" in refused[0]["error"]
        assert "greater than or equal to 1" in refused[0]["error"]
        now = await live.campaign(name)
        assert "power_ratio" in now["last_error"] and "refused" in now["last_error"]
        assert now["pacing"] == before["pacing"]
        assert now["state"] == "running" and now["mode"] == "power"
        assert stored_pacing(store, name) == before["pacing"]
        assert live.floor.dialer.loop.run_named(name).spec.pacing.power_ratio == 1.0
        assert audit(store, name, "campaign.apply") == []
        await asyncio.sleep(0.5)  # the running settings stay: still one line per idle agent
        assert_ratio_one(live.since(mark))

        # a valid change: the running campaign takes it, audited, and the dial level follows
        write_yaml(live.campaign_file, campaign_doc(name, power_ratio=3.0))
        t1 = time.monotonic()
        while (now := await live.campaign(name))["pacing"]["power_ratio"] != 3.0:
            assert time.monotonic() - t1 < WATCH_POLL_S + WITHIN_S, now["pacing"]
            await asyncio.sleep(0.02)
        applied_after = time.monotonic() - t1
        assert now.get("last_error") is None
        assert now["pacing"] == {**before["pacing"], "power_ratio": 3.0}
        assert stored_pacing(store, name)["power_ratio"] == 3.0
        ok = [e for e in await live.reloads() if e["ok"]]
        assert ok and ok[-1]["changed"] == [name]
        rows = audit(store, name, "campaign.apply")
        assert len(rows) == 1 and rows[0].actor == "file-watcher"
        assert rows[0].detail["source"] == str(live.campaign_file.resolve())
        hit = await live.first_above_one(t1, WATCH_POLL_S + WITHIN_S)
        assert hit.lines <= 3 * hit.idle
        print(
            f"file reload: pacing live after {applied_after:.2f} s, dial level above one line "
            f"per idle agent after {hit.at - t1:.2f} s (poll interval {WATCH_POLL_S} s)"
        )


async def test_pacing_patch_changes_the_dial_level_within_a_second(
    store: Store, tmp_path: Path
) -> None:
    name = "api-power"
    async with live_floor(store, tmp_path, name) as live:
        auth = {**live.auth, "X-Actor": "supervisor"}
        url = f"{live.url}/api/campaigns/{name}/pacing"
        mark = await live.wait_for_idle_decisions()
        before = await live.campaign(name)
        assert before["pacing"]["power_ratio"] == 1.0

        # without the token: 401, nothing changes
        async with live.http.patch(url, json={"power_ratio": 3.0}) as r:
            assert r.status == 401
        # an invalid value: 400 with the reason, nothing changes, nothing audited
        async with live.http.patch(url, json={"ring_timeout_s": 5}, headers=auth) as r:
            assert r.status == 400
            assert "ring_timeout_s" in (await r.json())["error"]
        async with live.http.patch(
            url, json={"power_ratio": 3.0, "no_such_knob": 1}, headers=auth
        ) as r:
            assert r.status == 400 and "no_such_knob" in (await r.json())["error"]
        assert (await live.campaign(name))["pacing"] == before["pacing"]
        assert stored_pacing(store, name) == before["pacing"]
        assert live.floor.dialer.loop.run_named(name).spec.pacing.power_ratio == 1.0
        assert audit(store, name, "campaign.pacing") == []
        await asyncio.sleep(0.3)
        assert_ratio_one(live.since(mark))

        # a valid change: applied at once, audited with who, and the dial level follows
        t0 = time.monotonic()
        async with live.http.patch(url, json={"power_ratio": 3.0}, headers=auth) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["pacing"]["power_ratio"] == 3.0
        answered_after = time.monotonic() - t0
        hit = await live.first_above_one(t0, WITHIN_S)
        assert hit.lines <= 3 * hit.idle
        # the API shows it too: more calls in flight than agents (impossible at ratio 1.0)
        peak = 0
        while peak <= AGENTS:
            peak = max(peak, (await live.campaign(name))["calls_in_flight"])
            assert time.monotonic() - t0 < WITHIN_S + 0.5, ("calls in flight", peak)
        seen_after = time.monotonic() - t0
        assert (await live.campaign(name))["pacing"] == {**before["pacing"], "power_ratio": 3.0}
        rows = audit(store, name, "campaign.pacing")
        assert len(rows) == 1 and rows[0].actor == "console:supervisor"
        assert rows[0].detail["changes"] == {"power_ratio": 3.0}
        assert rows[0].detail["before"]["power_ratio"] == 1.0
        assert rows[0].detail["after"]["power_ratio"] == 3.0
        print(
            f"PATCH answered after {answered_after:.3f} s; first decision above one line per "
            f"idle agent after {hit.at - t0:.3f} s ({hit.lines} lines for {hit.idle} idle); "
            f"{peak} calls in flight on /api/campaigns after {seen_after:.2f} s"
        )
