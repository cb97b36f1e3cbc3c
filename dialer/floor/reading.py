"""What supervisors read: a read-only view of the campaign loop (``Floor``'s reads).

Snapshots are plain frozen data (``dialer.floor.view``); phone numbers are masked. The view
changes nothing on the loop; its database counts are cached for a few seconds per campaign.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import func, select

from dialer.floor.loop import CampaignLoop, CampaignRun
from dialer.floor.view import (
    AgentSnapshot,
    AgentState,
    CallSnapshot,
    CampaignSnapshot,
    HistoryPoint,
    RateWindow,
)
from dialer.lists.stats import abandon_rates, outcome_counts
from dialer.privacy import mask_phone
from dialer.store import Store
from dialer.store.models import Attempt, Contact


def _dt(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def store_figures(
    store: Store, campaign_id: int, now: dt.datetime, cap_window: dt.timedelta
) -> dict[str, Any]:
    """A campaign's figures that the store holds for every worker alike: contacts, done,
    attempts, abandon windows and outcome counts."""
    with store.session() as s:
        contacts = (
            s.scalar(
                select(func.count()).select_from(Contact).where(Contact.campaign_id == campaign_id)
            )
            or 0
        )
        done = (
            s.scalar(
                select(func.count())
                .select_from(Contact)
                .where(Contact.campaign_id == campaign_id, Contact.status == "done")
            )
            or 0
        )
        attempts = (
            s.scalar(
                select(func.count()).select_from(Attempt).where(Attempt.campaign_id == campaign_id)
            )
            or 0
        )
        rates = abandon_rates(s, campaign_id, now, cap_window=cap_window)
        outcomes = outcome_counts(s, campaign_id)
    return {
        "contacts": int(contacts),
        "done": int(done),
        "attempts": int(attempts),
        "abandon": {k: RateWindow(v.live_answers, v.abandoned, v.rate) for k, v in rates.items()},
        "outcomes": outcomes,
    }


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sorts names as people read them: "Agent 2" before "Agent 10"."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.casefold())
        for part in re.split(r"(\d+)", name)
        if part
    )


class FloorView:
    """Campaigns, agents, calls and history, as the console shows them."""

    def __init__(self, loop: CampaignLoop, *, cache_s: float = 5.0) -> None:
        self.loop = loop
        self.cache_s = cache_s  # how long a campaign's database counts are reused

    def campaigns(self) -> list[CampaignSnapshot]:
        now = self.loop.clock.time()
        out = []
        for run in self.loop.runs.values():
            cache = run.snapshot_cache
            if now - cache.get("at", float("-inf")) >= self.cache_s:
                cache.update(self._db_snapshot(run))
                cache["at"] = now
            queue = run.spec.queue
            available = self.loop.pool.count(AgentState.IDLE, queue) if queue else 0
            logged = self.loop.pool.logged_in(queue) if queue else 0
            in_flight = len(self.loop.calls_of(run.id)) + run.pending
            est = run.estimator.answer_prob(now)[0]
            out.append(
                CampaignSnapshot(
                    name=run.spec.name,
                    state=run.spec.state.value,
                    mode=run.spec.mode.value,
                    effective_mode=run.effective_mode or run.spec.mode.value,
                    purpose=run.spec.purpose.value,
                    contacts=cache["contacts"],
                    contacts_done=cache["done"],
                    attempts=cache["attempts"],
                    calls_in_flight=in_flight,
                    dial_level=in_flight / available if available else float(in_flight),
                    lines_per_agent=in_flight / logged if logged else 0.0,
                    answer_rate=est,
                    abandon=cache["abandon"],
                    abandon_cap=run.spec.pacing.abandon_cap,
                    hopper_eligible=int(run.hopper.get("eligible", 0)),
                    hopper_reasons=dict(run.hopper.get("reasons", {})),
                    pacing=run.spec.to_document()["pacing"],
                    outcomes=cache["outcomes"],
                    last_error=run.reload_error or run.last_error,
                    held_reason=self.loop.guard.held_reason(run),
                    event_lag_s=self.loop.core.lag.lag_s(now),
                )
            )
        return out

    def _db_snapshot(self, run: CampaignRun) -> dict[str, Any]:
        return store_figures(
            self.loop.store, run.id, self.loop.now(), run.spec.pacing.abandon_window
        )

    def agents(self) -> list[AgentSnapshot]:
        return [
            AgentSnapshot(
                name=a.name,
                queues=tuple(sorted(a.queues)),
                state=a.effective_state,
                since=_dt(a.since),
                calls_handled=a.calls_handled,
                pause_reason=a.pause_reason,
            )
            for a in sorted(self.loop.pool.agents.values(), key=lambda a: natural_key(a.name))
        ]

    def calls(self) -> list[CallSnapshot]:
        names = {r.id: r.spec.name for r in self.loop.runs.values()}
        phones = self.loop.attempt_phone
        out = []
        for c in self.loop.core.tracker.calls.values():
            cid = self.loop.attempt_campaign.get(c.attempt_id)
            out.append(
                CallSnapshot(
                    attempt_id=c.attempt_id,
                    campaign=names.get(cid, "") if cid is not None else "",
                    state=c.state.value,
                    since=_dt(c.last_event_at or c.originated_at),
                    phone_masked=mask_phone(phones[c.attempt_id]) if c.attempt_id in phones else "",
                    agent=c.agent,
                )
            )
        return out

    def history(self) -> list[HistoryPoint]:
        return list(self.loop.occupancy.history)
