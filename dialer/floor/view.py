"""What the supervisor console reads and does: the floor's live state, as one interface.

The floor (``dialer.floor.service.Dialer``) implements ``Floor``; the console (HTTP API, live page,
metrics) only ever talks to a ``Floor``. Snapshots are plain frozen data, safe to serialise:
phone numbers in them are already masked, and they never carry customers' fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from dialer.telephony.agents import AgentState as AgentState


@dataclass(frozen=True)
class AgentSnapshot:
    name: str  # the queue member's name / interface, e.g. "Local/1001@agents"
    queues: tuple[str, ...]
    state: AgentState
    since: dt.datetime  # when it entered the state
    calls_handled: int = 0
    pause_reason: str | None = None


@dataclass(frozen=True)
class CallSnapshot:
    attempt_id: int
    campaign: str
    state: str  # dialing | ringing | answered | in_ivr | queued | with_agent
    since: dt.datetime
    phone_masked: str
    agent: str | None = None


@dataclass(frozen=True)
class RateWindow:
    live_answers: int
    abandoned: int
    rate: float


@dataclass(frozen=True)
class CampaignSnapshot:
    name: str
    state: str  # running | paused
    mode: str  # the configured mode
    effective_mode: str  # e.g. progressive while over the abandon cap
    purpose: str
    contacts: int
    contacts_done: int
    attempts: int
    calls_in_flight: int
    dial_level: float  # calls in flight per available agent
    lines_per_agent: float  # dials per logged-in agent (recent)
    answer_rate: float  # estimated, 0-1
    abandon: Mapping[str, RateWindow]  # "1m", "1h", "today", "24h", "30d", "to_date", "cap_window"
    abandon_cap: float
    hopper_eligible: int
    hopper_reasons: Mapping[str, int]
    pacing: Mapping[str, Any]  # the running pacing settings (CampaignSpec.pacing, JSON form)
    outcomes: Mapping[str, int] = field(default_factory=dict)
    last_error: str | None = None  # e.g. a refused reload
    #: why dialling is held although the campaign runs (the abandon breaker, no agent that
    #: the switch can ring), else None
    held_reason: str | None = None
    #: how late the switch's events are read (the worst of the last seconds): over
    #: ``pacing.max_event_lag_s`` predictive and power dial progressively
    event_lag_s: float = 0.0


@dataclass(frozen=True)
class HistoryPoint:
    at: dt.datetime
    occupancy: float  # (talk + wrap-up) / logged-in time over the last interval, 0-1
    abandon_rate: float  # over the cap window, 0-1
    agents_logged_in: int
    calls_in_flight: int


@dataclass(frozen=True)
class Dependency:
    """One outside part the floor needs: ``ami:<switch>``, ``fastagi``, ``store``."""

    name: str
    up: bool
    detail: str = ""  # why it is down


@dataclass(frozen=True)
class Health:
    at: dt.datetime
    dependencies: tuple[Dependency, ...]
    campaigns: Mapping[str, str]  # name -> running | paused | held
    alarms: tuple[Any, ...]  # dialer.floor.alarms.Alarm

    @property
    def ok(self) -> bool:
        return all(d.up for d in self.dependencies)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": self.at.isoformat(),
            "dependencies": {
                d.name: {"up": d.up, **({"detail": d.detail} if d.detail else {})}
                for d in self.dependencies
            },
            "campaigns": dict(self.campaigns),
            "alarms": [a.to_json() for a in self.alarms],
        }


class Floor(Protocol):
    """Implemented by the campaign runner; everything the console needs."""

    def now(self) -> dt.datetime: ...

    def campaigns(self) -> list[CampaignSnapshot]: ...

    def agents(self) -> list[AgentSnapshot]: ...

    def calls(self) -> list[CallSnapshot]: ...

    def history(self) -> list[HistoryPoint]: ...

    def health(self) -> Health:
        """Dependencies up or down, each campaign's state, and the alarms that hold now."""
        ...

    async def pause(self, campaign: str, *, actor: str) -> None: ...

    async def resume(self, campaign: str, *, actor: str) -> None: ...

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        """Validate and apply at once; audited. Raises ``ConfigError`` and changes nothing when
        invalid. Returns the new pacing settings."""
        ...

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        """Preview mode: lease the next contact for ``agent`` and dial it; returns a masked view
        of the contact (or None when the hopper is empty)."""
        ...

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        """Re-apply changed campaign/settings files; returns what changed. An invalid file
        raises ``ConfigError`` and the running settings stay."""
        ...


@runtime_checkable
class FleetView(Protocol):
    """A floor that also knows every worker on the store (``dialer.floor.fleet.Fleet``): the
    console then shows each worker's health (``dialer.store.workers.WorkerHealth.to_json``)."""

    def workers(self) -> list[dict[str, Any]]: ...
