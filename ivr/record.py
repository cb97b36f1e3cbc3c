"""Where a session's steps and result go: the store (``IvrSession``/``IvrStep``), or memory.

Everything written here passes ``mask`` first: card numbers keep their last four, any run of
six or more digits is masked, keys that name verification digits are refused outright.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, insert, select, update

from dialer.privacy import scrub
from dialer.store import Store
from dialer.store.models import IvrSession, IvrStep
from ivr.context import CallContext
from ivr.errors import IvrError

log = logging.getLogger("ivr.record")

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
    #: ``step`` only queues its row (never waits for the store): a driver may run it inline
    #: on its event loop instead of a worker thread
    queues_steps: bool

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

    def close(self) -> None: ...


def _session_values(call: CallContext, at: dt.datetime) -> dict[str, Any]:
    return {
        "attempt_id": call.attempt_id,
        "flow": call.flow,
        "channel": scrub(call.channel)[:128],
        "is_test": call.is_test,
        "status": "running",
        "data": {"language": call.language},
        "started_at": at,
    }


def _step_row(
    session_id: int | None,
    seq: int,
    node: str,
    kind: str,
    outcome: str,
    detail: Mapping[str, Any],
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "seq": seq,
        "node": node,
        "kind": kind,
        "outcome": outcome[:64],
        "detail": mask(detail),
        "at": at,
    }


def _end_values(
    session_id: int,
    status: str,
    result: str | None,
    next_: str,
    data: Mapping[str, Any],
    at: dt.datetime,
) -> dict[str, Any]:
    """The columns a session's end sets (``data``: the whole, already masked)."""
    return {
        "id": session_id,
        "status": status,
        "result": result,
        "next": next_,
        "data": dict(data),
        "ended_at": at,
    }


class StoreRecorder:
    """Writes each step as it happens, one transaction each, so a hang-up leaves a consistent
    partial record (process AGI: one process per call, nothing to group)."""

    queues_steps = False

    def __init__(self, store: Store, clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self.clock = clock

    def start(self, call: CallContext) -> int | None:
        with self.store.session() as s:
            row = IvrSession(**_session_values(call, self.clock()))
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
            s.add(IvrStep(**_step_row(session_id, seq, node, kind, outcome, detail, self.clock())))

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
            merged = {**(row.data or {}), **mask(data)}
            for key, value in _end_values(
                row.id, status, result, next_, merged, self.clock()
            ).items():
                setattr(row, key, value)

    def close(self) -> None:
        pass


class _Pending:
    """One queued write; ``wait`` returns once its group is committed (or raises)."""

    __slots__ = ("kind", "args", "at", "done", "result", "error")

    def __init__(self, kind: str, args: tuple[Any, ...], at: dt.datetime) -> None:
        self.kind = kind
        self.args = args
        self.at = at
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


_SESSION = cast(Table, IvrSession.__table__)
_INSERT_SESSIONS = insert(_SESSION).returning(_SESSION.c.id, sort_by_parameter_order=True)
_INSERT_STEPS = insert(cast(Table, IvrStep.__table__))
#: one executemany for every session ended in a group (bind names apart from the columns')
_END_SESSIONS = (
    update(_SESSION)
    .where(_SESSION.c.id == bindparam("v_id"))
    .values(
        {name: bindparam(f"v_{name}") for name in ("status", "result", "next", "data", "ended_at")}
    )
)


class GroupCommitRecorder:
    """Writes the sessions of a FastAGI server in group commits: one writer thread commits
    whatever every live session queued during the last ``window_s`` in one transaction.

    Guarantees (the same record as ``StoreRecorder``, for a fraction of the transactions):
    - ``start`` and ``finish`` return only once their group is committed: a session's row
      exists before its first step, and its end (status, result, next) is in the store
      before the flow returns to the dialplan, where the dialer reads it when the call ends.
    - ``step`` only queues its row (the engine runs it on the event loop, no thread hop);
      rows keep their order. A crash loses at most the steps queued in the last window plus
      the commit in progress (``window_s`` is that declared window); the session row then
      stays ``running``, and the dialer decides the call from what the switch showed.
    - A group that fails is written again one write at a time: a bad write raises in its
      own session only (``start``/``finish``) or is dropped and counted (``step``).
    """

    queues_steps = True

    def __init__(
        self, store: Store, clock: Callable[[], dt.datetime], *, window_s: float = 0.05
    ) -> None:
        self.store = store
        self.clock = clock
        self.window_s = window_s
        self.groups = 0  # transactions committed
        self.dropped_steps = 0
        self._queue: list[_Pending] = []
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ivr-writer", daemon=True)
        self._thread.start()

    # -- the recorder ----------------------------------------------------------------------

    def start(self, call: CallContext) -> int | None:
        session_id: int | None = self._put(_Pending("start", (call,), self.clock())).wait()
        return session_id

    def step(
        self,
        session_id: int | None,
        seq: int,
        node: str,
        kind: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        at = self.clock()
        self._put(
            _Pending("step", (_step_row(session_id, seq, node, kind, outcome, detail, at),), at)
        )

    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None:
        args = (session_id, status, result, next_, dict(data))
        self._put(_Pending("finish", args, self.clock())).wait()

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        self._thread.join()

    # -- the writer ------------------------------------------------------------------------

    def _put(self, op: _Pending) -> _Pending:
        with self._wakeup:
            if self._closed:
                raise IvrError("the IVR recorder is closed")
            self._queue.append(op)
            if len(self._queue) == 1:
                self._wakeup.notify()
        return op

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if not self._queue:
                    return
                # let the other sessions' writes join the group (``close`` cuts it short)
                self._wakeup.wait_for(lambda: self._closed, timeout=self.window_s)
                group, self._queue = self._queue, []
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        try:
            results = self._write(group)
        except Exception:
            log.exception("IVR: writing a group of %d failed; one at a time", len(group))
            for op in group:
                try:
                    (result,) = self._write([op])
                except Exception as exc:
                    if op.kind == "step":
                        self.dropped_steps += 1
                        sid = op.args[0]["session_id"]
                        log.error("IVR: step of session %s dropped: %s", sid, exc)
                    op.settle(error=exc)
                else:
                    op.settle(result)
            return
        self.groups += 1
        for op, result in zip(group, results, strict=True):
            op.settle(result)

    def _write(self, group: list[_Pending]) -> list[Any]:
        """One transaction, in SQLAlchemy Core (the ORM's bulk paths cost milliseconds per
        statement): sessions started, steps added, sessions finished, in that order (a step
        or an end always belongs to a session committed in an earlier group)."""
        results: list[Any] = [None] * len(group)
        with self.store.engine.begin() as conn:
            starts = [i for i, op in enumerate(group) if op.kind == "start"]
            if starts:
                rows = [_session_values(group[i].args[0], group[i].at) for i in starts]
                ids = conn.scalars(_INSERT_SESSIONS, rows).all()
                for i, session_id in zip(starts, ids, strict=True):
                    results[i] = session_id
            steps = [op.args[0] for op in group if op.kind == "step"]
            if steps:
                conn.execute(_INSERT_STEPS, steps)
            ends = [op for op in group if op.kind == "finish" and op.args[0] is not None]
            if ends:
                wanted = {op.args[0] for op in ends}
                q = select(_SESSION.c.id, _SESSION.c.data).where(_SESSION.c.id.in_(wanted))
                known: dict[int, Any] = {sid: data for sid, data in conn.execute(q)}
                values = []
                for op in ends:
                    session_id, status, result, next_, data = op.args
                    if session_id in known:
                        merged = {**(known[session_id] or {}), **mask(data)}
                        known[session_id] = merged
                        end = _end_values(session_id, status, result, next_, merged, op.at)
                        values.append({f"v_{k}": v for k, v in end.items()})
                if values:
                    conn.execute(_END_SESSIONS, values)
        return results


@dataclass
class MemoryRecorder:
    """Keeps sessions in memory (benchmarks, a server run without a store)."""

    queues_steps = True

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

    def close(self) -> None:
        pass
