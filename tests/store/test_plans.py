"""The dialling path's hot queries reach their rows through indexes, on SQLite and PostgreSQL:
none of them reads a whole table that grows with the store."""

from __future__ import annotations

from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.store import open_store
from dialer.telephony.plans import hot_query_plans, scans


def test_hot_queries_use_indexes(store_url: str) -> None:
    store = open_store(store_url)
    try:
        spec = parse_campaign({"name": "plans", "queue": "q", "caller_id": "95588"})
        with store.session() as s:
            row, _ = apply_campaign(s, spec, source=None, actor="test")
            cid = row.id
        plans = hot_query_plans(store, cid)
        dialect = store.engine.dialect.name
        assert len(plans) == 7
        for name, plan in plans.items():
            assert plan, name
            assert not scans(plan, dialect), (name, plan)
            assert any("INDEX" in line.upper() for line in plan), (name, plan)
    finally:
        store.dispose()


def test_a_table_scan_is_found() -> None:
    assert scans(["SCAN attempt"], "sqlite") == ["SCAN attempt"]
    assert scans(["SCAN CONSTANT ROW", "SEARCH attempt USING INDEX x (phone=?)"], "sqlite") == []
    line = "Seq Scan on contact  (cost=10000000000.00..10000000001.01 rows=1 width=8)"
    assert scans([line], "postgresql") == [line]
