"""Average handle time, from the store's records: talk plus wrap-up, per agent, campaign, queue.

A handled call is an attempt bridged to an agent (``bridged_at``) that has ended
(``ended_at``). Its **talk** is ``ended_at - bridged_at``. Its **wrap-up** is what the records
say the agent spent after the call:

- with a disposition saved after the call: from the hang-up to the first disposition saved for
  it, at most the campaign's wrap-up limit (``wrapup_limit_s``, else ``DEFAULT_WRAPUP_LIMIT_S``:
  the desktop ends a held wrap-up then); a disposition saved during the call means no wrap-up;
- without one: the queue's own wrap-up time (``pacing.wrapup_s``, app_queue's ``wrapuptime``,
  which app_queue applies to every member and AMI does not report).

Handle time = talk + wrap-up; the average is over the handled calls whose bridge falls in
``[since, until)``. Rows come per (agent, campaign, queue), so a supervisor's view keeps only
their campaigns' rows and sums again (``summarize``): one computation serves the supervisor
page, the API and the report. The agent is the queue member's name the switch reported (what
the supervisor page shows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.lists.campaigns import spec_of
from dialer.store.models import Attempt, Campaign
from dialer.store.people import Disposition

#: A held wrap-up of a campaign without ``wrapup_limit_s`` ends after this long (the desktop's).
DEFAULT_WRAPUP_LIMIT_S = 600.0


@dataclass(frozen=True)
class HandleRow:
    """The handled calls of one agent in one campaign's queue."""

    agent: str
    campaign: str
    queue: str
    calls: int
    talk_s: float
    wrapup_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "campaign": self.campaign,
            "queue": self.queue,
            "calls": self.calls,
            "talk_s": round(self.talk_s, 1),
            "wrapup_s": round(self.wrapup_s, 1),
        }


def wrapup_of(
    ended: dt.datetime, disposed: dt.datetime | None, queue_wrapup_s: float, limit_s: float
) -> float:
    """Seconds of wrap-up after a call that ended at ``ended`` (see the module's rules)."""
    if disposed is None:
        return queue_wrapup_s
    return min(limit_s, max(0.0, (disposed - ended).total_seconds()))


def handle_rows(
    s: Session,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    campaign: str | None = None,
) -> list[HandleRow]:
    """Handled calls bridged in ``[since, until)``, summed per (agent, campaign, queue)."""
    first_disposition = (
        select(Disposition.attempt_id, func.min(Disposition.at).label("at"))
        .group_by(Disposition.attempt_id)
        .subquery()
    )
    q = (
        select(
            Attempt.agent,
            Attempt.queue,
            Attempt.bridged_at,
            Attempt.ended_at,
            Attempt.campaign_id,
            first_disposition.c.at,
        )
        .outerjoin(first_disposition, first_disposition.c.attempt_id == Attempt.id)
        .where(
            Attempt.bridged_at.is_not(None),
            Attempt.ended_at.is_not(None),
            Attempt.agent.is_not(None),
        )
    )
    if since is not None:
        q = q.where(Attempt.bridged_at >= since)
    if until is not None:
        q = q.where(Attempt.bridged_at < until)
    campaigns = {c.id: c for c in s.scalars(select(Campaign))}
    if campaign is not None:
        ids = [cid for cid, c in campaigns.items() if c.name == campaign]
        q = q.where(Attempt.campaign_id.in_(ids))
    sums: dict[tuple[str, str, str], list[float]] = {}
    for agent, queue, bridged, ended, cid, disposed in s.execute(q):
        row = campaigns.get(cid)
        if row is None or not agent:
            continue
        spec = spec_of(row)
        limit = spec.wrapup_limit_s or DEFAULT_WRAPUP_LIMIT_S
        talk = max(0.0, (_utc(ended) - _utc(bridged)).total_seconds())
        wrap = wrapup_of(
            _utc(ended), _utc(disposed) if disposed else None, spec.pacing.wrapup_s, limit
        )
        acc = sums.setdefault((agent, row.name, queue or spec.queue or ""), [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += talk
        acc[2] += wrap
    return [
        HandleRow(agent, camp, queue, int(n), talk, wrap)
        for (agent, camp, queue), (n, talk, wrap) in sorted(sums.items())
    ]


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def summarize(rows: Iterable[HandleRow], key: Callable[[HandleRow], str]) -> list[dict[str, Any]]:
    """Rows summed by ``key`` (agent, campaign or queue): calls, talk, wrap-up, and the average
    handle time ``aht_s`` (None without a handled call)."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        acc = groups.setdefault(key(r), [0, 0.0, 0.0])
        acc[0] += r.calls
        acc[1] += r.talk_s
        acc[2] += r.wrapup_s
    return [
        {
            "name": name,
            "calls": int(n),
            "talk_s": round(talk, 1),
            "wrapup_s": round(wrap, 1),
            "aht_s": round((talk + wrap) / n, 1) if n else None,
        }
        for name, (n, talk, wrap) in sorted(groups.items())
    ]


def handle_times(rows: Iterable[HandleRow], since: dt.datetime | None = None) -> dict[str, Any]:
    """The figures a supervisor reads: by agent, by campaign, by queue, and in all."""
    rows = list(rows)
    total = summarize(rows, lambda r: "all")
    return {
        "since": since.isoformat(timespec="seconds") if since is not None else None,
        "rows": [r.to_json() for r in rows],
        "by_agent": summarize(rows, lambda r: r.agent),
        "by_campaign": summarize(rows, lambda r: r.campaign),
        "by_queue": summarize(rows, lambda r: r.queue),
        "all": total[0]
        if total
        else {"name": "all", "calls": 0, "talk_s": 0.0, "wrapup_s": 0.0, "aht_s": None},
    }


def rows_of(doc: dict[str, Any]) -> list[HandleRow]:
    """The rows of a ``handle_times`` document (to filter and sum again)."""
    return [
        HandleRow(r["agent"], r["campaign"], r["queue"], r["calls"], r["talk_s"], r["wrapup_s"])
        for r in doc.get("rows", [])
    ]


__all__ = [
    "DEFAULT_WRAPUP_LIMIT_S",
    "HandleRow",
    "handle_rows",
    "handle_times",
    "rows_of",
    "summarize",
    "wrapup_of",
]
