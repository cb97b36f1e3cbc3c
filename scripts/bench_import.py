#!/usr/bin/env python3
"""Benchmark: import N generated contact rows into SQLite (issue 1: 1,000,000 rows,
aim < 90 s and < 500 MB peak memory).

Each phase runs in its own child process so that its peak RSS (``ru_maxrss``) is its own:

- ``parse``      baseline: the raw CSV parse alone (``csv.reader`` over the file);
- ``executemany`` baseline: a plain ``sqlite3`` executemany of the already-clean rows
  (no validation, no phone parsing) into the same schema;
- ``import``     ``dialer.lists.contacts.import_contacts`` (detection, phonenumbers, typed and
  hashed fields, duplicates, bulk inserts in one transaction);
- ``explain`` / ``lease``: the hopper over the imported campaign (one call each).

Usage: ``.venv/bin/python scripts/bench_import.py [--rows 1000000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMPAIGN = {
    "name": "bench",
    "state": "running",
    "purpose": "collections",
    "mode": "progressive",
    "queue": "q",
    "calling_window": {"start": "09:00", "end": "20:00", "skip_holidays": True},
    "max_attempts": 3,
    "retry": {"busy": "10m", "no_answer": "2h", "abandoned": "72h", "failed": "30m"},
    "fields": {
        "amount_due": "decimal",
        "due_date": "date",
        "id_last6": {"type": "digits", "length": 6, "sensitive": True},
        "card_last4": {"type": "digits", "length": 4},
    },
}
HEADER = ["phone", "name", "language", "amount_due", "due_date", "id_last6", "card_last4"]
PREFIXES = ["138", "139", "186", "150", "137", "188", "158", "135"]


def generate(path: Path, n: int, seed: int = 7) -> None:
    """Mostly valid unique CN mobiles in a few spellings, ~2% duplicates, ~1% garbage."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n):
            r = rng.random()
            if r < 0.01:
                phone = "n/a"
            elif r < 0.03 and i > 10:
                phone = f"{PREFIXES[0]}{rng.randrange(i // len(PREFIXES)):08d}"  # a duplicate
            else:
                nat = f"{PREFIXES[i % len(PREFIXES)]}{i // len(PREFIXES):08d}"
                k = i % 3
                phone = (
                    nat
                    if k == 0
                    else f"+86 {nat[:3]} {nat[3:7]} {nat[7:]}"
                    if k == 1
                    else (f"{nat[:3]}-{nat[3:7]}-{nat[7:]}")
                )
            w.writerow(
                [
                    phone,
                    "张三",
                    "zh",
                    f"{rng.randrange(100000)}.{rng.randrange(100):02d}",
                    "2026-12-15",
                    f"{rng.randrange(10**6):06d}",
                    f"{rng.randrange(10**4):04d}",
                ]
            )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _store(db: Path):  # type: ignore[no-untyped-def]
    os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")
    from dialer.store import open_store

    return open_store(f"sqlite:///{db}")


def phase_parse(csv_path: Path, db: Path) -> dict[str, float]:
    t = time.perf_counter()
    rows = 0
    with csv_path.open(encoding="utf-8", newline="") as f:
        for _ in csv.reader(f):
            rows += 1
    return {"rows": rows - 1, "seconds": time.perf_counter() - t}


def phase_executemany(csv_path: Path, db: Path) -> dict[str, float]:
    """The floor of the database work: clean tuples, one executemany per chunk."""
    import sqlite3

    store = _store(db)  # creates the schema
    store.dispose()
    with csv_path.open(encoding="utf-8", newline="") as f:
        rdr = csv.reader(f)
        next(rdr)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
        t = time.perf_counter()
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        cid = con.execute(
            "INSERT INTO campaign (name,state,purpose,mode,spec,created_at,updated_at) "
            "VALUES ('base','running','service','progressive','{}',?,?)",
            (now, now),
        ).lastrowid
        sql = (
            "INSERT OR IGNORE INTO contact (campaign_id, phone, region, name, language, timezone, "
            "priority, fields, status, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        )
        rows = 0
        chunk: list[tuple[object, ...]] = []
        for rec in rdr:
            digits = "".join(ch for ch in rec[0] if ch.isdigit())
            chunk.append(
                (
                    cid,
                    "+86" + digits[-11:],
                    "CN",
                    rec[1],
                    rec[2],
                    "Asia/Shanghai",
                    0,
                    json.dumps({"amount_due": rec[3], "due_date": rec[4], "card_last4": rec[6]}),
                    "active",
                    0,
                    now,
                )
            )
            rows += 1
            if len(chunk) >= 5000:
                con.executemany(sql, chunk)
                chunk.clear()
        con.executemany(sql, chunk)
        con.commit()
        con.close()
    return {"rows": rows, "seconds": time.perf_counter() - t}


def phase_import(csv_path: Path, db: Path) -> dict[str, float]:
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.lists.contacts import import_contacts

    store = _store(db)
    t = time.perf_counter()
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(CAMPAIGN), source=None, actor="bench")
        rep = import_contacts(s, row, csv_path, default_region="CN")
    secs = time.perf_counter() - t
    return {
        "rows": rep.rows,
        "seconds": secs,
        "imported": rep.imported,
        "rejected": len(rep.rejected),
    }


def phase_hopper(csv_path: Path, db: Path) -> dict[str, float]:
    from sqlalchemy import select

    from dialer.lists.hopper import explain, lease
    from dialer.store.models import Campaign

    store = _store(db)
    out: dict[str, float] = {}
    with store.session() as s:
        camp = s.scalars(select(Campaign).where(Campaign.name == "bench")).one()
        noon = dt.datetime(2026, 12, 1, 4, tzinfo=dt.UTC)  # 12:00 in Shanghai
        night = dt.datetime(2026, 12, 1, 16, tzinfo=dt.UTC)  # 00:00 in Shanghai
        t = time.perf_counter()
        counts = explain(s, camp, noon, daily_cap=3)
        out["explain_s"] = time.perf_counter() - t
        out["eligible"] = counts.eligible
        for label, when in (
            ("lease_open", noon),
            ("lease_open_again", noon),
            ("lease_closed", night),
        ):
            t = time.perf_counter()
            got = lease(s, camp, when, 50, "bench", daily_cap=3)
            out[f"{label}_s"] = time.perf_counter() - t
            out[f"{label}_n"] = len(got)
        s.rollback()
    out["rows"] = 0
    out["seconds"] = out["explain_s"]
    return out


PHASES = {
    "parse": phase_parse,
    "executemany": phase_executemany,
    "import": phase_import,
    "hopper": phase_hopper,
}


def child(phase: str, csv_path: Path, db: Path) -> None:
    res = PHASES[phase](csv_path, db)
    res["peak_mb"] = peak_mb()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["cpu_s"] = ru.ru_utime + ru.ru_stime  # of the whole child (imports included)
    print(json.dumps(res))


def run_child(phase: str, csv_path: Path, db: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--csv", str(csv_path), "--db", str(db)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, default=None, help="Work in DIR and keep the files.")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        child(args.phase, args.csv, args.db)
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "contacts.csv"
    t = time.perf_counter()
    generate(csv_path, args.rows)
    print(
        f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - t:.1f} s"
    )
    results = {}
    for phase, db in (
        ("parse", work / "none.db"),
        ("executemany", work / "baseline.db"),
        ("import", work / "import.db"),
    ):
        for f in (db, db.with_suffix(".db-wal"), db.with_suffix(".db-shm")):
            f.unlink(missing_ok=True)
        results[phase] = run_child(phase, csv_path, db)
    hop = run_child("hopper", csv_path, work / "import.db")

    print(
        f"\n{'phase':28} {'seconds':>8} {'rows/s':>10} {'cpu s':>7} {'peak MB':>8} {'x parse':>8}"
    )
    base = results["parse"]["seconds"]
    labels = {
        "parse": "csv parse only (baseline)",
        "executemany": "sqlite executemany (floor)",
        "import": "dialer contacts import",
    }
    for phase, r in results.items():
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0.0
        print(
            f"{labels[phase]:28} {r['seconds']:>8.1f} {rate:>10,.0f} {r['cpu_s']:>7.1f} "
            f"{r['peak_mb']:>8.0f} "
            f"{r['seconds'] / base:>8.1f}"
        )
    imp = results["import"]
    print(
        f"\nimport: {imp['imported']:,} imported, {imp['rejected']:,} rejected; "
        f"{imp['seconds'] / results['executemany']['seconds']:.1f}x the plain executemany"
    )
    print(
        f"hopper on {imp['imported']:,} contacts: explain {hop['explain_s']:.1f} s "
        f"({hop['eligible']:,} eligible at 12:00 Shanghai); lease(50) in window "
        f"{hop['lease_open_s'] * 1000:.0f} ms (again {hop['lease_open_again_s'] * 1000:.0f} ms), "
        f"outside window {hop['lease_closed_s'] * 1000:.0f} ms; peak {hop['peak_mb']:.0f} MB"
    )
    ok = imp["seconds"] < 90 and imp["peak_mb"] < 500
    print(f"aim (< 90 s, < 500 MB): {'met' if ok else 'NOT met'}")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if args.keep is None:
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
