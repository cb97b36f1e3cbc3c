#!/usr/bin/env python3
"""The GIL's switch interval and a store reached over the network.

The floor's database work runs on worker threads beside a busy event loop. A psycopg call
gives up the GIL while it waits on the socket; to get it back it waits for the busy thread to
reach the end of its switch interval (5 ms by default). This measures one statement's round
trip on a throw-away PostgreSQL 15 (Debian's ``postgresql``) and on SQLite, with the main
thread idle and with it busy (a pure-Python loop standing in for the event loop), at Python's
default interval and at the one the product sets for a networked store
(``dialer.tasks.IO_SWITCH_INTERVAL_S``), and how much of its solo rate the busy thread keeps.

    .venv/bin/python scripts/bench_gil.py [--statements 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from dialer.tasks import IO_SWITCH_INTERVAL_S  # noqa: E402
from tests.pgcluster import PgCluster  # noqa: E402


class Spinner:
    """A thread doing pure-Python work, counting its rounds."""

    def __init__(self) -> None:
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            x = 0
            for i in range(2000):
                x += i
            self.rounds += 1

    def __enter__(self) -> Spinner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def round_trip_ms(url: str, n: int) -> float:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
            t0 = time.perf_counter()
            for _ in range(n):
                conn.execute(text("select 1"))
            return (time.perf_counter() - t0) / n * 1000
    finally:
        engine.dispose()


def solo_rate(seconds: float = 0.5) -> float:
    with Spinner() as s:
        time.sleep(seconds)
        return s.rounds / seconds


def measure(url: str, n: int, interval: float) -> tuple[float, float, float]:
    sys.setswitchinterval(interval)
    idle = round_trip_ms(url, n)
    alone = solo_rate()
    with Spinner() as s:
        t0 = time.perf_counter()
        busy = round_trip_ms(url, n)
        kept = s.rounds / (time.perf_counter() - t0) / alone
    return idle, busy, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--statements", type=int, default=400)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    default = sys.getswitchinterval()
    pg = PgCluster.start()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="bench-gil-"))
        stores = {"PostgreSQL": pg.tcp_url(), "SQLite": f"sqlite:///{tmp / 'gil.db'}"}
        print(
            f"one 'select 1' from a thread, {args.statements} in a row (ms per statement, median of {args.reps} interleaved runs)"
        )
        print(
            f"{'store':11s} {'interval':>9s} {'main idle':>10s} {'main busy':>10s}  busy thread kept"
        )
        intervals = sorted({default, 0.001, IO_SWITCH_INTERVAL_S, 0.0002}, reverse=True)
        for name, url in stores.items():
            # interleaved repetitions, medians: the machine's noise hits every interval alike
            runs = [[measure(url, args.statements, i) for i in intervals] for _ in range(args.reps)]
            rows = {
                i: tuple(statistics.median(r[k][j] for r in runs) for j in range(3))
                for k, i in enumerate(intervals)
            }
            for interval, (idle, busy, kept) in rows.items():
                print(
                    f"{name:11s} {interval * 1000:7.1f}ms {idle:10.3f} {busy:10.3f}"
                    f"  {kept:.2f} of its solo rate"
                )
            ratio = rows[default][1] / rows[IO_SWITCH_INTERVAL_S][1]
            print(f"{name:11s} busy round trip, default / product interval: x{ratio:.1f}")
    finally:
        sys.setswitchinterval(default)
        pg.stop()


if __name__ == "__main__":
    main()
