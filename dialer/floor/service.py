"""The floor as one ``Floor``: the campaign loop, its read-only view and its control.

``dialer run`` and ``dialer demo`` build it through the composition root
(``dialer.app.compose``), which also wires the console to it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dialer.floor.control import FloorControl
from dialer.floor.desk import AgentDesk
from dialer.floor.health import HealthMonitor
from dialer.floor.loop import CampaignLoop, CampaignRun, Clock
from dialer.floor.personal import PersonalCallbacks
from dialer.floor.reading import FloorView
from dialer.floor.view import (
    AgentSnapshot,
    CallSnapshot,
    CampaignSnapshot,
    Health,
    HistoryPoint,
)
from dialer.pacing.types import PacingInput
from dialer.settings import Settings
from dialer.store import Store
from dialer.tasks import end_task
from dialer.telephony.agents import AgentPool
from dialer.telephony.core import DialerCore, FinishedAttempt


class Dialer:
    """Implements ``dialer.floor.view.Floor`` by joining the loop, the view and the control."""

    def __init__(
        self,
        store: Store,
        core: DialerCore,
        settings: Settings,
        *,
        clock: Clock | None = None,
        owner: str = "dialer",
        tick_s: float = 0.5,
        campaigns: Sequence[str] | None = None,
        max_channels: int = 500,
        history_every_s: float = 30.0,
        snapshot_cache_s: float = 5.0,
        health_every_s: float = 2.0,
    ) -> None:
        self.loop = CampaignLoop(
            store,
            core,
            settings,
            clock=clock,
            owner=owner,
            tick_s=tick_s,
            campaigns=campaigns,
            max_channels=max_channels,
            history_every_s=history_every_s,
        )
        self.view = FloorView(self.loop, cache_s=snapshot_cache_s)
        self.control = FloorControl(self.loop)
        self.monitor = HealthMonitor(self.loop, every_s=health_every_s)
        self.desk = AgentDesk(self.loop)
        self.personal = PersonalCallbacks(self.loop, self.desk)
        self.loop.personal = self.personal

    # -- the loop's parts the composition root and the console wire to --------------------

    @property
    def store(self) -> Store:
        return self.loop.store

    @property
    def core(self) -> DialerCore:
        return self.loop.core

    @property
    def settings(self) -> Settings:
        return self.loop.settings

    @property
    def pool(self) -> AgentPool:
        return self.loop.pool

    @property
    def runs(self) -> dict[int, CampaignRun]:
        return self.loop.runs

    @property
    def on_outcome(self) -> list[Callable[[str, FinishedAttempt], None]]:
        return self.loop.on_outcome

    @property
    def on_decision(self) -> list[Callable[[CampaignRun, PacingInput, int], None]]:
        return self.loop.on_decision

    @property
    def metrics(self) -> Any:
        return self.loop.metrics

    @metrics.setter
    def metrics(self, value: Any) -> None:
        self.loop.metrics = value
        self.loop.guard.metrics = value

    @property
    def occupancy(self) -> float:
        """(talk + ringing + wrap-up) / logged-in time, since the start of this run."""
        return self.loop.occupancy.value

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False, quiet_s: float = 120.0) -> None:
        """Dial (see ``CampaignLoop.run``) while the health monitor keeps the alarms current."""
        monitor = asyncio.create_task(self.monitor.run(), name="floor-health")
        try:
            await self.loop.run(until_idle=until_idle, quiet_s=quiet_s)
        finally:
            await end_task(monitor)

    def stop(self) -> None:
        self.loop.stop()

    async def load_campaigns(self) -> None:
        await self.loop.load_campaigns()

    def sweep_unsent(self, older_than: dt.timedelta = dt.timedelta(minutes=2)) -> int:
        return self.loop.sweep_unsent(older_than)

    def decide(self, run: CampaignRun, now: float) -> int:
        return self.loop.decide(run, now)

    # -- Floor: reads -----------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.loop.now()

    def campaigns(self) -> list[CampaignSnapshot]:
        return self.view.campaigns()

    def agents(self) -> list[AgentSnapshot]:
        return self.view.agents()

    def calls(self) -> list[CallSnapshot]:
        return self.view.calls()

    def history(self) -> list[HistoryPoint]:
        return self.view.history()

    def health(self) -> Health:
        return self.monitor.health()

    def desks(self) -> list[AgentDesk]:
        """The agents' desktop on this switch (``dialer.floor.desk.DeskFloor``)."""
        return [self.desk]

    # -- Floor: commands --------------------------------------------------------------------

    async def pause(self, campaign: str, *, actor: str) -> None:
        await self.control.pause(campaign, actor=actor)

    async def resume(self, campaign: str, *, actor: str) -> None:
        await self.control.resume(campaign, actor=actor)

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        return await self.control.set_pacing(campaign, changes, actor=actor)

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        return await self.control.preview_next(campaign, agent, actor=actor)

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        return await self.control.reload(path, actor=actor)


__all__ = ["Dialer"]
