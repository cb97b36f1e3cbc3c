"""Late events on the simulated floor: the simulated PBX delivers its AMI events 3 s after it
raised them (stamped when raised, as Asterisk does), as a starved event loop reads them. The
dialer measures the lag, shows it, and a predictive campaign dials at most progressively while
it lasts, then predictively again; one log line each way. On the floor's simulated clock, so a
loaded machine does not change what the test sees."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from test_runner_e2e import QUEUES, SETTINGS, START, campaign, floor_scenario, load, numbers

from dialer.app.demo import SimFloor
from dialer.floor.console.metrics import register_floor
from dialer.floor.loop import CampaignRun
from dialer.pacing.policies import EVENTS_LATE
from dialer.pacing.types import PacingInput
from dialer.store import open_store

DELAY_S = 3.0
LATE_FROM, LATE_UNTIL, END = 60.0, 120.0, 170.0  # simulated seconds


async def test_late_events_make_predictive_dial_progressively(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(sqlite_url)
    load(store, tmp_path, campaign("late", "predictive"), numbers(600))
    floor = SimFloor(
        store,
        SETTINGS,
        start=START,
        speed=None,  # the floor's simulated clock
        scenario=floor_scenario(10, answer=0.5, talk=30.0),
        queues=QUEUES,
        tick_s=0.5,
    )
    seen: list[tuple[float, float, int, int, str]] = []  # (t, lag, n, progressive, mode)
    gauges: list[str] = []

    def observe(run: CampaignRun, inp: PacingInput, n: int) -> None:
        t = floor.elapsed_s
        progressive = max(inp.idle_agents - inp.calls_in_flight, 0)
        seen.append((t, inp.event_lag_s, n, progressive, run.effective_mode))

    caplog.set_level(logging.WARNING, logger="dialer.floor.loop")
    never = asyncio.Event()
    async with floor:
        floor.dialer.on_decision.append(observe)
        registry = CollectorRegistry()
        register_floor(registry, floor.dialer)
        task = asyncio.create_task(floor.dialer.run())
        for at, delay in ((LATE_FROM, DELAY_S), (LATE_UNTIL, 0.0), (END, None)):
            while (left := at - floor.elapsed_s) > 0:
                await floor.wait(never, left)
            gauges.append(generate_latest(registry).decode())
            if delay is not None:
                floor.pbx.faults.delay_events(delay)
        snapshot = {c.name: c for c in floor.dialer.campaigns()}["late"]
        floor.dialer.stop()
        await task
    store.dispose()

    before = [s for s in seen if s[0] < LATE_FROM]
    # the first late event arrives DELAY_S after the first event raised after LATE_FROM
    late_at = min(t for t, lag, *_ in seen if lag > 1.0)
    assert LATE_FROM + DELAY_S <= late_at < LATE_FROM + DELAY_S + 10
    during = [s for s in seen if late_at <= s[0] < LATE_UNTIL]
    after = [s for s in seen if s[0] > LATE_UNTIL + DELAY_S + 15]
    assert before and during and after
    # on time: no lag, and predictive dials ahead of the agents at some decisions
    assert max(lag for _, lag, *_ in before) < 0.1
    assert any(n > prog for _, _, n, prog, _ in before)
    # 3 s late: measured so, and never more than one call per agent seen free
    assert all(DELAY_S - 0.2 <= lag <= DELAY_S + 0.2 for _, lag, *_ in during), [
        s[:2] for s in during
    ]
    assert all(n <= prog for _, _, n, prog, _ in during)
    assert {mode for *_, mode in during} == {EVENTS_LATE}
    assert sum(n for _, _, n, _, _ in during) > 0  # it kept dialling
    # on time again: predictive resumes
    assert max(lag for _, lag, *_ in after) < 0.1
    assert EVENTS_LATE not in {mode for *_, mode in after}
    assert any(n > prog for _, _, n, prog, _ in after)
    lines = [r.getMessage() for r in caplog.records if "events" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "read 3.0 s late" in lines[0] and "on time again" in lines[1]
    # shown: /metrics (on time, late, on time) and the console's snapshot
    lag_lines = [
        [
            ln
            for ln in g.splitlines()
            if ln.startswith('dialer_ami_event_lag_seconds{campaign="late"}')
        ]
        for g in gauges
    ]
    values = [float(ln[0].rsplit(" ", 1)[1]) for ln in lag_lines]
    assert values[0] < 0.1 and abs(values[1] - DELAY_S) < 0.2 and values[2] < 0.1, values
    assert snapshot.event_lag_s < 0.1
