#!/usr/bin/env python3
"""``dialer demo`` of this tree beside the same demo of a baseline revision, in one run.

    .venv/bin/python scripts/bench_demo_cpu.py --baseline <git rev> [--reps 2 --minutes 60]

Each demo is a child process (``python -m dialer demo --json``) from its own tree: the
baseline's files exported from git into a temporary folder, this tree as it is. Runs alternate
(baseline, this tree, baseline, ...) so both see the same machine load. Figures per run: wall
seconds, CPU seconds (user + system, every thread), attempts dialled and CPU per attempt; then
this tree over the baseline. On a busy machine only CPU figures mean much (the wall time is
the share of the cores the run got); the load average is printed beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export(rev: str, into: Path) -> Path:
    """The files of ``rev`` (git archive), unpacked under ``into``."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_demo(tree: Path, minutes: float) -> dict[str, float]:
    """One demo from ``tree`` (its own ``dialer`` package first on the path)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as home:
        out = subprocess.run(
            [sys.executable, "-m", "dialer", "demo", "--json", "--minutes", str(minutes)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree), "XDG_DATA_HOME": home},
            check=True,
            capture_output=True,
            text=True,
        )
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    figures = json.loads(out.stdout)
    return {"wall": wall, "cpu": cpu, "attempts": float(figures["attempts"])}


def line(label: str, r: dict[str, float], load: float) -> str:
    per = 1000 * r["cpu"] / r["attempts"] if r["attempts"] else float("nan")
    return (
        f"  {label:<22} wall {r['wall']:6.1f} s   CPU {r['cpu']:6.1f} s   "
        f"attempts {int(r['attempts']):5d}   CPU {per:5.1f} ms/attempt   load {load:5.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-base-") as tmp:
        base = export(args.baseline, Path(tmp))
        print(f"dialer demo --minutes {args.minutes:g}: baseline {args.baseline} vs this tree")
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "this tree": []}
        for rep in range(args.reps):
            for label, tree in (("baseline", base), ("this tree", ROOT)):
                load = os.getloadavg()[0]
                r = run_demo(tree, args.minutes)
                runs[label].append(r)
                print(line(f"{label} (run {rep + 1})", r, load), flush=True)

    def per_attempt(rs: list[dict[str, float]]) -> float:
        return sum(r["cpu"] for r in rs) / sum(r["attempts"] for r in rs)

    cpu = sum(r["cpu"] for r in runs["this tree"]) / sum(r["cpu"] for r in runs["baseline"])
    ratio = per_attempt(runs["this tree"]) / per_attempt(runs["baseline"])
    print(f" this tree / baseline: CPU {cpu:.2f}x, CPU per attempt {ratio:.2f}x")


if __name__ == "__main__":
    main()
