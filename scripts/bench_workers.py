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
import signal
import subprocess
import sys
import tempfile
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


FLOOR_QUEUES = """
[general]
persistentmembers = no
autofill = yes

[sales]
strategy = rrmemory
timeout = 15
retry = 1
wrapuptime = 1
joinempty = yes
ringinuse = no
"""


def floor_scenario(agents: int) -> str:
    return f"""
seed: 7
called_party:
  invalid_share: 0.02
  busy_share: 0.05
  congestion_share: 0.0
  answer_probability: 0.7
  ring_s: {{dist: uniform, min: 2, max: 6}}
  machine_share: 0.0
agents:
  - queue: sales
    count: {agents}
    interface: "PJSIP/b-{{n:03d}}"
    answer_s: 0.2
    talk_s: {{dist: uniform, min: 4, max: 8}}
    wrapup_s: 1
"""


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dialer", *argv],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_for(log: Path, marker: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text_ = log.read_text(errors="replace")
        if marker in text_:
            return text_.split(marker, 1)[1]
        time.sleep(0.2)
    raise RuntimeError(f"{log.name}: no {marker!r}:\n{log.read_text(errors='replace')[-2000:]}")


def floor_run(
    cluster: PgCluster, workers: int, agents: int, seconds: float, warmup: float, tmp: Path
) -> tuple[float, float]:
    """``workers`` dialer processes, each with its own simulated switch: (originates/s, live)."""
    db = cluster.create_database()
    url = cluster.url(db)
    store = open_store(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        zone = "Asia/Shanghai"
        now = dt.datetime.now(dt.UTC)
        offset = 13 - now.hour
        if offset > 14:
            offset -= 24
        if offset < -12:
            offset += 24
        zone = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
        spec = {
            **CAMPAIGN,
            "name": "floor",
            "mode": "power",
            "flow": None,
            "queue": "sales",
            "channel": "Local/{number}@customer",
            "calling_window": {"start": "08:00", "end": "21:00", "skip_holidays": False},
            "max_attempts": 1,
            "retry": {},
            "pacing": {
                "power_ratio": 2.5,
                "ring_timeout_s": 15,
                "wrapup_s": 1,
                "calls_per_second": 50,
                "abandon_cap": 0.5,
            },
        }
        with store.session() as s:
            row, _ = apply_campaign(s, parse_campaign(spec), source=None, actor="bench")
            cid = row.id
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO contact (campaign_id, phone, region, language, timezone,
                        priority, fields, status, attempts, created_at)
                    SELECT :cid, '+86137' || lpad(g::text, 8, '0'), 'CN', 'zh', :zone, 0, '{}',
                        'active', 0, now()
                    FROM generate_series(1, :n) g
                    """
                ),
                {"cid": cid, "n": 20000, "zone": zone},
            )
        (tmp / "queues.conf").write_text(FLOOR_QUEUES)
        (tmp / "floor.yaml").write_text(floor_scenario(agents))
        ports = []
        for i in range(workers):
            log = tmp / f"pbx{i}.log"
            procs.append(
                _spawn(
                    [
                        "sim-pbx",
                        "--ami-port",
                        "0",
                        "--scenario",
                        str(tmp / "floor.yaml"),
                        "--queues",
                        str(tmp / "queues.conf"),
                        "--seed",
                        str(i),
                    ],
                    log,
                )
            )
            ports.append(int(_wait_for(log, "AMI on 127.0.0.1:").split()[0]))
        settings = tmp / "settings.yaml"
        settings.write_text(
            "asterisk:\n"
            + "".join(f"  - {{name: pbx{i}, port: {p}}}\n" for i, p in enumerate(ports))
            + "worker: {heartbeat_s: 1, dead_after_s: 5}\n"
            + "compliance: {abandon_cap: 0.5}\n"  # power mode's own fallback, not the ceiling
        )
        for i in range(workers):
            procs.append(
                _spawn(
                    [
                        "--db",
                        url,
                        "--settings",
                        str(settings),
                        "run",
                        "--worker",
                        f"w{i}",
                        "--server",
                        f"pbx{i}",
                        "--no-takeover",
                        "--no-console",
                    ],
                    tmp / f"w{i}.log",
                )
            )
        time.sleep(warmup)

        def sample() -> tuple[int, int]:
            with store.session() as s:
                sent = s.scalar(text("SELECT count(*) FROM attempt WHERE channel_id IS NOT NULL"))
                live = s.scalar(
                    text(
                        "SELECT count(*) FROM attempt WHERE outcome IS NULL "
                        "AND channel_id IS NOT NULL"
                    )
                )
            return int(sent or 0), int(live or 0)

        sent0, _ = sample()
        t0 = time.monotonic()
        lives = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            lives.append(sample()[1])
        sent1, _ = sample()
        rate = (sent1 - sent0) / (time.monotonic() - t0)
        return rate, sum(lives) / len(lives)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        store.dispose()
        cluster.drop_database(db)


def bench_floor(agents: int, seconds: float, warmup: float, workers: list[int]) -> None:
    cluster = PgCluster.start()
    results = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for n in workers:
                tmp = Path(d) / f"n{n}"
                tmp.mkdir()
                print(f"{n} worker(s), {n} simulated switch(es) ...", flush=True)
                results.append((n, *floor_run(cluster, n, agents, seconds, warmup, tmp)))
    finally:
        cluster.stop()
    base = results[0]
    print(
        f"\nworkers on simulated switches ({agents} agents each, power x2.5), "
        f"{seconds:g} s measured after {warmup:g} s"
    )
    print(f"{'workers':>8} {'originates/s':>13} {'ratio':>7} {'live calls':>11} {'ratio':>7}")
    for n, rate, live in results:
        print(f"{n:>8} {rate:>13.1f} {rate / base[1]:>7.2f} {live:>11.1f} {live / base[2]:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    st = sub.add_parser("store", help="lease rate of 1/2/4 workers on PostgreSQL")
    st.add_argument("--contacts", type=int, default=1_000_000)
    st.add_argument("--seconds", type=float, default=10.0)
    st.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    fl = sub.add_parser("floor", help="1/2/4 workers, each on its own simulated switch")
    fl.add_argument("--agents", type=int, default=20, help="agents per switch")
    fl.add_argument("--seconds", type=float, default=40.0)
    fl.add_argument("--warmup", type=float, default=15.0)
    fl.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    if args.what == "store":
        bench_store(args.contacts, args.seconds, args.workers)
    else:
        bench_floor(args.agents, args.seconds, args.warmup, args.workers)


if __name__ == "__main__":
    main()
