#!/usr/bin/env python
"""Pacing benchmark: decision latency, and the anchor20 rehearsal against its targets.

    .venv/bin/python scripts/bench_pacing.py [--reps 20] [--jobs 2] [--no-table]

1. One predictive decision for 100 agents and 300 calls in flight: p50/p99 latency
   (target p99 < 1 ms).
2. ``anchor20``: predictive and progressive, 20 replications, wall time (target < 60 s on
   2 cores) and the targets (predictive occupancy >= 0.875, abandon_rate <= 0.03,
   p_run_over_cap <= 0.05; progressive ~0.58).
3. The full table of every policy on anchor20 (same seed, same parties).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dialer import CONFIG_DIR
from dialer.lists.campaigns import Pacing
from dialer.pacing import AbandonCounts, AgentState, PacingInput, cold_start, make_policy
from dialer.pacing.policies import AGENT_POLICIES
from dialer.pacing.rehearsal import METRICS, rehearse
from dialer.pacing.scenario import load_scenario


def random_input(rng: np.random.Generator, settings: Pacing, now: float) -> PacingInput:
    est = cold_start(settings)
    states = rng.choice(
        [AgentState.IDLE, AgentState.TALKING, AgentState.WRAPUP, AgentState.PAUSED],
        size=100,
        p=[0.10, 0.70, 0.15, 0.05],
    ).astype(np.int8)
    elapsed = np.where(
        states == AgentState.TALKING, rng.exponential(90.0, 100), rng.uniform(0, 10, 100)
    )
    ages = rng.uniform(0.0, 25.0, 300)
    answered = rng.random(300) < 0.03
    return PacingInput(
        now=now,
        agent_state=states,
        agent_elapsed_s=elapsed,
        call_age_s=ages,
        call_answered=answered,
        estimates=est,
        settings=settings,
        abandons=AbandonCounts(5000, 120, 40, 1),
    )


def bench_decision(n: int = 3000) -> tuple[float, float, float, float, float]:
    """Wall-clock p50/p99 (ms), CPU-time p50/p99 (ms, excludes preemption on a shared machine)
    and the mean number of calls decided."""
    settings = Pacing(max_lines_per_agent=6.0, calls_per_second=1000)
    rng = np.random.default_rng(1)
    inputs = [random_input(rng, settings, float(i)) for i in range(n)]
    pol = make_policy("predictive")
    for inp in inputs[:200]:  # warm-up
        pol.decide(inp)
    times = []
    cpu = []
    dialled = 0
    for inp in inputs:
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        dialled += pol.decide(inp)
        times.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)
    arr = np.asarray(times) / 1e6
    carr = np.asarray(cpu) / 1e6
    return (
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
        float(np.percentile(carr, 50)),
        float(np.percentile(carr, 99)),
        dialled / n,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-table", action="store_true", help="skip the all-policies table")
    args = ap.parse_args()

    p50, p99, c50, c99, mean_dials = bench_decision()
    print("1. predictive decision, 100 agents + 300 calls in flight")
    print(f"   wall p50 {p50:.3f} ms   p99 {p99:.3f} ms   (target p99 < 1 ms)")
    print(f"   cpu  p50 {c50:.3f} ms   p99 {c99:.3f} ms   mean answer {mean_dials:.2f} calls")

    sc = load_scenario(CONFIG_DIR / "scenarios" / "anchor20.yaml")
    t0 = time.perf_counter()
    res = rehearse(
        sc, ["predictive", "progressive"], reps=args.reps, seed=args.seed, jobs=args.jobs
    )
    wall = time.perf_counter() - t0
    pred, prog = res["predictive"][0], res["progressive"][0]
    print(f"2. anchor20, predictive + progressive, {args.reps} replications, {args.jobs} jobs")
    print(f"   wall {wall:.1f} s   (target < 60 s on 2 cores)")
    for name, s in (("predictive", pred), ("progressive", prog)):
        d = s.as_dict()
        print(f"   {name:12s} " + "  ".join(f"{k}={d[k]}" for k in METRICS))
    ok = pred.occupancy >= 0.875 and pred.abandon_rate <= 0.03 and pred.p_run_over_cap <= 0.05
    rates = sorted(round(r.abandon_rate, 4) for r in res["predictive"][1])
    print(f"   predictive per-run abandon rates: {rates}")
    print(f"   targets met: {ok}   (progressive ~0.58: {prog.occupancy:.3f})")

    if not args.no_table:
        t0 = time.perf_counter()
        full = rehearse(sc, list(AGENT_POLICIES), reps=args.reps, seed=args.seed, jobs=args.jobs)
        wall = time.perf_counter() - t0
        print(f"3. anchor20, every policy, {args.reps} replications ({wall:.1f} s wall)")
        print("   " + "policy".ljust(18) + "".join(k.rjust(25) for k in METRICS))
        for name, (s, _) in full.items():
            d = s.as_dict()
            print("   " + name.ljust(18) + "".join(str(d[k]).rjust(25) for k in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
