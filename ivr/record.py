"""Where a session's steps and result go: the store (``IvrSession``/``IvrStep``), or memory.

Everything written here passes ``mask`` first: card numbers keep their last four, any run of
six or more digits is masked, keys that name verification digits are refused outright.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.privacy import scrub
from dialer.store import Store
from dialer.store.models import IvrSession, IvrStep
from ivr.context import CallContext

#: Keys that must never carry a value into the store or a log.
FORBIDDEN_KEYS = frozenset({"digits", "typed", "pin", "id_digits", "id_last6"})


def mask_card(value: str) -> str:
    """Card numbers keep their last four digits only: ``****4321``."""
    digits = "".join(c for c in value if c.isdigit())
    return "****" + digits[-4:]


def mask(value: Any, key: str = "") -> Any:
    """Mask personal data in a JSON-able value (recursively)."""
    if key in FORBIDDEN_KEYS:
        return "<withheld>"
    if isinstance(value, Mapping):
        return {str(k): mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if "card" in key and any(c.isdigit() for c in value):
            return mask_card(value)
        return scrub(value)
    return value


class Recorder(Protocol):
    def start(self, call: CallContext) -> int | None: ...

    def step(
        self,
        session_id: int | None,
        seq: int,
        node: str,
        kind: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None: ...

    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None: ...


class StoreRecorder:
    """Writes each step as it happens, so a hang-up leaves a consistent partial record."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self.clock = clock

    def start(self, call: CallContext) -> int | None:
        with self.store.session() as s:
            row = IvrSession(
                attempt_id=call.attempt_id,
                flow=call.flow,
                channel=scrub(call.channel)[:128],
                is_test=call.is_test,
                status="running",
                data={"language": call.language},
                started_at=self.clock(),
            )
            s.add(row)
            s.flush()
            return row.id

    def step(
        self,
        session_id: int | None,
        seq: int,
        node: str,
        kind: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        with self.store.session() as s:
            s.add(
                IvrStep(
                    session_id=session_id,
                    seq=seq,
                    node=node,
                    kind=kind,
                    outcome=outcome[:64],
                    detail=mask(detail),
                    at=self.clock(),
                )
            )

    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None:
        with self.store.session() as s:
            row = s.get(IvrSession, session_id)
            if row is None:
                return
            row.status = status
            row.result = result
            row.next = next_
            row.data = {**(row.data or {}), **mask(data)}
            row.ended_at = self.clock()


@dataclass
class MemoryRecorder:
    """Keeps sessions in memory (benchmarks, a server run without a store)."""

    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    steps: list[tuple[int | None, int, str, str, str, dict[str, Any]]] = field(default_factory=list)
    keep: bool = True

    def start(self, call: CallContext) -> int | None:
        sid = len(self.sessions) + 1
        if self.keep:
            self.sessions[sid] = {"flow": call.flow, "status": "running", "is_test": call.is_test}
        return sid

    def step(
        self,
        session_id: int | None,
        seq: int,
        node: str,
        kind: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        if self.keep:
            self.steps.append((session_id, seq, node, kind, outcome, mask(detail)))

    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None:
        if self.keep and session_id in self.sessions:
            self.sessions[session_id].update(
                status=status, result=result, next=next_, data=mask(data)
            )
