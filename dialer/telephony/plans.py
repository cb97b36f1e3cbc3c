"""The dialling path's hot queries and their plans, on SQLite and PostgreSQL.

Every query here runs once per lease, per batch of finished calls or per sweep while a campaign
dials. Each must reach its rows through an index: a scan of a table that grows with the store
(contacts, attempts, IVR sessions, the do-not-call list) would make every call dearer as the
store fills. ``scripts/bench_switch.py store`` prints these plans beside its figures, and
``tests/store/test_plans.py`` fails on a scan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Connection

from dialer.lists import hopper
from dialer.lists.dnc import dnc_statements
from dialer.store import Store
from dialer.store.models import Attempt, Campaign
from dialer.telephony.rows import ivr_says_statement, open_attempts_statement

#: Tables whose size grows with the store (a full scan of one is a finding).
GROWING = ("contact", "attempt", "ivr_session", "ivr_step", "dnc")


def hot_queries(campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    """Name -> statement, built by the very functions the dialler uses."""
    policy = hopper.policy_of(campaign, daily_cap=3)
    pairs = [("CN", "Asia/Shanghai")]
    lease = hopper.lease_query(campaign.id, policy, now, pairs, lock=False)
    phones = ["+8613900000001", "+8613900000002"]
    prefixes, exact = dnc_statements(phones)
    return {
        "lease (one priority level)": lease.statement.params(
            **lease.params, priority=0, size=100, skip=0
        ),
        "number facts (attempts near now)": hopper.facts_statement(phones, now),
        "do-not-call: prefixes": prefixes,
        "do-not-call: exact numbers": exact,
        "IVR sessions of finished calls": ivr_says_statement([1, 2, 3]),
        "open attempts of this worker": open_attempts_statement("default", "dialer"),
        "unsent attempts (sweep)": select(Attempt.id).where(
            Attempt.outcome.is_(None),
            Attempt.channel_id.is_(None),
            Attempt.created_at < now - dt.timedelta(minutes=2),
        ),
    }


@contextmanager
def _explaining(conn: Connection, prefix: str, rows: list[Any]) -> Iterator[None]:
    """Run statements as ``EXPLAIN ...`` on ``conn``, keeping the plan rows."""

    def before(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> Any:
        return prefix + statement, params

    def after(_c: Any, cursor: Any, *_rest: Any) -> None:
        rows.extend(cursor.fetchall())

    event.listen(conn, "before_cursor_execute", before, retval=True)
    event.listen(conn, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", before)
        event.remove(conn, "after_cursor_execute", after)


def plan(conn: Connection, statement: Any) -> list[str]:
    """The plan of ``statement`` as text lines. On PostgreSQL sequential scans are priced out
    (``enable_seqscan = off``): the question is whether an index CAN serve the query, which
    the planner of a small test table would not show."""
    sqlite = conn.dialect.name == "sqlite"
    rows: list[Any] = []
    if not sqlite:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    with _explaining(conn, "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ", rows):
        try:
            conn.execute(statement).close()
        except Exception:  # the plan rows do not match the statement's columns
            pass
    if sqlite:
        return [str(r[-1]) for r in rows]
    return [str(r[0]) for r in rows]


def scans(lines: list[str], dialect: str) -> list[str]:
    """The plan lines that read a whole growing table."""
    out = []
    for line in lines:
        words = line.replace("(", " ").split()
        if dialect == "sqlite":
            # "SCAN attempt" (a table) - "SCAN x USING INDEX" walks a whole index, just as bad
            if len(words) >= 2 and words[0] == "SCAN" and words[1] in GROWING:
                out.append(line)
        elif "Seq Scan on" in line and any(f"Seq Scan on {t} " in line + " " for t in GROWING):
            out.append(line)
    return out


def hot_query_plans(store: Store, campaign_id: int) -> dict[str, list[str]]:
    """Name -> plan lines of every hot query for the campaign, against ``store``."""
    now = dt.datetime.now(dt.UTC)
    out: dict[str, list[str]] = {}
    with store.session() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise ValueError(f"no campaign {campaign_id}")
        statements = hot_queries(campaign, now)
        conn = s.connection()
        for name, statement in statements.items():
            out[name] = plan(conn, statement)
        s.rollback()
    return out
