"""One worker's floor over several switches, and every worker's health from the store.

A worker (``dialer run``) runs one ``Dialer`` per Asterisk server it serves: each paces the
agents on its own switch's queues. ``Fleet`` is the ``Floor`` the console reads for the whole
worker: campaign figures from the shared store (the same for every worker: contacts, attempts,
outcomes, abandon windows), the live part (calls in flight, dial level, agents, calls) summed
over this worker's switches, and ``workers()``: each worker's heartbeat and what it reported
(``dialer.store.workers``, read by the worker's heartbeat), so any worker's console shows the
whole floor's health.

Controls (pause, resume, pacing, reload) are written to the store once, through the first
switch's ``Dialer`` (a standby worker serving no switch uses one that never dials); the others
re-read the campaigns at once, and other workers within their next sync (``dialer.app.worker``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select

from dialer.floor.desk import AgentDesk
from dialer.floor.reading import natural_key, store_figures
from dialer.floor.service import Dialer
from dialer.floor.view import (
    AgentSnapshot,
    AgentState,
    CallSnapshot,
    CampaignSnapshot,
    Dependency,
    Health,
    HistoryPoint,
)
from dialer.lists.campaigns import spec_of
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Attempt, Campaign
from dialer.telephony.core import FinishedAttempt


class Fleet:
    """``Floor`` over this worker's per-switch dialers; ``workers()`` from the store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        dialers: Callable[[], Mapping[str, Dialer]],
        control: Callable[[], Dialer | None] = lambda: None,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.settings = settings
        self._dialers = dialers
        self._control = control  # a switch-less Dialer for the controls of a standby worker
        self._wall = wall
        self.on_outcome: list[Callable[[str, FinishedAttempt], None]] = []
        self._metrics: Any = None
        self._health: list[dict[str, Any]] = []
        self._store_campaigns: list[CampaignSnapshot] = []
        self._store_ok = True

    # -- what serve_console wires in: shared by every switch's dialer --------------------

    @property
    def metrics(self) -> Any:
        return self._metrics

    @metrics.setter
    def metrics(self, value: Any) -> None:
        self._metrics = value
        for d in self._dialers().values():
            self.adopt(d)

    def adopt(self, dialer: Dialer) -> None:
        """A switch's dialer joins the fleet: it reports to the fleet's metrics and hooks."""
        dialer.metrics = self._metrics
        if self._forward not in dialer.on_outcome:
            dialer.on_outcome.append(self._forward)

    def _forward(self, campaign: str, item: FinishedAttempt) -> None:
        for cb in self.on_outcome:
            cb(campaign, item)

    # -- reads --------------------------------------------------------------------------

    def _all(self) -> list[Dialer]:
        return [d for _, d in sorted(self._dialers().items())]

    def floors(self) -> list[Dialer]:
        """The switches' dialers this worker serves now."""
        return self._all()

    def now(self) -> dt.datetime:
        ds = self._all()
        return ds[0].now() if ds else self._wall()

    def campaigns(self) -> list[CampaignSnapshot]:
        if not self._dialers():  # a standby worker: the store's view of the whole floor
            return list(self._store_campaigns)
        merged: dict[str, CampaignSnapshot] = {}
        live: dict[str, list[int]] = {}  # name -> [in flight, available agents, logged in]
        for d in self._all():
            for c in d.campaigns():
                merged.setdefault(c.name, c)  # the store's figures: the same on every switch
                queue = next((r.spec.queue for r in d.runs.values() if r.spec.name == c.name), None)
                acc = live.setdefault(c.name, [0, 0, 0])
                acc[0] += c.calls_in_flight
                acc[1] += d.pool.count(AgentState.IDLE, queue) if queue else 0
                acc[2] += d.pool.logged_in(queue) if queue else 0
        out = []
        for name, c in merged.items():
            in_flight, avail, logged = live[name]
            out.append(
                dataclasses.replace(
                    c,
                    calls_in_flight=in_flight,
                    dial_level=in_flight / avail if avail else float(in_flight),
                    lines_per_agent=in_flight / logged if logged else 0.0,
                )
            )
        return out

    def agents(self) -> list[AgentSnapshot]:
        agents = [a for d in self._all() for a in d.agents()]
        return sorted(agents, key=lambda a: natural_key(a.name))

    def calls(self) -> list[CallSnapshot]:
        return [c for d in self._all() for c in d.calls()]

    def history(self) -> list[HistoryPoint]:
        ds = self._all()
        return ds[0].history() if ds else []

    def health(self) -> Health:
        """Every switch's dependencies and alarms; a worker serving no switch checks only
        what it can (the store, through its heartbeat)."""
        ds = self._all()
        if not ds:
            store_up = self._store_ok
            deps = (Dependency("store", store_up, "" if store_up else "heartbeat failed"),)
            states = {c.name: c.state for c in self._store_campaigns}
            return Health(self._wall(), deps, states, ())
        parts = [d.health() for d in ds]
        deps_by_name: dict[str, Dependency] = {}
        for h in parts:
            for dep in h.dependencies:  # the store and FastAGI are shared: down on any is down
                old = deps_by_name.get(dep.name)
                if old is None or (old.up and not dep.up):
                    deps_by_name[dep.name] = dep
        camps: dict[str, str] = {}
        for h in parts:
            for name, state in h.campaigns.items():
                camps[name] = "held" if "held" in (state, camps.get(name)) else state
        alarms = {(a.kind, a.subject): a for h in parts for a in h.alarms}
        return Health(parts[0].at, tuple(deps_by_name.values()), camps, tuple(alarms.values()))

    def set_store_ok(self, ok: bool) -> None:
        self._store_ok = ok

    def desks(self) -> list[AgentDesk]:
        """The agents' desktop on each switch this worker serves (``DeskFloor``)."""
        return [d.desk for d in self._dialers().values()]

    def workers(self) -> list[dict[str, Any]]:
        """Every worker's health, as the last heartbeat round read it from the store."""
        return list(self._health)

    def set_health(self, health: list[dict[str, Any]]) -> None:
        self._health = health

    def refresh_from_store(self) -> None:
        """(In a thread.) Every campaign as the store shows it, with the calls every worker
        has up: what a worker serving no switch yet (a standby, the console host) shows."""
        now = self._wall()
        with self.store.session() as s:
            rows = list(s.scalars(select(Campaign).order_by(Campaign.id)))
            live: dict[int, int] = {
                cid: n
                for cid, n in s.execute(
                    select(Attempt.campaign_id, func.count())
                    .where(Attempt.outcome.is_(None), Attempt.channel_id.is_not(None))
                    .group_by(Attempt.campaign_id)
                )
            }
        out = []
        for row in rows:
            spec = spec_of(row)
            fig = store_figures(self.store, row.id, now, spec.pacing.abandon_window)
            doc = spec.to_document()
            out.append(
                CampaignSnapshot(
                    name=spec.name,
                    state=spec.state.value,
                    mode=spec.mode.value,
                    effective_mode=spec.mode.value,
                    purpose=spec.purpose.value,
                    contacts=fig["contacts"],
                    contacts_done=fig["done"],
                    attempts=fig["attempts"],
                    calls_in_flight=int(live.get(row.id, 0)),
                    dial_level=0.0,
                    lines_per_agent=0.0,
                    answer_rate=0.0,
                    abandon=fig["abandon"],
                    abandon_cap=spec.pacing.abandon_cap,
                    hopper_eligible=0,
                    hopper_reasons={},
                    pacing=doc["pacing"],
                    outcomes=fig["outcomes"],
                )
            )
        self._store_campaigns = out

    # -- controls: written once, re-read by every switch ---------------------------------

    async def _first_then_sync(self, act: Callable[[Dialer], Any]) -> Any:
        ds = self._all()
        if not ds:
            control = self._control()
            if control is None:
                from dialer.errors import ConfigError

                raise ConfigError("this worker serves no switch yet")
            result = await act(control)
            await asyncio.to_thread(self.refresh_from_store)
            return result
        result = await act(ds[0])
        for d in ds[1:]:
            await d.load_campaigns()
        return result

    async def pause(self, campaign: str, *, actor: str) -> None:
        await self._first_then_sync(lambda d: d.pause(campaign, actor=actor))

    async def resume(self, campaign: str, *, actor: str) -> None:
        await self._first_then_sync(lambda d: d.resume(campaign, actor=actor))

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        result: Mapping[str, Any] = await self._first_then_sync(
            lambda d: d.set_pacing(campaign, changes, actor=actor)
        )
        return result

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        for d in self._all():  # the switch the agent sits on
            if any(a.name == agent for a in d.pool.agents.values()):
                return await d.preview_next(campaign, agent, actor=actor)
        ds = self._all()
        return await ds[0].preview_next(campaign, agent, actor=actor) if ds else None

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        changed: list[str] = await self._first_then_sync(lambda d: d.reload(path, actor=actor))
        return changed


__all__ = ["Fleet"]
