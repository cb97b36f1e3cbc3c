"""Contact import, hardened: streaming in bounded batches, bad rows rejected one by one (NUL,
undecodable bytes), no guessed encodings, no customer data in errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from dialer.errors import ImportRejected, describe_db_error
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import RejectionLog, detect_encoding, import_contacts
from dialer.store import Store
from dialer.store.models import Campaign, Contact
from tests.data_gen import TEST_CAMPAIGN, mixed_file

ROOT = Path(__file__).resolve().parent.parent


def campaign_id(store: Store) -> int:
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(TEST_CAMPAIGN), source=None, actor="test")
        return int(row.id)


def do_import(store: Store, cid: int, path: Path, **kw: object) -> dict[str, object]:
    with store.session() as s:
        rep = import_contacts(s, s.get(Campaign, cid), path, default_region="CN", **kw)  # type: ignore[arg-type]
        return rep.to_json()


def phones(store: Store) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(Contact.phone)))


def names(store: Store) -> dict[str, str | None]:
    with store.session() as s:
        return {c.phone: c.name for c in s.scalars(select(Contact))}


GOOD = [("13800138001", "张伟"), ("13800138002", "李娜"), ("13800138003", "王芳")]


def bad_rows_file(path: Path, encoding: str = "utf-8") -> None:
    """Three good rows around a row with a NUL byte and a row with undecodable bytes."""
    head = "phone,name\n".encode(encoding)
    good = [f"{p},{n}\n".encode(encoding) for p, n in GOOD]
    nul = "13800138004,赵\x00敏\n".encode(encoding)
    junk = b"13800138005,\xff\xfe\xfd\n" if encoding == "utf-8" else b"13800138005,\x80\n"
    path.write_bytes(head + good[0] + nul + good[1] + junk + good[2])


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_a_bad_row_is_rejected_and_the_rest_imported(
    store: Store, tmp_path: Path, encoding: str
) -> None:
    cid = campaign_id(store)
    f = tmp_path / "bad.csv"
    bad_rows_file(f, encoding)
    assert detect_encoding(f) == ("utf-8-sig" if encoding == "utf-8" else "gb18030")
    report = do_import(store, cid, f)
    assert report == {
        "imported": 3,
        "rejected": [{"row": 2, "reason": "nul_byte"}, {"row": 4, "reason": "invalid_encoding"}],
    }
    assert names(store) == {f"+86{p}": n for p, n in GOOD}


def test_batches_and_dry_run_give_the_same_report_as_one_batch(
    store: Store, tmp_path: Path
) -> None:
    cid = campaign_id(store)
    gen = mixed_file(600)
    f = tmp_path / "mixed.csv"
    f.write_text(gen.text(), encoding="utf-8")
    want = {
        "imported": len(gen.expected.imported),
        "rejected": [{"row": r, "reason": why} for r, why in gen.expected.rejected],
    }
    # duplicates split across batches are found by asking the store, in a dry run too
    assert do_import(store, cid, f, chunk_rows=7, dry_run=True) == want
    assert phones(store) == set()
    assert do_import(store, cid, f, chunk_rows=7) == want
    assert phones(store) == set(gen.expected.imported)


def test_rejections_spill_to_disk_in_order() -> None:
    log = RejectionLog(keep=2)
    for row, reason in [(1, "duplicate"), (3, "nul_byte"), (4, "duplicate"), (9, "x")]:
        log.add(row, reason)
    assert [(r.row, r.reason) for r in log] == [
        (1, "duplicate"),
        (3, "nul_byte"),
        (4, "duplicate"),
        (9, "x"),
    ]
    assert log.counts == {"duplicate": 2, "nul_byte": 1, "x": 1} and len(log) == 4
    assert log.first(1)[0].row == 1
    log.close()


def test_an_undecodable_file_is_refused_unless_the_encoding_is_given(
    store: Store, tmp_path: Path
) -> None:
    cid = campaign_id(store)
    f = tmp_path / "latin.csv"
    rows = [f"1380013{8000 + i},José Müller Ñoño {i}" for i in range(30)]
    f.write_bytes(("phone,name\n" + "\n".join(rows) + "\n").encode("cp1252"))
    with pytest.raises(ImportRejected) as err:
        do_import(store, cid, f)
    assert "give --encoding" in str(err.value) and "\n" not in str(err.value)
    assert phones(store) == set()  # nothing guessed, nothing garbled
    assert do_import(store, cid, f, encoding="cp1252")["imported"] == 30
    assert names(store)["+8613800138000"] == "José Müller Ñoño 0"


def test_store_errors_never_show_customers_data(store: Store) -> None:
    cid = campaign_id(store)
    row = {
        "campaign_id": cid,
        "phone": "+8613912345678",
        "name": "欧阳娜娜",
        "status": "active",
        "timezone": "Asia/Shanghai",
        "language": "zh",
        "priority": 0,
        "attempts": 0,
    }
    with pytest.raises(IntegrityError) as err:
        with store.session() as s:
            s.execute(insert(Contact), [row, row])
    shown = describe_db_error(err.value)  # what the CLI and the import print
    assert "unique" in shown.lower() and "\n" not in shown
    assert "13912345678" not in shown and "欧阳娜娜" not in shown
    assert "13912345678" not in str(err.value).split("\n")[0]  # parameters hidden by the engine


def peak_mb(csv_path: Path, db: Path) -> float:
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_import_memory.py"),
            "--phase",
            "import",
            "--csv",
            str(csv_path),
            "--db",
            str(db),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"])


@pytest.mark.slow
def test_import_memory_does_not_follow_the_file_size(tmp_path: Path) -> None:
    """The proportional check of ``scripts/bench_import_memory.py`` (200 MB under 300 MB)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_import import generate

    sizes = {}
    peaks = {}
    for n in (20_000, 140_000):
        f = tmp_path / f"c{n}.csv"
        generate(f, n)
        sizes[n] = f.stat().st_size / 1e6
        peaks[n] = peak_mb(f, tmp_path / f"c{n}.db")
    grew = peaks[140_000] - peaks[20_000]
    file_grew = sizes[140_000] - sizes[20_000]
    assert file_grew > 6
    # holding every number (the old import) grew by ~4x the file; streaming stays flat
    assert grew < 0.5 * file_grew, (peaks, sizes)
