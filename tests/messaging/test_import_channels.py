"""Contacts import: an e-mail address and more numbers (kind and order) per contact."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from dialer.app.commands.contacts import contact_doc
from dialer.lists.campaigns import apply_campaign, parse_campaign, spec_of
from dialer.lists.contacts import import_contacts
from dialer.lists.numbers import Number, NumberKind, numbers_of
from dialer.store import Store, open_store
from dialer.store.db import alembic_config
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
        got = {c.name: c for c in s.query(Contact).order_by(Contact.id)}
        several = numbers_of(s, [c.id for c in got.values()])
        numbers = {name: several.get(c.id) for name, c in got.items()}
        fields = {name: dict(c.fields) for name, c in got.items()}
        shown = contact_doc(got["张三"], spec_of(row), several[got["张三"].id])
    assert fields["张三"] == {"email": "zhang.san@example.com"}  # numbers are rows, not JSON
    # the main number first, then the others in column order; a repeat of the main one dropped
    assert numbers["张三"] == [
        Number("+8613800000001", NumberKind.MAIN),
        Number("+861062345678", NumberKind.HOME),
    ]
    assert numbers["赵六"] is not None
    assert numbers["赵六"][1] == Number("+862162345678", NumberKind.WORK)
    assert shown["numbers"][1] == {"kind": "home", "number": "+86106***5678", "state": "active"}


def test_numbers_move_out_of_fields_on_upgrade(tmp_path: Path) -> None:
    """Migration 0015: fields["numbers"] of a store made before it become contact_number rows."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = alembic_config(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014")
        conn.execute(
            text(
                "INSERT INTO campaign (id, name, spec, state, purpose, mode, created_at, "
                "updated_at) "
                "VALUES (1, 'old', '{}', 'paused', 'service', 'progressive', '2026-12-01', "
                "'2026-12-01')"
            )
        )
        numbers = [
            {"kind": "main", "number": "+8613800000001"},
            {"kind": "home", "number": "+861062345678"},
        ]
        conn.execute(
            text(
                "INSERT INTO contact (id, campaign_id, phone, language, timezone, priority, "
                "fields, status, attempts, created_at) VALUES (1, 1, '+8613800000001', 'zh', "
                "'Asia/Shanghai', 0, :f, 'active', 0, '2026-12-01')"
            ),
            {"f": json.dumps({"email": "a@x.test", "numbers": numbers})},
        )
    engine.dispose()
    store = open_store(url)  # upgrades to head
    try:
        with store.session() as s:
            c = s.get(Contact, 1)
            assert c is not None and c.fields == {"email": "a@x.test"}
            assert numbers_of(s, [1])[1] == [
                Number("+8613800000001", NumberKind.MAIN),
                Number("+861062345678", NumberKind.HOME),
            ]
    finally:
        store.dispose()
