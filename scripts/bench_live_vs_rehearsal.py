"""The live dialer against its rehearsal: same settings, same world, two engines.

Runs one predictive (or any) campaign on the simulated PBX - 20 agents, answer rate 0.30,
anchor20's talk and wrap-up times - through the real runner, AMI adapter, tracker and store,
at ``--speed`` times real time; then rehearses the same settings with ``dialer simulate``'s
engine (virtual time, same distributions) and prints both side by side with the differences.

    .venv/bin/python scripts/bench_live_vs_rehearsal.py [--minutes 60] [--speed 10] [--policy predictive]

Both start cold (every agent idle at t=0, estimators at the campaign's cold start) and are
measured over the whole run. Occupancy is (talk + wrap-up) / logged-in time in both; the live
figure also counts the agent's ring time, which is ~0 here (auto-answer agents).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")

from sqlalchemy import select  # noqa: E402

from dialer.app.demo import SimFloor, demo_start  # noqa: E402
from dialer.lists.campaigns import apply_campaign, parse_campaign  # noqa: E402
from dialer.lists.contacts import import_contacts  # noqa: E402
from dialer.pacing.policies import Policy  # noqa: E402
from dialer.pacing.rehearsal import rehearse  # noqa: E402
from dialer.pacing.scenario import parse_scenario  # noqa: E402
from dialer.settings import Settings  # noqa: E402
from dialer.store import open_store  # noqa: E402
from dialer.store.models import Attempt  # noqa: E402

AGENTS = 20
ANSWER = 0.30
RING = {"mean": 12.0, "sd": 5.0, "min": 2.0, "max": 24.0}  # ~ anchor20's gamma(4, 2.5) + 2
TALK = {"mean": 90.0, "sd": 90.0}
WRAP = 10.0
HOLD = 2
RING_TIMEOUT = 25


def campaign_doc(mode: str) -> dict[str, Any]:
    return {
        "name": "live-vs-rehearsal",
        "mode": mode,
        "queue": "sales",
        "channel": "Local/{number}@customer",
        "max_attempts": 1,
        "pacing": {
            "abandon_cap": 0.03,
            "hold_limit_s": HOLD,
            "ring_timeout_s": RING_TIMEOUT,
            "wrapup_s": WRAP,
            "max_lines_per_agent": 5.0,
            "calls_per_second": 50,
        },
    }


def sim_scenario(
    agents: int = AGENTS, talk: dict[str, float] = TALK, seed: int = 4242
) -> dict[str, Any]:
    return {
        "seed": seed,
        "called_party": {
            "invalid_share": 0.0,
            "busy_share": 0.0,
            "congestion_share": 0.0,
            "answer_probability": ANSWER,
            "ring_s": {"dist": "lognormal", **RING},
            "machine_share": 0.0,
            "hangup_after_s": None,
            "queue_patience_s": None,
        },
        "agents": [
            {
                "queue": "sales",
                "count": agents,
                "interface": "PJSIP/bench-{n:02d}",
                "answer_s": 0.0,
                "no_answer_probability": 0.0,
                "talk_s": {"dist": "lognormal", **talk, "min": 1.0},
                "wrapup_s": WRAP,
            }
        ],
    }


def rehearsal_scenario(
    duration_s: float, agents: int = AGENTS, talk: dict[str, float] = TALK
) -> dict[str, Any]:
    return {
        "name": "live-twin",
        "duration_s": duration_s,
        "agents": agents,
        "answer_rate": ANSWER,
        "ring_answered_s": {
            "dist": "lognormal",
            "mean": RING["mean"],
            "sd": RING["sd"],
            "min": RING["min"],
            "max": RING["max"],
        },
        "no_answer_release_s": RING_TIMEOUT,
        "talk_s": {"dist": "lognormal", "mean": talk["mean"], "sd": talk["sd"]},
        "wrap_s": WRAP,
        "hold_s": HOLD,
        "abandon_target": 0.03,
        "max_lines_per_agent": 5.0,
    }


async def live(
    minutes: float,
    speed: float | None,
    policy: str,
    workdir: Path,
    *,
    agents: int = AGENTS,
    talk: dict[str, float] = TALK,
    seed: int = 4242,
    make_policy: Callable[[], Policy] | None = None,
) -> dict[str, Any]:
    """One live run; ``make_policy`` gives the campaign's policy object (default: its mode's).

    ``speed=None``: on the floor's simulated clock (no stall of the machine can make a caller
    wait); ``speed=N``: against the wall clock N times faster (stalls are measured)."""
    store = open_store(f"sqlite:///{workdir / 'live.db'}")
    start = demo_start(dt.date(2026, 12, 1))
    n_contacts = int(agents * minutes * 6) + 200  # more than can be dialled in the run
    path = workdir / "contacts.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["phone"])
        for i in range(n_contacts):
            w.writerow([f"+86137{i:05d}{(i % 7) + 1}{(i % 5) + 2}{(i % 3) + 5}"])
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(campaign_doc(policy)), source=None, actor="bench")
        import_contacts(s, row, path, default_region="CN", now=start.astimezone(dt.UTC))
    floor = SimFloor(
        store,
        Settings(),
        start=start,
        speed=speed,
        scenario=sim_scenario(agents, talk, seed),
        queues=ROOT / "tests" / "runner" / "queues.conf",
        tick_s=1.0,
    )
    t0 = time.monotonic()
    stalls: list[float] = []  # the event loop's lateness, in simulated seconds
    async with floor:
        watch = asyncio.create_task(_watch_stalls(speed, stalls)) if speed is not None else None
        if make_policy is not None:
            await floor.dialer.load_campaigns()
            for run in floor.dialer.loop.runs.values():
                run.policy = make_policy()  # kept by run(): the campaign's mode is unchanged
        task = asyncio.create_task(floor.dialer.run())
        never = asyncio.Event()
        while (left := minutes * 60 - floor.elapsed_s) > 0:
            await floor.wait(never, left)  # on the floor's clock, simulated or wall
        occupancy = floor.dialer.occupancy
        illegal = floor.core.illegal_transitions
        floor.dialer.stop()
        await task
        if watch is not None:
            watch.cancel()
    wall = time.monotonic() - t0
    with store.session() as s:
        rows = s.scalars(select(Attempt)).all()
        live_n = sum(1 for r in rows if r.live_answer)
        ab = sum(1 for r in rows if r.outcome == "abandoned")
        dials = len(rows)
    store.dispose()
    hours = agents * minutes / 60
    return {
        "occupancy": occupancy,
        "abandon_rate": ab / live_n if live_n else 0.0,
        "live_answers": live_n,
        "abandoned": ab,
        "dials_per_agent_hour": dials / hours,
        "connects_per_agent_hour": (live_n - ab) / hours,
        "wall_s": wall,
        # The PBX, the agents and the dialer share one event loop on a clock scaled by
        # ``speed``: a stall of the process (a busy machine) is simulated time in which no
        # agent picks up a caller. Stalls over the hold limit make abandons no dialer causes.
        "stall_max_s": max(stalls, default=0.0),
        "stalls_over_hold": sum(1 for x in stalls if x > HOLD),
        # on the simulated clock: jumps made with work still pending after the real-time grace
        # (0 unless a hold never clears or the machine is extremely slow)
        "grace_expired": getattr(floor.clock, "grace_expired", 0),
        # AMI events the call tracker's table refused (logged "tracker: no transition ...")
        "illegal_transitions": illegal,
    }


async def _watch_stalls(speed: float, out: list[float], period: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period)
        out.append((loop.time() - t - period) * speed)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of the live run")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--policy", default="predictive")
    ap.add_argument("--reps", type=int, default=20, help="rehearsal replications")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        lv = asyncio.run(live(args.minutes, args.speed, args.policy, Path(tmp)))
    t0 = time.monotonic()
    sc = parse_scenario(rehearsal_scenario(args.minutes * 60), "live-twin")
    summary, _ = rehearse(sc, [args.policy], reps=args.reps, seed=1)[args.policy]
    rh = summary.as_dict()
    rh_wall = time.monotonic() - t0
    out = {
        "policy": args.policy,
        "minutes": args.minutes,
        "speed": args.speed,
        "live": {k: round(v, 4) if isinstance(v, float) else v for k, v in lv.items()},
        "rehearsal": {**rh, "wall_s": round(rh_wall, 1)},
        "diff_points": {
            "occupancy": round(100 * (lv["occupancy"] - rh["occupancy"]), 2),
            "abandon_rate": round(100 * (lv["abandon_rate"] - rh["abandon_rate"]), 2),
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"policy {args.policy}, {AGENTS} agents, answer rate {ANSWER}, {args.minutes:g} simulated minutes"
    )
    print(f"{'':24}{'live (sim PBX)':>16}{'rehearsal':>12}{'diff (points)':>15}")
    for k in ("occupancy", "abandon_rate"):
        print(f"{k:24}{lv[k]:16.4f}{rh[k]:12.4f}{out['diff_points'][k]:15.2f}")
    for k in ("dials_per_agent_hour", "connects_per_agent_hour"):
        print(f"{k:24}{lv[k]:16.1f}{rh[k]:12.1f}")
    print(
        f"live: {lv['live_answers']} live answers, {lv['abandoned']} abandoned, {lv['wall_s']:.0f} s wall at speed {args.speed:g}"
    )
    print(f"rehearsal: {args.reps} replications in {rh_wall:.1f} s")


if __name__ == "__main__":
    main()
