#!/usr/bin/env python3
"""Issue 17, item 10: the live abandon rate on a long-call floor, over many runs.

One live run on a 30-agent floor with long calls ended at 5.0% abandoned (13 of 260 live
answers) against a 3% cap. One run cannot tell warm-up, estimation or chance apart; this
script runs ``--runs`` live runs (the real runner, AMI adapter, tracker and store on the
simulated PBX, each with its own seed, at ``--speed`` times real time) and, as the baseline
measured in the same run, the rehearsal of the same settings (``dialer simulate``'s engine,
``--runs`` replications). It prints per run and pooled:

- the abandon rate (pooled = all abandons / all live answers) and the share of runs over cap;
- the same over the first ``--warmup`` minutes and over the rest (warm-up shows as a high
  early rate that the rest does not have);
- the binomial spread one would see by chance alone at the pooled rate (the observed spread
  of per-run rates against it: chance if alike, estimation if the live rate sits above the
  rehearsal's in every window).

    .venv/bin/python scripts/bench_live_abandon.py [--runs 20] [--minutes 60] [--speed 20]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_live_vs_rehearsal import live, rehearsal_scenario  # noqa: E402

from dialer.pacing.rehearsal import rehearse  # noqa: E402
from dialer.pacing.scenario import parse_scenario  # noqa: E402

AGENTS = 30
LONG_TALK = {"mean": 240.0, "sd": 200.0}
CAP = 0.03


def live_windows(workdir: Path, warmup_s: float) -> dict[str, int]:
    """Live answers and abandons before and after ``warmup_s`` of the run."""
    from sqlalchemy import select

    from dialer.store import open_store
    from dialer.store.models import Attempt

    store = open_store(f"sqlite:///{workdir / 'live.db'}", upgrade=False)
    with store.session() as s:
        rows = s.scalars(select(Attempt).order_by(Attempt.created_at)).all()
    store.dispose()
    if not rows:
        return {"early_live": 0, "early_ab": 0, "late_live": 0, "late_ab": 0}
    t0 = rows[0].created_at
    out = {"early_live": 0, "early_ab": 0, "late_live": 0, "late_ab": 0}
    for r in rows:
        early = (r.created_at - t0) < dt.timedelta(seconds=warmup_s)
        key = "early" if early else "late"
        out[f"{key}_live"] += int(bool(r.live_answer))
        out[f"{key}_ab"] += int(r.outcome == "abandoned")
    return out


def rate(ab: int, n: int) -> float:
    return ab / n if n else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--agents", type=int, default=AGENTS)
    ap.add_argument("--talk-mean", type=float, default=LONG_TALK["mean"])
    ap.add_argument("--talk-sd", type=float, default=LONG_TALK["sd"])
    ap.add_argument("--warmup", type=float, default=10.0, help="minutes counted as warm-up")
    ap.add_argument("--policy", default="predictive")
    args = ap.parse_args()
    talk = {"mean": args.talk_mean, "sd": args.talk_sd}

    print(
        f"{args.runs} live runs x {args.minutes:g} simulated min, {args.agents} agents, talk "
        f"lognormal mean {talk['mean']:g} s sd {talk['sd']:g} s, policy {args.policy}, cap {CAP}"
    )
    runs: list[dict[str, Any]] = []
    t_live = time.monotonic()
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-abandon-") as tmp:
            res = asyncio.run(
                live(
                    args.minutes,
                    args.speed,
                    args.policy,
                    Path(tmp),
                    agents=args.agents,
                    talk=talk,
                    seed=1000 + i,
                )
            )
            res.update(live_windows(Path(tmp), args.warmup * 60))
        runs.append(res)
        print(
            f"  live run {i + 1:2d}: {res['abandoned']:3d}/{res['live_answers']:4d} = "
            f"{res['abandon_rate']:.4f}  (first {args.warmup:g} min "
            f"{rate(res['early_ab'], res['early_live']):.4f}, rest "
            f"{rate(res['late_ab'], res['late_live']):.4f})  occupancy {res['occupancy']:.3f}"
            f"  {res['wall_s']:.0f} s wall",
            flush=True,
        )
    live_s = time.monotonic() - t_live

    t_reh = time.monotonic()
    sc = parse_scenario(rehearsal_scenario(args.minutes * 60, args.agents, talk), "long-call-floor")
    summary, reps = rehearse(sc, [args.policy], reps=args.runs, seed=1)[args.policy]
    reh_s = time.monotonic() - t_reh

    n = sum(r["live_answers"] for r in runs)
    ab = sum(r["abandoned"] for r in runs)
    pooled = rate(ab, n)
    over = sum(1 for r in runs if r["abandon_rate"] > CAP) / len(runs)
    early = rate(sum(r["early_ab"] for r in runs), sum(r["early_live"] for r in runs))
    late = rate(sum(r["late_ab"] for r in runs), sum(r["late_live"] for r in runs))
    per_run = [r["abandon_rate"] for r in runs]
    mean_n = n / len(runs)
    spread = math.sqrt(pooled * (1 - pooled) / mean_n) if mean_n else 0.0
    observed = (
        math.sqrt(sum((x - pooled) ** 2 for x in per_run) / (len(per_run) - 1))
        if len(per_run) > 1
        else 0.0
    )
    reh_n = sum(r.live for r in reps)
    reh_ab = sum(r.abandoned for r in reps)
    print()
    print(f"{'':34}{'live (sim PBX)':>16}{'rehearsal':>12}")
    print(f"{'pooled abandon rate':34}{pooled:16.4f}{rate(reh_ab, reh_n):12.4f}")
    print(f"{'live answers (all runs)':34}{n:16d}{reh_n:12d}")
    print(f"{'runs over the cap':34}{over:16.2f}{summary.p_run_over_cap:12.2f}")
    print(
        f"{'occupancy (mean of runs)':34}{sum(r['occupancy'] for r in runs) / len(runs):16.3f}"
        f"{summary.occupancy:12.3f}"
    )
    print(
        f"{'first ' + format(args.warmup, 'g') + ' min / rest (live)':34}{early:16.4f}{late:12.4f}"
    )
    print(
        f"spread of per-run rates: observed {observed:.4f}, chance alone at the pooled rate "
        f"{spread:.4f} (binomial, {mean_n:.0f} live answers a run)"
    )
    print(f"pooled live abandon rate {pooled:.4f} {'<=' if pooled <= CAP else '>'} cap {CAP}")
    print(f"wall: live {live_s:.0f} s, rehearsal {reh_s:.1f} s")


if __name__ == "__main__":
    main()
