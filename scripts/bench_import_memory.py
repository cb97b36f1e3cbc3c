#!/usr/bin/env python3
"""Benchmark: peak memory of a contact import against the size of the file (issue 17: a 200 MB
file under 300 MB of RSS; streaming means the peak does not grow with the file).

Each measurement runs in its own child process so that its peak RSS (``ru_maxrss``) is its own:

- ``baseline``  the same child that imports the project, opens the store and applies the
  campaign, but imports no row: what any import costs before the first row;
- ``import``    ``dialer.contacts.import_contacts`` over a generated file (the rows of
  ``scripts/bench_import.py``: CN mobiles in three spellings, ~2% duplicates, ~1% garbage,
  typed and hashed fields), into SQLite, committed.

It prints, for a small file and for the target file, the peak RSS, the peak over the baseline
and that growth per MB of file; the ratio of the two growths says whether memory follows the
file (~ the size ratio) or not (~1).

Usage: ``.venv/bin/python scripts/bench_import_memory.py [--mb 200] [--small-mb 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_import import CAMPAIGN, generate  # noqa: E402

BYTES_PER_ROW = 57  # of bench_import's rows, measured: used to aim at a file size
LIMIT_MB = 300.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(phase: str, csv_path: Path, db: Path) -> None:
    os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.lists.contacts import import_contacts
    from dialer.store import open_store

    store = open_store(f"sqlite:///{db}")
    t = time.perf_counter()
    out: dict[str, float] = {"rows": 0, "imported": 0, "rejected": 0}
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(CAMPAIGN), source=None, actor="bench")
        if phase == "import":
            rep = import_contacts(s, row, csv_path, default_region="CN")
            out.update(rows=rep.rows, imported=rep.imported, rejected=len(rep.rejections))
            rep.rejections.close()
    out["seconds"] = time.perf_counter() - t
    out["peak_mb"] = peak_mb()
    store.dispose()
    print(json.dumps(out))


def run_child(phase: str, csv_path: Path, db: Path) -> dict[str, float]:
    db.unlink(missing_ok=True)
    res = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--csv", str(csv_path), "--db", str(db)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=200.0, help="Size of the large file.")
    ap.add_argument("--small-mb", type=float, default=20.0, help="Size of the small file.")
    ap.add_argument("--keep", type=Path, default=None, help="Work in DIR and keep the files.")
    ap.add_argument("--phase", choices=("baseline", "import"), help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        child(args.phase, args.csv, args.db)
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.db"
    base = run_child("baseline", work / "none.csv", db)
    print(f"baseline (project imported, store open, no row): peak {base['peak_mb']:.0f} MB")
    results = []
    for mb in (args.small_mb, args.mb):
        csv_path = work / f"contacts-{mb:g}mb.csv"
        t = time.perf_counter()
        generate(csv_path, int(mb * 1e6 / BYTES_PER_ROW))
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {size_mb:.0f} MB in {time.perf_counter() - t:.0f} s")
        res = run_child("import", csv_path, db)
        growth = res["peak_mb"] - base["peak_mb"]
        results.append((size_mb, res, growth))
        print(
            f"import {size_mb:6.0f} MB file: {res['rows']:>9,.0f} rows in {res['seconds']:6.1f} s"
            f" ({res['imported']:,.0f} imported, {res['rejected']:,.0f} rejected);"
            f" peak RSS {res['peak_mb']:6.0f} MB = baseline + {growth:5.1f} MB"
            f" ({growth / size_mb:.3f} MB per MB of file)"
        )
        csv_path.unlink()
    (small_mb, _, small_growth), (big_mb, big, big_growth) = results
    print(
        f"file size x{big_mb / small_mb:.1f} -> peak over baseline x"
        f"{big_growth / max(small_growth, 0.1):.2f} (1.0 = memory independent of the file)"
    )
    verdict = "under" if big["peak_mb"] < LIMIT_MB else "OVER"
    print(f"{big_mb:.0f} MB file: peak RSS {big['peak_mb']:.0f} MB, {verdict} {LIMIT_MB:.0f} MB")
    if args.keep is None:
        db.unlink(missing_ok=True)
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
