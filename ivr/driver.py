"""Drivers: run an engine generator against a real AGI peer.

The engine yields ``Command`` and ``Call`` effects; a driver performs them. There are two:
``drive_sync`` (process AGI over stdin/stdout, and in-memory tests) and ``drive_async``
(FastAGI; blocking calls go to a thread pool). Both share ``poll_reply``, which turns the
core's events into "a reply", "need more bytes", or ``CallerHungUp``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from dialer.errors import RemoteProtocolError
from ivr import agi
from ivr.agi import NEED_DATA, AGIConnection, AGIEnvironment, Command, ConnectionClosed, Reply
from ivr.engine import Call, SessionGen, SessionOutcome
from ivr.errors import CallerHungUp, IvrError

log = logging.getLogger("ivr.driver")

READ_SIZE = 65536


class SessionInterrupted(IvrError):
    """The server shut down while the session was live."""


def poll_environment(conn: AGIConnection) -> AGIEnvironment | None:
    """The header if complete; ``None`` = need more bytes. EOF -> RemoteProtocolError."""
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return None
        if isinstance(ev, AGIEnvironment):
            return ev
        if isinstance(ev, ConnectionClosed):
            raise RemoteProtocolError("connection closed before the AGI header ended")


def poll_reply(conn: AGIConnection) -> Reply | None:
    """The checked reply to the pending command; ``None`` = need more bytes."""
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return None
        if isinstance(ev, Reply):
            return agi.check(ev)
        if isinstance(ev, ConnectionClosed):
            raise CallerHungUp("connection closed by Asterisk")
        # HangupRequested (noted in conn.hung_up) and Provisional: keep reading


def precheck(conn: AGIConnection, command: Command) -> None:
    """Don't send what a dead channel would refuse anyway."""
    if conn.state is agi.State.CLOSED:
        raise CallerHungUp("connection closed by Asterisk")
    if conn.hung_up and not command.dead_ok:
        raise CallerHungUp("channel hung up")


def _advance(gen: SessionGen, value: Any, exc: BaseException | None) -> Any:
    return gen.throw(exc) if exc is not None else gen.send(value)


# --- blocking ---------------------------------------------------------------------------


class BlockingAGI:
    """AGI over two blocking byte functions (stdin/stdout, or an in-memory peer)."""

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        self.read = read
        self.write = write
        self.conn = AGIConnection()
        self.commands = 0

    def environment(self) -> AGIEnvironment:
        while (env := poll_environment(self.conn)) is None:
            self.conn.receive_data(self.read(READ_SIZE))
        return env

    def roundtrip(self, command: Command) -> Reply:
        precheck(self.conn, command)
        try:
            self.write(self.conn.send(command))
        except (BrokenPipeError, ConnectionError) as exc:
            raise CallerHungUp("connection lost") from exc
        self.commands += 1
        while (reply := poll_reply(self.conn)) is None:
            self.conn.receive_data(self.read(READ_SIZE))
        return reply


def drive_sync(gen: SessionGen, agi_io: BlockingAGI) -> SessionOutcome:
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            effect = _advance(gen, value, exc)
        except StopIteration as stop:
            outcome: SessionOutcome = stop.value
            return outcome
        value, exc = None, None
        try:
            value = agi_io.roundtrip(effect) if isinstance(effect, Command) else effect.run()
        except Exception as e:  # thrown into the flow, which decides
            exc = e


# --- asyncio ----------------------------------------------------------------------------


async def drive_async(
    gen: SessionGen,
    roundtrip: Callable[[Command], Awaitable[Reply]],
    executor: Executor | None,
) -> SessionOutcome:
    """Run a session; on cancellation the flow is told (``SessionInterrupted``) and its
    bookkeeping (store writes) is completed before the cancellation propagates."""
    loop = asyncio.get_running_loop()
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            effect = _advance(gen, value, exc)
        except StopIteration as stop:
            outcome: SessionOutcome = stop.value
            return outcome
        value, exc = None, None
        try:
            if isinstance(effect, Command):
                value = await roundtrip(effect)
            elif effect.coro is not None:
                value = await effect.coro(*effect.args, **effect.kwargs)
            elif executor is None or effect.inline:
                value = effect.run()
            else:
                value = await loop.run_in_executor(executor, effect.run)
        except asyncio.CancelledError:
            _finish_interrupted(gen)
            raise
        except Exception as e:
            exc = e


def _finish_interrupted(gen: SessionGen) -> None:
    """Unwind a flow without I/O to Asterisk: commands fail as hung up, calls run inline."""
    exc: BaseException | None = SessionInterrupted("server shutting down")
    value: Any = None
    for _ in range(100):
        try:
            effect = _advance(gen, value, exc)
        except StopIteration:
            return
        except Exception:  # the flow gave up on its own bookkeeping; nothing more to do
            log.exception("flow failed while unwinding at shutdown")
            return
        value, exc = None, None
        if isinstance(effect, Call):
            try:
                value = effect.run()
            except Exception as e:
                exc = e
        else:
            exc = CallerHungUp("server shutting down")
    gen.close()
