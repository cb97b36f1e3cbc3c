"""Floor snapshots as JSON-ready data, with the derived figures the page shows.

Shared by the JSON API and the event stream. A ``SnapshotCache`` asks the floor at most once
per interval, however many supervisors are watching.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from dialer.floor.view import (
    AgentSnapshot,
    CallSnapshot,
    CampaignSnapshot,
    FleetView,
    Floor,
    HistoryPoint,
)
from dialer.privacy import scrub

#: The window the cap applies over, and the share of the cap at which the page warns.
CAP_WINDOW = "cap_window"
NEAR_CAP_SHARE = 0.8


class CapStatus(enum.StrEnum):
    OK = "ok"
    NEAR = "near"
    OVER = "over"


def cap_status(rate: float, cap: float) -> CapStatus:
    if cap > 0 and rate >= cap:
        return CapStatus.OVER
    if cap > 0 and rate >= NEAR_CAP_SHARE * cap:
        return CapStatus.NEAR
    return CapStatus.OK


def to_json(obj: Any) -> Any:
    """Dataclasses, mappings, enums and aware datetimes to plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dt.datetime):
        return obj.astimezone(dt.UTC).isoformat(timespec="seconds")
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    return obj


def _age(now: dt.datetime, since: dt.datetime) -> float:
    return round(max(0.0, (now - since).total_seconds()), 1)


def campaign_json(c: CampaignSnapshot) -> dict[str, Any]:
    out: dict[str, Any] = to_json(c)
    cap_rate = c.abandon[CAP_WINDOW].rate if CAP_WINDOW in c.abandon else 0.0
    out["progress"] = c.contacts_done / c.contacts if c.contacts else 0.0
    out["abandon_status"] = {
        w: cap_status(r.rate, c.abandon_cap).value for w, r in c.abandon.items()
    }
    out["cap_status"] = cap_status(cap_rate, c.abandon_cap).value
    if c.last_error:
        out["last_error"] = scrub(c.last_error)
    if c.held_reason:
        out["held_reason"] = scrub(c.held_reason)
    return out


def agent_json(a: AgentSnapshot, now: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = to_json(a)
    out["seconds_in_state"] = _age(now, a.since)
    if a.pause_reason:
        out["pause_reason"] = scrub(a.pause_reason)  # typed by an agent or supervisor
    return out


def call_json(c: CallSnapshot, now: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = to_json(c)
    out["seconds_in_state"] = _age(now, c.since)
    return out


def history_json(h: HistoryPoint) -> dict[str, Any]:
    out: dict[str, Any] = to_json(h)
    return out


def count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[str(it[key])] = out.get(str(it[key]), 0) + 1
    return out


def campaigns(floor: Floor) -> list[dict[str, Any]]:
    return [campaign_json(c) for c in floor.campaigns()]


def agents(floor: Floor) -> dict[str, Any]:
    now = floor.now()
    items = [agent_json(a, now) for a in floor.agents()]
    return {"at": to_json(now), "by_state": count_by(items, "state"), "agents": items}


def calls(floor: Floor) -> dict[str, Any]:
    now = floor.now()
    items = [call_json(c, now) for c in floor.calls()]
    return {"at": to_json(now), "by_state": count_by(items, "state"), "calls": items}


def history(floor: Floor) -> list[dict[str, Any]]:
    return [history_json(h) for h in floor.history()]


def workers(floor: Floor) -> list[dict[str, Any]]:
    """Each worker's health when the floor is a worker's fleet; [] for a lone dialer."""
    return floor.workers() if isinstance(floor, FleetView) else []


def snapshot(floor: Floor) -> dict[str, Any]:
    """Everything the page shows, in one object."""
    return {
        "at": to_json(floor.now()),
        "campaigns": campaigns(floor),
        "agents": agents(floor),
        "calls": calls(floor),
        "history": history(floor),
        "workers": workers(floor),
        "health": floor.health().to_json(),
    }


class SnapshotCache:
    """The floor's snapshot, computed and encoded at most once per ``max_age_s``, however many
    pages are open. ``extra`` adds console-side data (e.g. recent reloads)."""

    def __init__(
        self,
        floor: Floor,
        max_age_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.floor = floor
        self.max_age_s = max_age_s
        self.clock = clock
        self.extra = extra
        self._at: float | None = None
        self._value: dict[str, Any] = {}
        self._encoded: dict[bool, bytes] = {}

    def get(self) -> dict[str, Any]:
        t = self.clock()
        if self._at is None or t - self._at >= self.max_age_s:
            value = snapshot(self.floor)
            if self.extra is not None:
                value.update(self.extra())
            self._value = value
            self._encoded = {}
            self._at = t
        return self._value

    def history_key(self) -> tuple[int, str | None]:
        """Changes when the shift history does (new point), so streams resend it only then."""
        hist = self.get()["history"]
        return (len(hist), hist[-1]["at"] if hist else None)

    def encoded(
        self,
        *,
        with_history: bool = True,
        scope: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> bytes:
        """Compact JSON of the snapshot; without ``history`` when the page already has it.
        ``scope`` narrows it for one reader (a supervisor of some campaigns): encoded for that
        reader alone; the whole snapshot is encoded once for everyone else."""
        value = self.get()
        data = value if with_history else {k: v for k, v in value.items() if k != "history"}
        if scope is not None:
            narrowed = scope(data)
            if narrowed is not data:
                return json.dumps(
                    narrowed, ensure_ascii=False, separators=(",", ":"), default=str
                ).encode()
        if with_history not in self._encoded:
            self._encoded[with_history] = json.dumps(
                data, ensure_ascii=False, separators=(",", ":"), default=str
            ).encode()
        return self._encoded[with_history]

    def invalidate(self) -> None:
        self._at = None
