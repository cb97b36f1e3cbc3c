#!/usr/bin/env python3
"""Issue 17, item 10: the live abandon rate on a long-call floor, over many runs.

One live run on a 30-agent floor with long calls ended at 5.0% abandoned (13 of 260 live
answers) against a 3% cap. One run cannot tell warm-up, estimation or chance apart; this
script runs ``--runs`` live runs (the real runner, AMI adapter, tracker and store on the
simulated PBX, each with its own seed) and, as the baseline
measured in the same run, the rehearsal of the same settings (``dialer simulate``'s engine,
``--runs`` replications). It prints per run and pooled:

- the abandon rate (pooled = all abandons / all live answers) and the share of runs over cap;
- the same over the first ``--warmup`` minutes and over the rest (warm-up shows as a high
  early rate that the rest does not have);
- the binomial spread one would see by chance alone at the pooled rate (the observed spread
  of per-run rates against it: chance if alike, estimation if the live rate sits above the
  rehearsal's in every window).

Two arms, side by side, each live run of both on the same seed (same called parties and
agents): ``baseline`` = the predictive policy before the confidence-bound guard
(``PREDICTIVE_V1``: guard on the observed rate after 500 live answers) and ``bound`` = the
current default. ``--arms bound`` runs one.

The live floor runs on its simulated clock by default (``SimFloor(speed=None)``: time jumps to
the next thing due when nothing is pending, so a busy machine costs wall time, never a caller's
wait, and a run's figures depend only on its seed). ``--speed N`` runs it against the wall
clock N times faster instead, as before: an event-loop stall then shows as simulated time in
which no agent picks up, and the script reports the longest stall per run.

    .venv/bin/python scripts/bench_live_abandon.py [--runs 20] [--minutes 30] [--speed N]
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

from dialer.pacing.policies import PREDICTIVE_V1, Predictive, PredictiveTuning  # noqa: E402
from dialer.pacing.rehearsal import RunResult, run_once, summarize  # noqa: E402
from dialer.pacing.scenario import parse_scenario  # noqa: E402

AGENTS = 30
LONG_TALK = {"mean": 240.0, "sd": 200.0}
CAP = 0.03
#: P(run over cap) at most this (issue 17, item 10)
MAX_SHARE_OVER = 0.05


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


ARMS: dict[str, PredictiveTuning] = {"baseline": PREDICTIVE_V1, "bound": PredictiveTuning()}


def rate(ab: int, n: int) -> float:
    return ab / n if n else 0.0


def live_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    n = sum(r["live_answers"] for r in runs)
    ab = sum(r["abandoned"] for r in runs)
    pooled = rate(ab, n)
    per_run = [r["abandon_rate"] for r in runs]
    mean_n = n / len(runs)
    return {
        "pooled": pooled,
        "live": n,
        "over": sum(1 for x in per_run if x > CAP),
        "max": max(per_run),
        "occupancy": sum(r["occupancy"] for r in runs) / len(runs),
        "dials_ah": sum(r["dials_per_agent_hour"] for r in runs) / len(runs),
        "connects_ah": sum(r["connects_per_agent_hour"] for r in runs) / len(runs),
        "early": rate(sum(r["early_ab"] for r in runs), sum(r["early_live"] for r in runs)),
        "late": rate(sum(r["late_ab"] for r in runs), sum(r["late_live"] for r in runs)),
        "spread_obs": (
            math.sqrt(sum((x - pooled) ** 2 for x in per_run) / (len(per_run) - 1))
            if len(per_run) > 1
            else 0.0
        ),
        "spread_chance": math.sqrt(pooled * (1 - pooled) / mean_n) if mean_n else 0.0,
        "stalled": sum(1 for r in runs if r["stalls_over_hold"]),
    }


def rehearsal_summary(reps: list[RunResult]) -> dict[str, float]:
    s = summarize(reps, CAP)
    return {
        "pooled": s.abandon_rate,
        "live": sum(r.live for r in reps),
        "over": sum(1 for r in reps if r.abandon_rate > CAP),
        "max": max(r.abandon_rate for r in reps),
        "occupancy": s.occupancy,
        "dials_ah": s.dials_per_agent_hour,
        "connects_ah": s.connects_per_agent_hour,
    }


ROWS = (
    ("pooled abandon rate", "pooled", "{:.4f}"),
    ("live answers (all runs)", "live", "{:d}"),
    ("runs over the cap", "over", "{:d}"),
    ("highest run", "max", "{:.4f}"),
    ("occupancy (mean of runs)", "occupancy", "{:.3f}"),
    ("dials per agent-hour", "dials_ah", "{:.1f}"),
    ("connects per agent-hour", "connects_ah", "{:.1f}"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument(
        "--speed",
        type=float,
        default=None,
        help="wall clock N times faster (default: the floor's simulated clock)",
    )
    ap.add_argument("--agents", type=int, default=AGENTS)
    ap.add_argument("--talk-mean", type=float, default=LONG_TALK["mean"])
    ap.add_argument("--talk-sd", type=float, default=LONG_TALK["sd"])
    ap.add_argument("--warmup", type=float, default=10.0, help="minutes counted as warm-up")
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    ap.add_argument(
        "--rehearsal-only",
        action="store_true",
        help="only the rehearsal columns (the rehearsal's engine, not the live dialer)",
    )
    args = ap.parse_args()
    talk = {"mean": args.talk_mean, "sd": args.talk_sd}
    arms: list[str] = args.arms

    print(
        f"{args.runs} {'rehearsal' if args.rehearsal_only else 'live'} runs x "
        f"{args.minutes:g} simulated min per arm ({', '.join(arms)}), "
        f"{args.agents} agents, talk lognormal mean {talk['mean']:g} s sd {talk['sd']:g} s, "
        f"{'simulated clock' if args.speed is None else f'wall clock x{args.speed:g}'}, "
        f"cap {CAP}"
    )
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    t_live = time.monotonic()
    for i in range(0 if args.rehearsal_only else args.runs):
        for arm in arms:
            tuning = ARMS[arm]
            with tempfile.TemporaryDirectory(prefix="bench-abandon-") as tmp:
                res = asyncio.run(
                    live(
                        args.minutes,
                        args.speed,
                        "predictive",
                        Path(tmp),
                        agents=args.agents,
                        talk=talk,
                        seed=1000 + i,
                        make_policy=lambda tuning=tuning: Predictive(tuning),
                    )
                )
                res.update(live_windows(Path(tmp), args.warmup * 60))
            runs[arm].append(res)
            print(
                f"  run {i + 1:2d} {arm:>8}: {res['abandoned']:3d}/{res['live_answers']:4d} = "
                f"{res['abandon_rate']:.4f}  (first {args.warmup:g} min "
                f"{rate(res['early_ab'], res['early_live']):.4f}, rest "
                f"{rate(res['late_ab'], res['late_live']):.4f})  occupancy {res['occupancy']:.3f}"
                f"  {res['wall_s']:.0f} s wall, "
                + (
                    f"longest stall {res['stall_max_s']:.1f} sim s"
                    f" ({res['stalls_over_hold']} over the hold limit)"
                    if args.speed is not None
                    else f"{res['grace_expired']} jump(s) with work pending"
                )
                + f", {res['illegal_transitions']} event(s) the tracker refused",
                flush=True,
            )
    live_s = time.monotonic() - t_live

    t_reh = time.monotonic()
    sc = parse_scenario(rehearsal_scenario(args.minutes * 60, args.agents, talk), "long-call-floor")
    reh = {
        arm: [run_once(sc, Predictive(ARMS[arm]), rep=r, seed=1) for r in range(args.runs)]
        for arm in arms
    }
    reh_s = time.monotonic() - t_reh

    live_arms = [a for a in arms if runs[a]]
    cols = [(f"live {a}", live_summary(runs[a])) for a in live_arms]
    cols += [(f"rehearsal {a}", rehearsal_summary(reh[a])) for a in arms]
    print()
    print(f"{'':28}" + "".join(f"{name:>20}" for name, _ in cols))
    for label, key, fmt in ROWS:
        print(f"{label:28}" + "".join(f"{fmt.format(c[key]):>20}" for _, c in cols))
    for arm in live_arms:
        ls = live_summary(runs[arm])
        print(
            f"{arm}: live first {args.warmup:g} min {ls['early']:.4f}, rest {ls['late']:.4f}; "
            f"spread of per-run rates {ls['spread_obs']:.4f} against {ls['spread_chance']:.4f} "
            f"by chance alone (binomial); pooled {ls['pooled']:.4f} "
            f"{'<=' if ls['pooled'] <= CAP else '>'} cap {CAP}, "
            f"{ls['over']} of {args.runs} runs over it; {ls['stalled']} run(s) had a stall of "
            f"the floor longer than the hold limit"
        )
        held = ls["pooled"] <= CAP and ls["over"] <= MAX_SHARE_OVER * len(runs[arm])
        print(
            f"{arm}: the live acceptance (pooled <= {CAP}, at most "
            f"{MAX_SHARE_OVER:.0%} of runs over it) is {'MET' if held else 'NOT MET'}"
        )
        clean = [r for r in runs[arm] if not r["stalls_over_hold"]]
        if clean and len(clean) < len(runs[arm]):
            cs = live_summary(clean)
            print(
                f"{arm}, the {len(clean)} runs without a stall: pooled {cs['pooled']:.4f}, "
                f"{cs['over']} over the cap, occupancy {cs['occupancy']:.3f}, dials per "
                f"agent-hour {cs['dials_ah']:.1f}"
            )
    if "baseline" in arms and len(arms) > 1:
        both = [("live", live_summary, runs)] if live_arms else []
        both.append(("rehearsal", rehearsal_summary, reh))  # type: ignore[arg-type]
        for engine, summary, data in both:
            b = summary(data["baseline"])
            for arm in arms:
                if arm != "baseline":
                    x = summary(data[arm])
                    print(
                        f"{arm} / baseline ({engine}): occupancy "
                        f"{x['occupancy'] / b['occupancy']:.3f}, dials per agent-hour "
                        f"{x['dials_ah'] / b['dials_ah']:.3f}, connects per agent-hour "
                        f"{x['connects_ah'] / b['connects_ah']:.3f}"
                    )
    print(f"wall: live {live_s:.0f} s, rehearsal {reh_s:.1f} s")


if __name__ == "__main__":
    main()
