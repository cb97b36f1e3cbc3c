"""Where a session's steps and result go: the store (``IvrSession``/``IvrStep``), or memory.

Everything written here passes ``mask`` first: card numbers keep their last four, any run of
six or more digits is masked, keys that name verification digits are refused outright.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import enum
import logging
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from dialer.errors import DialerError
from dialer.privacy import scrub
from dialer.store import Store
from dialer.store.models import Attempt, IvrSession, IvrStep
from ivr.agi import AGIEnvironment
from ivr.context import (
    CONTEXT_QUERY,
    CallContext,
    attempt_id_of,
    context_from_row,
    failed_context,
    load_context,
    sample_context,
)
from ivr.errors import IvrError
from ivr.flow import Flow

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

    def open(self, store: Store | None, flow: Flow, env: AGIEnvironment) -> Opened:
        """Read the call's context and record its session (``start``) in one go."""
        ...

    @property
    def open_async(
        self,
    ) -> Callable[[Store | None, Flow, AGIEnvironment], Awaitable[Opened]] | None:
        """``open`` for an event loop, when the recorder has one that never blocks it (else
        a driver runs ``open`` in its worker threads)."""
        ...

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

    @property
    def finish_async(self) -> Callable[..., Awaitable[None]] | None:
        """``finish`` for an event loop, when the recorder has one that never blocks it."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Opened:
    """A session opened: its call's context, its row's id, and why the context could not be
    read (the session then runs as an error and the dialplan rescues the caller)."""

    call: CallContext
    session_id: int | None
    error: str | None = None


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def resolve_context(
    store: Store | None, flow: Flow, env: AGIEnvironment
) -> tuple[CallContext, str | None]:
    """``load_context``, or the failed context and the reason (an unknown attempt...)."""
    try:
        return load_context(store, flow, env), None
    except DialerError as exc:
        return failed_context(flow, env), error_text(exc)


class _Blocking(abc.ABC):
    """``open`` for a recorder whose writes block (a driver runs them in its threads)."""

    @abc.abstractmethod
    def start(self, call: CallContext) -> int | None: ...

    @abc.abstractmethod
    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None: ...

    def open(self, store: Store | None, flow: Flow, env: AGIEnvironment) -> Opened:
        call, error = resolve_context(store, flow, env)
        return Opened(call, self.start(call), error)

    open_async = None  # no form for an event loop: drivers run ``open`` in a thread
    finish_async = None


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


class StoreRecorder(_Blocking):
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


class _Kind(enum.Enum):
    OPEN = "open"  # args: _Open
    STEP = "step"  # args: the step's row
    FINISH = "finish"  # args: (session_id, status, result, next, data)


@dataclass(slots=True)
class _Open:
    """A session to open: its context known already (``call``), or to be read in the group
    (``attempt_id``)."""

    call: CallContext | None
    error: str | None = None
    flow: Flow | None = None
    env: AGIEnvironment | None = None
    attempt_id: int | None = None


Waiter = threading.Event | asyncio.Future[Any] | None


class _Pending:
    """One queued write. Its waiter (a thread's event, an event loop's future, or none for a
    step) is settled once its group is committed."""

    __slots__ = ("kind", "args", "at", "waiter", "result", "error")

    def __init__(self, kind: _Kind, args: Any, at: dt.datetime, waiter: Waiter = None) -> None:
        self.kind = kind
        self.args = args
        self.at = at
        self.waiter = waiter
        self.result: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        assert isinstance(self.waiter, threading.Event)
        self.waiter.wait()
        if self.error is not None:
            raise self.error
        return self.result


def _settle(group: list[_Pending]) -> None:
    """Wake the writes' waiters: a thread each, an event loop once for all of its own."""
    loops: defaultdict[asyncio.AbstractEventLoop, list[_Pending]] = defaultdict(list)
    for op in group:
        if isinstance(op.waiter, threading.Event):
            op.waiter.set()
        elif op.waiter is not None:
            loops[op.waiter.get_loop()].append(op)
    for loop, ops in loops.items():
        try:
            loop.call_soon_threadsafe(_settle_futures, ops)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle_futures(ops: list[_Pending]) -> None:
    for op in ops:
        fut = op.waiter
        assert isinstance(fut, asyncio.Future)
        if fut.done():  # cancelled (server shutdown): the write is in the store all the same
            continue
        if op.error is not None:
            fut.set_exception(op.error)
        else:
            fut.set_result(op.result)


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


#: the group's statements, built once (``IN`` lists expand at execution)
_CONTEXTS = CONTEXT_QUERY.where(Attempt.id.in_(bindparam("ids", expanding=True)))
_SESSIONS_DATA = select(_SESSION.c.id, _SESSION.c.data).where(
    _SESSION.c.id.in_(bindparam("ids", expanding=True))
)
#: sessions whose opening data the writer keeps for their end (a bound: past it, ends read
#: the row's data back, as they do for a session opened by another recorder)
_KEEP_OPENED = 100_000


class GroupCommitRecorder:
    """Writes the sessions of a FastAGI server in group commits: one writer thread commits
    whatever every live session queued during the last ``window_s`` in one transaction, and
    reads in the same transaction the context of every call that opened meanwhile (one query).

    Guarantees (the same record as ``StoreRecorder``, for a fraction of the transactions):
    - ``open``/``start`` and ``finish`` return only once their group is committed: a session's
      row exists before its first step, and its end (status, result, next) is in the store
      before the flow returns to the dialplan, where the dialer reads it when the call ends.
      Their ``_async`` forms wait on the event loop, no thread blocked: the writer wakes each
      loop once per group.
    - ``step`` only queues its row (the engine runs it on the event loop, no thread hop);
      rows keep their order. A crash loses at most the steps queued in the last window plus
      the commit in progress (``window_s`` is that declared window); the session row then
      stays ``running``, and the dialer decides the call from what the switch showed.
    - A group that fails is written again one write at a time: a bad write raises in its
      own session only (``open``/``start``/``finish``) or is dropped and counted (``step``).
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
        #: the data each session was opened with (its end merges into it without reading
        #: the row back); only the writer thread touches it
        self._opened: dict[int, dict[str, Any]] = {}
        self._conn: Connection | None = None  # the writer thread's
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ivr-writer", daemon=True)
        self._thread.start()

    # -- the recorder ----------------------------------------------------------------------

    def _opening(self, store: Store | None, flow: Flow, env: AGIEnvironment) -> _Open | None:
        """What to queue to open a session; ``None``: its context is in another store."""
        try:
            attempt_id = attempt_id_of(env)
        except DialerError as exc:
            return _Open(failed_context(flow, env), error_text(exc))
        if attempt_id is None:
            return _Open(sample_context(flow, env))
        if store is not self.store:
            return None
        return _Open(None, flow=flow, env=env, attempt_id=attempt_id)

    def open(self, store: Store | None, flow: Flow, env: AGIEnvironment) -> Opened:
        what = self._opening(store, flow, env)
        if what is None:
            what = _Open(*resolve_context(store, flow, env))
        opened: Opened = self._put(_Kind.OPEN, what, threading.Event()).wait()
        return opened

    async def open_async(self, store: Store | None, flow: Flow, env: AGIEnvironment) -> Opened:
        what = self._opening(store, flow, env)
        if what is None:
            what = _Open(*await asyncio.to_thread(resolve_context, store, flow, env))
        opened: Opened = await self._put(_Kind.OPEN, what, _future())
        return opened

    def start(self, call: CallContext) -> int | None:
        opened: Opened = self._put(_Kind.OPEN, _Open(call), threading.Event()).wait()
        return opened.session_id

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
        self._put(_Kind.STEP, _step_row(session_id, seq, node, kind, outcome, detail, at), at=at)

    def finish(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None:
        args = (session_id, status, result, next_, dict(data))
        self._put(_Kind.FINISH, args, threading.Event()).wait()

    async def finish_async(
        self,
        session_id: int | None,
        status: str,
        result: str | None,
        next_: str,
        data: Mapping[str, Any],
    ) -> None:
        args = (session_id, status, result, next_, dict(data))
        await self._put(_Kind.FINISH, args, _future())

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        self._thread.join()

    # -- the writer ------------------------------------------------------------------------

    def _put(
        self, kind: _Kind, args: Any, waiter: Any = None, at: dt.datetime | None = None
    ) -> Any:
        """Queue a write; returns its waiter (``_Pending.wait`` for a thread's event)."""
        op = _Pending(kind, args, at or self.clock(), waiter)
        with self._wakeup:
            if self._closed:
                raise IvrError("the IVR recorder is closed")
            self._queue.append(op)
            if len(self._queue) == 1:
                self._wakeup.notify()
        return op if isinstance(waiter, threading.Event) else waiter

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._disconnect()

    def _serve(self) -> None:
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
                    (op.result,) = self._write([op])
                except Exception as exc:
                    if op.kind is _Kind.STEP:
                        self.dropped_steps += 1
                        sid = op.args["session_id"]
                        log.error("IVR: step of session %s dropped: %s", sid, exc)
                    op.error = exc
            _settle(group)
            return
        self.groups += 1
        for op, result in zip(group, results, strict=True):
            op.result = result
        _settle(group)

    def _write(self, group: list[_Pending]) -> list[Any]:
        """One transaction, in SQLAlchemy Core (the ORM's bulk paths cost milliseconds per
        statement): contexts read and sessions opened, steps added, sessions finished, in that
        order (a step or an end always belongs to a session committed in an earlier group)."""
        results: list[Any] = [None] * len(group)
        opened: dict[int, dict[str, Any]] = {}
        if self._conn is None:  # the writer's own connection, kept from group to group
            self._conn = self.store.engine.connect()
        conn = self._conn
        try:
            self._transaction(conn, group, results, opened)
        except Exception:
            self._disconnect()  # a broken connection is not used again: the next group opens one
            raise
        # committed: remember what the sessions opened with, forget those that ended
        for op in group:
            if op.kind is _Kind.FINISH:
                self._opened.pop(op.args[0], None)
        if len(self._opened) + len(opened) > _KEEP_OPENED:
            self._opened.clear()
        self._opened.update(opened)
        return results

    def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # already broken: nothing more to release
                log.debug("IVR writer: closing a broken connection failed", exc_info=True)

    def _transaction(
        self,
        conn: Connection,
        group: list[_Pending],
        results: list[Any],
        opened: dict[int, dict[str, Any]],
    ) -> None:
        with conn.begin():
            opens = [i for i, op in enumerate(group) if op.kind is _Kind.OPEN]
            if opens:
                wanted = [group[i].args.attempt_id for i in opens if group[i].args.call is None]
                rows = {r.id: r for r in conn.execute(_CONTEXTS, {"ids": wanted})} if wanted else {}
                calls = [self._context(group[i].args, rows) for i in opens]
                values = [
                    _session_values(call, group[i].at) for i, call in zip(opens, calls, strict=True)
                ]
                ids = conn.scalars(_INSERT_SESSIONS, values).all()
                for i, call, session_id, v in zip(opens, calls, ids, values, strict=True):
                    results[i] = Opened(call, session_id, group[i].args.error)
                    opened[session_id] = v["data"]
            steps = [op.args for op in group if op.kind is _Kind.STEP]
            if steps:
                conn.execute(_INSERT_STEPS, steps)
            ends = [op for op in group if op.kind is _Kind.FINISH and op.args[0] is not None]
            if ends:
                known: dict[int, Any] = {}
                unknown = []
                for op in ends:
                    sid = op.args[0]
                    if sid in self._opened:
                        known[sid] = self._opened[sid]
                    else:
                        unknown.append(sid)
                if unknown:
                    known.update(
                        (sid, data) for sid, data in conn.execute(_SESSIONS_DATA, {"ids": unknown})
                    )
                end_values = []
                for op in ends:
                    session_id, status, result, next_, data = op.args
                    if session_id in known:
                        merged = {**(known[session_id] or {}), **mask(data)}
                        known[session_id] = merged
                        end = _end_values(session_id, status, result, next_, merged, op.at)
                        end_values.append({f"v_{k}": v for k, v in end.items()})
                if end_values:
                    conn.execute(_END_SESSIONS, end_values)

    @staticmethod
    def _context(what: _Open, rows: Mapping[int, Any]) -> CallContext:
        """The opening session's context (read in this group when not known); a context that
        cannot be had is the failed one, and the reason goes with the session (``error``)."""
        if what.call is not None:
            return what.call
        assert what.flow is not None and what.env is not None and what.attempt_id is not None
        try:
            what.call = context_from_row(what.flow, what.env, rows.get(what.attempt_id))
        except DialerError as exc:
            what.call, what.error = failed_context(what.flow, what.env), error_text(exc)
        return what.call


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass
class MemoryRecorder(_Blocking):
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
