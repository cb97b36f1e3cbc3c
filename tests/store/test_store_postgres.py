"""PostgreSQL at scale: concurrent leases skip each other's rows, and the hot queries use indexes."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.hopper import lease
from dialer.lists.stats import abandon_rate
from dialer.store import Store, open_store
from dialer.store.models import Campaign

NOW = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)  # noon in Shanghai, a Tuesday
SPEC: dict[str, Any] = {
    "name": "big",
    "state": "running",
    "purpose": "service",
    "mode": "progressive",
    "queue": "q",
    "calling_window": {"start": "09:00", "end": "20:00", "skip_holidays": True},
    "max_attempts": 3,
    "retry": {"busy": "10m", "no_answer": "2h"},
}


@pytest.fixture
def pg(pg_url: str) -> Iterator[Store]:
    store = open_store(pg_url)
    yield store
    store.dispose()


def make_campaign(store: Store) -> int:
    with store.session() as s:
        row, _ = apply_campaign(s, parse_campaign(SPEC), source=None, actor="test")
        return row.id


def fill(store: Store, cid: int, contacts: int, attempts: int) -> None:
    """``contacts`` Shanghai numbers (a tenth already done, a tenth due later, a few leased,
    three priorities) and ``attempts`` finished attempts spread over the last 30 days."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO contact (campaign_id, phone, region, language, timezone, priority,
                    fields, status, attempts, next_attempt_at, lease_owner, lease_until,
                    created_at)
                SELECT :cid, '+86138' || lpad(g::text, 8, '0'), 'CN', 'zh', 'Asia/Shanghai',
                    g % 3, '{}', CASE WHEN g % 10 = 0 THEN 'done' ELSE 'active' END,
                    CASE WHEN g % 10 = 1 THEN 1 ELSE 0 END,
                    CASE WHEN g % 10 = 1 THEN :now + interval '1 hour'
                         WHEN g % 10 = 2 THEN :now - interval '1 hour' END,
                    CASE WHEN g % 1000 = 3 THEN 'other' END,
                    CASE WHEN g % 1000 = 3 THEN :now + interval '1 minute' END,
                    :now - interval '40 days'
                FROM generate_series(1, :n) g
                """
            ),
            {"cid": cid, "n": contacts, "now": NOW.replace(tzinfo=None)},
        )
        conn.execute(
            text(
                """
                INSERT INTO attempt (campaign_id, contact_id, phone, seq, state, outcome,
                    live_answer, created_at, ended_at, detail)
                SELECT :cid, NULL, '+86139' || lpad(g::text, 8, '0'), 1, 'ended',
                    CASE WHEN g % 50 = 0 THEN 'abandoned' ELSE 'no_answer' END, g % 3 = 0,
                    :now - (g % 43200) * interval '1 minute',
                    :now - (g % 43200) * interval '1 minute' + interval '30 seconds', '{}'
                FROM generate_series(1, :n) g
                """
            ),
            {"cid": cid, "n": attempts, "now": NOW.replace(tzinfo=None)},
        )
        conn.execute(text("ANALYZE"))


class Statements:
    """Every SELECT the engine runs while recording, with its parameters."""

    def __init__(self, store: Store) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.engine = store.engine

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, params))

    def plans(self, store: Store) -> list[tuple[str, str]]:
        out = []
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, params in self.seen:
                cur.execute("EXPLAIN " + statement, params)
                out.append((statement, "\n".join(r[0] for r in cur.fetchall())))
            raw.rollback()
        finally:
            raw.close()
        return out


@pytest.mark.slow
def test_lease_and_abandon_windows_use_indexes_on_a_large_store(pg: Store) -> None:
    cid = make_campaign(pg)
    fill(pg, cid, contacts=200_000, attempts=200_000)
    with pg.session() as s:  # the first lease reads (and caches) the campaign's zones
        assert len(lease(s, s.get(Campaign, cid), NOW, 50, "w0", daily_cap=3)) == 50
    with Statements(pg) as rec, pg.session() as s:
        got = lease(s, s.get(Campaign, cid), NOW, 50, "w1", daily_cap=3)
    assert len(got) == 50 and {c.priority for c in got} == {2}  # the highest priority first
    plans = rec.plans(pg)
    assert any("FOR UPDATE SKIP LOCKED" in sql for sql, _ in plans)
    for sql, plan in plans:
        for table in ("contact", "attempt"):
            assert f"Seq Scan on {table}" not in plan, f"{sql}\n{plan}"
        if "FOR UPDATE" in sql:  # walks the lease index in order: no sort of the campaign
            assert "ix_contact_lease" in plan and "Sort" not in plan, plan

    with Statements(pg) as rec, pg.session() as s:
        for span in (dt.timedelta(minutes=1), dt.timedelta(hours=1)):
            abandon_rate(s, cid, since=NOW - span)
    for sql, plan in rec.plans(pg):
        assert "ix_attempt_campaign_ended" in plan and "Seq Scan" not in plan, f"{sql}\n{plan}"


def test_concurrent_leases_skip_locked_rows_without_waiting(pg: Store) -> None:
    """Two workers leasing at the same instant get disjoint contacts; neither waits."""
    cid = make_campaign(pg)
    fill(pg, cid, contacts=300, attempts=0)
    first_holds = threading.Event()
    release_first = threading.Event()
    got: dict[str, list[int]] = {}

    def worker(owner: str, hold: bool) -> None:
        with pg.session() as s:
            got[owner] = [c.id for c in lease(s, s.get(Campaign, cid), NOW, 40, owner)]
            if hold:  # keep the row locks until the other worker has leased
                first_holds.set()
                assert release_first.wait(20)

    a = threading.Thread(target=worker, args=("w1", True))
    a.start()
    assert first_holds.wait(20)
    b = threading.Thread(target=worker, args=("w2", False))
    b.start()
    b.join(10)
    assert not b.is_alive(), "the second lease waited for the first transaction"
    release_first.set()
    a.join(10)
    assert len(got["w1"]) == len(got["w2"]) == 40
    assert not set(got["w1"]) & set(got["w2"])
    with pg.session() as s:
        owners = s.execute(
            text("SELECT lease_owner, count(*) FROM contact WHERE lease_owner LIKE 'w%' GROUP BY 1")
        ).all()
    assert dict(owners) == {"w1": 40, "w2": 40}
