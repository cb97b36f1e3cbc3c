#!/usr/bin/env python3
"""The demo's shift on its two clocks, idle and under CPU load.

Runs ``dialer demo``'s own shift (config/demo/floor.yaml, the sample campaigns, 3000 contacts
each; the simulated PBX, the IVR, the dialer and SQLite in one process) ``--minutes`` long on:

- ``simulated``: the demo's default clock (``VirtualClock``: time moves to the next thing due
  when nothing is pending: no task ready, no store work in a thread, no AMI bytes unread, no AGI
  reply awaited);
- ``wall x60`` (the baseline, the demo's clock before): real time 60 times faster, where the
  2-second hold limit is 33 ms of real time.

For each: the wall time of the shift, simulated seconds per real second, and the predictive
team's occupancy and abandon rate (cap 3%); then the ratio of the two wall times. ``--load N``
runs N busy-loop processes (``python3 -c 'while 1: pass'``) meanwhile, as a loaded machine.

    .venv/bin/python scripts/bench_demo_clock.py [--minutes 60] [--load 2] [--arms simulated,wall]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")

from dialer.app.demo import ShiftPlan, run_demo  # noqa: E402

CONTACTS = 3000
ARMS: dict[str, float | None] = {"simulated": None, "wall": 60.0}  # SimFloor's ``speed``


async def one_shift(minutes: float, speed: float | None, workdir: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    res = await run_demo(
        speed=speed,
        contacts_per_campaign=CONTACTS,
        plan=ShiftPlan(minutes=minutes, timeout_s=3600.0),
        workdir=workdir,
    )
    team = res.team
    return {
        "clock": res.clock,
        "wall_s": round(time.monotonic() - t0, 1),
        "shift_wall_s": round(res.shift_wall_s, 1),
        "sim_per_real_s": round(res.simulated_s / res.shift_wall_s, 1) if res.shift_wall_s else 0,
        "occupancy": team["occupancy"],
        "abandon_rate": team["abandon_rate"],
        "live_answers": team["live_answers"],
        "abandoned": team["abandoned"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of the shift")
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes meanwhile")
    ap.add_argument("--arms", default="simulated,wall", help="simulated, wall or both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = set(arms) - set(ARMS)
    if unknown:
        ap.error(f"unknown arm(s) {sorted(unknown)}; choose from {sorted(ARMS)}")

    hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.load)]
    out: dict[str, Any] = {"minutes": args.minutes, "load": args.load, "cpus": os.cpu_count()}
    try:
        for arm in arms:
            with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
                out[arm] = asyncio.run(one_shift(args.minutes, ARMS[arm], Path(tmp)))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if "simulated" in out and "wall" in out:
        out["wall_time_ratio_simulated_to_wall_x60"] = round(
            out["simulated"]["shift_wall_s"] / out["wall"]["shift_wall_s"], 2
        )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"the demo's shift, {args.minutes:g} simulated minutes, {args.load} busy-loop "
        f"process(es) beside it, {out['cpus']} CPUs"
    )
    print(f"{'clock':12}{'shift s':>9}{'sim/real':>10}{'occupancy':>11}{'abandon':>9}{'live':>6}")
    for arm in arms:
        r = out[arm]
        print(
            f"{arm:12}{r['shift_wall_s']:9.1f}{r['sim_per_real_s']:10.1f}{r['occupancy']:11.1%}"
            f"{r['abandon_rate']:9.2%}{r['live_answers']:6d}"
        )
    if "wall_time_ratio_simulated_to_wall_x60" in out:
        print(
            "wall time, simulated clock / wall clock x60: "
            f"{out['wall_time_ratio_simulated_to_wall_x60']:.2f}"
        )


if __name__ == "__main__":
    main()
