#!/usr/bin/env python3
"""Benchmark the simulated PBX (not a test: prints figures).

Part A - load at speed 1: one process keeps ~2,000 concurrent calls and 500 simulated agents
busy (a quarter of the calls go to the agents' queue, the rest answer and stay on the line),
with one AMI client reading every event over TCP. Reports concurrent calls, events per
second, CPU share and timing accuracy.

Part B - speed: the same kind of load, smaller, at increasing ``--speed`` factors; reports
how far ring and talk times (measured from event timestamps, in simulated seconds) drift
from the scenario's fixed values, and the highest speed at which they stay within 5%.

    .venv/bin/python scripts/bench_sim.py                 # both parts (~13 min)
    .venv/bin/python scripts/bench_sim.py --part a --seconds 400
    .venv/bin/python scripts/bench_sim.py --part b
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from typing import Any

from dialer.sim import RealClock, SimPbx
from dialer.sim.engine import OriginateRequest
from dialer.sim.events import AmiEvent

SECRET = "bench-secret"
RING_S = 8.0
TALK_S = 60.0
HOLD_S = 180.0


def scenario(agents: int) -> dict[str, Any]:
    return {
        "seed": 1,
        "called_party": {"answer_probability": 0.85, "ring_s": RING_S, "machine_share": 0.0},
        "agents": [
            {
                "queue": "activation-agents",
                "count": agents,
                "interface": "PJSIP/bench-{n:04d}",
                "answer_s": 0.5,
                "talk_s": TALK_S,
                "wrapup_s": 2,
                "exclusive": True,
            }
        ],
    }


def request(i: int, to_queue: bool) -> OriginateRequest:
    cid = f"bench-{i:09d}"
    if to_queue:
        return OriginateRequest(
            channel=f"Local/+86138{i:08d}@customer",
            context="dialer-outbound",
            exten="s",
            priority="1",
            timeout_ms=30000,
            callerid=("Bank", "95588"),
            channel_id=cid,
            other_channel_id=cid + "-2",
            variables=(
                ("DIALER_ATTEMPT", str(i)),
                ("DIALER_CAMPAIGN", "bench"),
                ("DIALER_FLOW", ""),
                ("DIALER_QUEUE", "activation-agents"),
                ("DIALER_HOLD", "120"),
                ("DIALER_AMD", "off"),
                ("DIALER_AGI", "agi://127.0.0.1:1"),
                ("DIALER_LANG", "zh"),
            ),
            action_id=f"o{i}",
            is_async=True,
        )
    return OriginateRequest(
        channel=f"Local/+86139{i:08d}@customer",
        application="Wait",
        data=str(HOLD_S),
        timeout_ms=30000,
        callerid=("Bank", "95588"),
        channel_id=cid,
        action_id=f"o{i}",
        is_async=True,
    )


class Meter:
    """Collects timings from the event stream (simulated seconds from event timestamps)."""

    def __init__(self) -> None:
        self.events = 0
        self.dial_begin: dict[str, float] = {}
        self.rings: list[float] = []
        self.connect: dict[str, float] = {}
        self.talks: list[float] = []

    def __call__(self, ev: AmiEvent) -> None:
        self.events += 1
        if (
            ev.name == "DialBegin"
            and (ev.get("DestChannel") or "").endswith(";1")
            and not ev.get("Channel")
        ):
            self.dial_begin[ev.get("DestUniqueid") or ""] = ev.timestamp
        elif ev.name == "DialEnd" and ev.get("DialStatus") == "ANSWER" and not ev.get("Channel"):
            t0 = self.dial_begin.pop(ev.get("DestUniqueid") or "", None)
            if t0 is not None:
                self.rings.append(ev.timestamp - t0)
        elif ev.name == "AgentConnect":
            self.connect[ev.get("Uniqueid") or ""] = ev.timestamp
        elif ev.name == "AgentComplete":
            t0 = self.connect.pop(ev.get("Uniqueid") or "", None)
            if t0 is not None:
                self.talks.append(ev.timestamp - t0)


async def ami_reader(port: int, counter: list[int]) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    w.write(f"Action: Login\r\nUsername: dialer\r\nSecret: {SECRET}\r\n\r\n".encode())
    try:
        while True:
            data = await r.read(1 << 16)
            if not data:
                break
            counter[0] += data.count(b"\r\n\r\n")
    except asyncio.CancelledError:
        w.close()
        raise


async def run(
    speed: float, agents: int, rate_wait: float, rate_queue: float, seconds: float, verbose: bool
) -> dict[str, float]:
    """Offer calls for ``seconds`` of wall time; returns the figures."""
    clock = RealClock(speed)
    pbx = SimPbx(clock=clock, scenario=scenario(agents), secret=SECRET)
    qm = pbx.engine.queues
    meter = Meter()
    pbx.engine.listeners.append(meter)
    port = await pbx.start()
    counter = [0]
    reader = asyncio.ensure_future(ami_reader(port, counter))
    rng = random.Random(2)
    e = pbx.engine
    t_start = time.monotonic()
    cpu_start = time.process_time()
    i = 0
    peak = 0
    samples: list[int] = []
    window: tuple[float, float, int, int] | None = None
    next_report = t_start + 10
    sim_next = clock.now()
    while time.monotonic() - t_start < seconds:
        # Poisson arrivals in simulated time
        now = clock.now()
        while sim_next <= now:
            to_queue = rng.random() < rate_queue / (rate_queue + rate_wait)
            e.spawn(e.originate(request(i, to_queue)))
            i += 1
            sim_next += rng.expovariate(rate_queue + rate_wait)
        await asyncio.sleep(0.01)
        calls = sum(1 for c in e.channels.values() if c.is_one)
        peak = max(peak, calls)
        wall = time.monotonic() - t_start
        if wall > seconds * 0.6:
            samples.append(calls)
            if window is None:
                window = (time.monotonic(), time.process_time(), meter.events, counter[0])
        if verbose and time.monotonic() >= next_report:
            next_report += 10
            print(
                f"  t={wall:5.0f}s sim={clock.now():7.0f}s calls={calls:5d} "
                f"agents-busy={len(qm.busy):4d} events={meter.events}",
                flush=True,
            )
    assert window is not None
    w_t, w_cpu, w_ev, w_bytes = window
    dt = time.monotonic() - w_t
    figures = {
        "speed": speed,
        "originated": float(i),
        "peak_calls": float(peak),
        "steady_calls": float(statistics.mean(samples)) if samples else 0.0,
        "events_per_s": (meter.events - w_ev) / dt,
        "ami_messages_per_s": (counter[0] - w_bytes) / dt,
        "cpu_share": (time.process_time() - w_cpu) / dt,
        "cpu_total_s": time.process_time() - cpu_start,
        "ring_mean": statistics.mean(meter.rings) if meter.rings else 0.0,
        "talk_mean": statistics.mean(meter.talks) if meter.talks else 0.0,
        "rings": float(len(meter.rings)),
        "talks": float(len(meter.talks)),
    }
    reader.cancel()
    try:
        await reader
    except asyncio.CancelledError:
        pass
    await pbx.stop()
    return figures


def report(f: dict[str, float]) -> str:
    ring_err = abs(f["ring_mean"] - RING_S) / RING_S if f["rings"] else float("nan")
    talk_err = abs(f["talk_mean"] - TALK_S) / TALK_S if f["talks"] else float("nan")
    return (
        f"speed x{f['speed']:g}: originated {f['originated']:.0f}, concurrent calls "
        f"steady {f['steady_calls']:.0f} (peak {f['peak_calls']:.0f}), "
        f"{f['events_per_s']:.0f} events/s ({f['ami_messages_per_s']:.0f} AMI msgs/s read), "
        f"CPU {100 * f['cpu_share']:.0f}% of one core; ring {f['ring_mean']:.2f}s "
        f"(err {100 * ring_err:.1f}%, n={f['rings']:.0f}), talk {f['talk_mean']:.2f}s "
        f"(err {100 * talk_err:.1f}%, n={f['talks']:.0f})"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=400.0, help="wall seconds for part A")
    ap.add_argument("--agents", type=int, default=500)
    args = ap.parse_args()
    os.environ.setdefault("DIALER_AMI_SECRET", SECRET)
    if args.part in ("a", "both"):
        # >2,000 concurrent: 10.5 calls/s holding ~190 s, 8.5 calls/s to the 500 agents (~60 s)
        print("Part A: load at speed 1", flush=True)
        f = await run(
            1.0, args.agents, rate_wait=10.5, rate_queue=8.5, seconds=args.seconds, verbose=True
        )
        print(report(f), flush=True)
    if args.part in ("b", "both"):
        print("Part B: timing accuracy by speed (scaled load ~300 concurrent calls)", flush=True)
        best = 0.0
        for speed in (2, 5, 10, 20, 50, 100):
            f = await run(
                float(speed),
                100,
                rate_wait=1.6,
                rate_queue=0.6,
                seconds=max(20.0, 400 / speed),
                verbose=False,
            )
            print("  " + report(f), flush=True)
            errs = [abs(f["ring_mean"] - RING_S) / RING_S, abs(f["talk_mean"] - TALK_S) / TALK_S]
            if f["talks"] >= 20 and max(errs) <= 0.05:
                best = float(speed)
        print(f"highest speed with ring and talk times within 5%: x{best:g}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
