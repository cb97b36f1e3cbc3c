"""Abandon rates and outcome counts from attempt rows (DESIGN.md section 9).

Abandon rate = abandoned / live answers. A live answer is an answered call that is not a
machine (``Attempt.live_answer``); abandoned = a live answer sent to agents and not bridged
within the hold limit (``Attempt.outcome == "abandoned"``). Windows: last minute, last hour,
today (the campaign's reporting zone), rolling 24 h, rolling 30 days, campaign to date, and the
campaign's cap window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dialer.outcomes import Outcome
from dialer.store.models import Attempt

WINDOWS: dict[str, dt.timedelta | None] = {
    "1m": dt.timedelta(minutes=1),
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "30d": dt.timedelta(days=30),
    "to_date": None,
}


@dataclass(frozen=True)
class AbandonRate:
    live_answers: int
    abandoned: int

    @property
    def rate(self) -> float:
        """0.0 when there were no live answers."""
        return self.abandoned / self.live_answers if self.live_answers else 0.0


def abandon_rate(
    session: Session,
    campaign_id: int,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None = None,
) -> AbandonRate:
    """Counts over attempts that ENDED in ``[since, until)``."""
    q = select(
        func.coalesce(func.sum(case((Attempt.live_answer.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((Attempt.outcome == Outcome.ABANDONED.value, 1), else_=0)), 0),
    ).where(Attempt.campaign_id == campaign_id, Attempt.ended_at.is_not(None))
    if since is not None:
        q = q.where(Attempt.ended_at >= since)
    if until is not None:
        q = q.where(Attempt.ended_at < until)
    live, abandoned = session.execute(q).one()
    return AbandonRate(int(live), int(abandoned))


def abandon_rates(
    session: Session,
    campaign_id: int,
    now: dt.datetime,
    *,
    cap_window: dt.timedelta,
    tz: str = "Asia/Shanghai",
) -> dict[str, AbandonRate]:
    """Every window of section 9, plus ``cap_window`` (the campaign's ``abandon_window``)."""
    out = {
        name: abandon_rate(session, campaign_id, since=None if span is None else now - span)
        for name, span in WINDOWS.items()
    }
    local = now.astimezone(ZoneInfo(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    out["today"] = abandon_rate(session, campaign_id, since=midnight.astimezone(dt.UTC))
    out["cap_window"] = abandon_rate(session, campaign_id, since=now - cap_window)
    return out


def outcome_counts(
    session: Session,
    campaign_id: int | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, int]:
    """``{"busy": 3, ...}`` over attempts created in the range; unfinished ones under ``None``."""
    q = select(Attempt.outcome, func.count()).group_by(Attempt.outcome)
    if campaign_id is not None:
        q = q.where(Attempt.campaign_id == campaign_id)
    if since is not None:
        q = q.where(Attempt.created_at >= since)
    if until is not None:
        q = q.where(Attempt.created_at < until)
    return {(o if o is not None else "unfinished"): int(n) for o, n in session.execute(q)}
