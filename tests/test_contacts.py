from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dialer.app.cli import cli
from dialer.errors import ImportRejected
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import RowParser, detect_encoding, import_contacts, parse_phone
from dialer.privacy import keyed_hash
from dialer.store import Store
from dialer.store.models import Campaign, Contact
from tests.data_gen import HEADER, TEST_CAMPAIGN, mixed_file


def make_campaign(store: Store, doc: dict | None = None) -> Campaign:
    spec = parse_campaign(doc or TEST_CAMPAIGN)
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
    return row


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--db", db_url, *args])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def stored(store: Store) -> dict[str, Contact]:
    with store.session() as s:
        return {c.phone: c for c in s.scalars(select(Contact))}


EXISTING_CSV = "phone,name\n13900000001,老客户\n+1 212 736 0001,Old\n010-65550001,旧\n"
EXISTING = ("+8613900000001", "+12127360001", "+861065550001")


def test_mixed_file_imports_exactly_the_valid_first_seen_rows(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    make_campaign(store)
    (tmp_path / "old.csv").write_text(EXISTING_CSV, encoding="utf-8")
    code, out, _ = run(db_url, "contacts", "import", "mixed-test", str(tmp_path / "old.csv"))
    assert code == 0 and "imported 3 contacts" in out

    gen = mixed_file(2000, existing=EXISTING)
    f = tmp_path / "mixed.csv"
    f.write_text(gen.text(), encoding="utf-8")
    reasons = {r for _, r in gen.expected.rejected}
    assert {"duplicate", "invalid_phone", "missing_phone"} <= reasons  # the file is mixed
    assert len([r for r in reasons if r.startswith("invalid_field:")]) >= 6

    code, out, err = run(db_url, "contacts", "import", "mixed-test", str(f), "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"imported", "rejected"}
    assert report["rejected"] == [{"row": r, "reason": why} for r, why in gen.expected.rejected]
    assert report["imported"] == len(gen.expected.imported)
    assert report["imported"] + len(report["rejected"]) == 2000
    assert err.count("branch") == 1  # one warning for the unknown column

    contacts = stored(store)
    assert set(contacts) == set(EXISTING) | set(gen.expected.imported)
    id_hash_key = "id_last6"
    for e164, exp in gen.expected.imported.items():
        c = contacts[e164]
        v = exp["values"]
        assert (c.timezone, c.region, c.name, c.language) == (
            exp["timezone"],
            exp["region"],
            exp["name"],
            exp["language"],
        )
        want: dict = {
            "id_last6": keyed_hash(v["id_last6"], purpose=id_hash_key),
            "card_last4": v["card_last4"],
        }
        if v["amount_due"]:
            want["amount_due"] = str(Decimal(v["amount_due"]))
        if v["due_date"]:
            want["due_date"] = v["due_date"]
        if v["visits"]:
            want["visits"] = int(v["visits"])
        if v["note"]:
            want["note"] = v["note"]
        assert c.fields == want
        assert v["id_last6"] not in json.dumps(c.fields)  # never stored in clear

    # importing the same file again adds nothing: every valid row is now a duplicate
    code, out, _ = run(db_url, "contacts", "import", "mixed-test", str(f), "--json", "--dry-run")
    again = json.loads(out)
    assert again["imported"] == 0


def test_gbk_file_keeps_chinese_names(store: Store, db_url: str, tmp_path: Path) -> None:
    make_campaign(store)
    text = "phone,name,note\n13800138000,张伟,客户要求下午来电\n021-64471234,欧阳娜娜,\n"
    f = tmp_path / "gbk.csv"
    f.write_bytes(text.encode("gbk"))
    assert detect_encoding(f) == "gb18030"
    code, out, _ = run(db_url, "contacts", "import", "mixed-test", str(f), "--json")
    assert json.loads(out) == {"imported": 2, "rejected": []}
    c = stored(store)
    assert c["+8613800138000"].name == "张伟"
    assert c["+8613800138000"].fields["note"] == "客户要求下午来电"
    assert c["+862164471234"].name == "欧阳娜娜"


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_utf8_with_and_without_bom(store: Store, tmp_path: Path, bom: bytes) -> None:
    row = make_campaign(store)
    f = tmp_path / "u.csv"
    f.write_bytes(bom + "Phone ,Name\n13800138000,张伟\n".encode())
    with store.session() as s:
        rep = import_contacts(s, s.get(Campaign, row.id), f, default_region="CN")
    assert rep.imported == 1 and rep.rejected == []
    assert stored(store)["+8613800138000"].name == "张伟"


def test_explicit_encoding_and_semicolons(store: Store, db_url: str, tmp_path: Path) -> None:
    make_campaign(store)
    f = tmp_path / "s.csv"
    f.write_bytes("phone;name\n13800138000;李四\n".encode("gbk"))
    code, out, _ = run(
        db_url, "contacts", "import", "mixed-test", str(f), "--json", "--encoding", "gbk"
    )
    assert json.loads(out)["imported"] == 1
    assert stored(store)["+8613800138000"].name == "李四"


def test_dry_run_writes_nothing(store: Store, db_url: str, tmp_path: Path) -> None:
    make_campaign(store)
    f = tmp_path / "a.csv"
    f.write_text("phone\n13800138000\n13800138000\n", encoding="utf-8")
    _, out, _ = run(db_url, "contacts", "import", "mixed-test", str(f), "--json", "--dry-run")
    assert json.loads(out) == {"imported": 1, "rejected": [{"row": 2, "reason": "duplicate"}]}
    assert stored(store) == {}


def test_unreadable_files_are_refused(store: Store, tmp_path: Path) -> None:
    row = make_campaign(store)
    f = tmp_path / "nophone.csv"
    f.write_text("name,mobile\nA,13800138000\n", encoding="utf-8")
    with store.session() as s, pytest.raises(ImportRejected, match="phone"):
        import_contacts(s, s.get(Campaign, row.id), f, default_region="CN")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with store.session() as s, pytest.raises(ImportRejected, match="empty"):
        import_contacts(s, s.get(Campaign, row.id), empty, default_region="CN")


def test_reason_order_within_a_row() -> None:
    spec = parse_campaign(TEST_CAMPAIGN)
    p = RowParser(list(HEADER), spec, "CN")

    def rec(**kw: str) -> list[str]:
        return [kw.get(h, "") for h in HEADER]

    assert p.parse(rec(phone="", amount_due="x")) == "missing_phone"
    assert p.parse(rec(phone="123", amount_due="x")) == "invalid_phone"
    assert p.parse(rec(phone="13800138000", language="fr", amount_due="x")) == (
        "invalid_field:language"
    )
    assert p.parse(rec(phone="13800138000", amount_due="x", due_date="y")) == (
        "invalid_field:amount_due"
    )
    ok = p.parse(rec(phone="13800138000", timezone="Europe/London"))
    assert isinstance(ok, dict) and ok["timezone"] == "Europe/London"
    assert p.ignored == ("branch",)
    p2 = RowParser(["phone", "valid_until", "priority"], spec, "CN")
    ok = p2.parse(["13800138000", "2026-12-31", "5"])
    assert isinstance(ok, dict)
    assert ok["valid_until"] == dt.date(2026, 12, 31) and ok["priority"] == 5
    assert p2.parse(["13800138000", "2026-12-32", "5"]) == "invalid_field:valid_until"
    assert p2.parse(["13800138000", "", "high"]) == "invalid_field:priority"


def test_required_field_and_default_region() -> None:
    doc = {**TEST_CAMPAIGN, "fields": {"amount_due": {"type": "decimal", "required": True}}}
    p = RowParser(["phone", "amount_due"], parse_campaign(doc), "US")
    assert p.parse(["2127365000", ""]) == "invalid_field:amount_due"
    ok = p.parse(["2127365000", "1.50"])
    assert isinstance(ok, dict) and ok["phone"] == "+12127365000"
    assert ok["timezone"] == "America/New_York"
    cn = parse_phone("2127365000", "CN")  # the same digits are a Shanghai number in CN
    assert cn is not None and cn.e164 == "+862127365000"


def test_list_masks_phones_and_sensitive_fields(store: Store, db_url: str, tmp_path: Path) -> None:
    make_campaign(store)
    f = tmp_path / "a.csv"
    f.write_text("phone,name,id_last6,card_last4\n13800138000,张伟,654321,1234\n", "utf-8")
    run(db_url, "contacts", "import", "mixed-test", str(f))
    code, out, _ = run(db_url, "contacts", "list", "mixed-test", "--json")
    docs = json.loads(out)
    assert docs[0]["phone"] == "+86138****8000"
    assert docs[0]["fields"] == {"id_last6": "***", "card_last4": "1234"}
    assert "654321" not in out and "13800138000" not in out and "h1:" not in out
    code, out, _ = run(db_url, "contacts", "list", "mixed-test")
    assert "+86138****8000" in out and "张伟" in out and "654321" not in out


def test_utf16_tab_separated_excel_export(store: Store, tmp_path: Path) -> None:
    row = make_campaign(store)
    f = tmp_path / "u16.txt"
    f.write_bytes("phone\tname\n13900000009\t欧阳\n".encode("utf-16"))
    with store.session() as s:
        rep = import_contacts(s, s.get(Campaign, row.id), f, default_region="CN")
    assert (rep.imported, rep.encoding) == (1, "utf-16")
    assert stored(store)["+8613900000009"].name == "欧阳"


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    from dialer.app.commands.contacts import _progress_bar

    f = tmp_path / "a.csv"
    f.write_text("phone\n", "utf-8")
    assert _progress_bar(f) == (None, None)  # pytest's stderr is not a terminal
