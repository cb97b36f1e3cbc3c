"""Contacts import: an e-mail address and more numbers (kind and order) per contact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dialer.lists.campaigns import apply_campaign, parse_campaign, spec_of
from dialer.lists.contacts import import_contacts, masked_fields
from dialer.store import Store
from dialer.store.models import Contact


def test_email_and_numbers_columns(store: Store, tmp_path: Path) -> None:
    spec = parse_campaign({"name": "ch", "mode": "progressive", "queue": "q"})
    path = tmp_path / "c.csv"
    path.write_text(
        "phone,name,email,home_phone,work_phone\n"
        "13800000001,张三,Zhang.San@Example.COM,010-62345678,13800000001\n"
        "13800000002,李四,not-an-address,,\n"
        "13800000003,王五,,12,\n"
        "13800000004,赵六,,,021 6234 5678\n",
        "utf-8",
    )
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        report = import_contacts(s, row, path, default_region="CN", now=dt.datetime.now(dt.UTC))
        assert report.imported == 2
        assert [(r.row, r.reason) for r in report.rejected] == [
            (2, "invalid_field:email"),
            (3, "invalid_field:home_phone"),
        ]
        got = {c.name: c.fields for c in s.query(Contact).order_by(Contact.id)}
        shown = masked_fields(spec_of(row), got["张三"])
    assert got["张三"]["email"] == "zhang.san@example.com"
    # the main number first, then the others in column order; a repeat of the main one dropped
    assert got["张三"]["numbers"] == [
        {"kind": "main", "number": "+8613800000001"},
        {"kind": "home", "number": "+861062345678"},
    ]
    assert got["赵六"]["numbers"][1] == {"kind": "work", "number": "+862162345678"}
    assert shown["numbers"][1]["number"] == "+86106***5678"
