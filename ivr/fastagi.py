"""The FastAGI server: asyncio sockets around the sans-I/O core and the flow engine.

Why not panoramisk's FastAGI: it spins on an early EOF and loses sync on the unsolicited
``HANGUP`` line. Here every read is bounded (header time limit, reply time limit, line and
header size limits in the core) and end-of-stream is an event.

Asterisk's sessions are served first (``dialer.netguard``): a connection that has not sent
its AGI header is the first to go - past its header time-out, which shrinks as the server
fills up, or when a newer connection needs its place (per address, or in all). Only when
every connection is a live session is a new one closed at once (Asterisk then continues the
dialplan with ``AGISTATUS=FAILURE``). So a flood of connections that send nothing cannot
starve real calls, and warnings about them are rate-limited. A connection is closed for its
header only after the loop has read its socket once more (the guard's ``last_read``): under
load the loop reads late, and a header already there makes it a live session.

Embedding (e.g. ``dialer demo`` on port 0)::

    server = await start_in_process(store)        # flows from config/flows, port 0
    agi_url = f"agi://127.0.0.1:{server.port}"    # -> the campaign's DIALER_AGI
    ...
    await server.close(grace=5)   # stop accepting, let live sessions end, then interrupt
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.errors import ProtocolError
from dialer.netguard import ConnectionGuard, GuardLimits, RateLimitedLog, raise_nofile_limit
from dialer.privacy import scrub
from dialer.store import Store
from ivr.agi import AGIConnection, AGIEnvironment, Command, Reply
from ivr.driver import READ_SIZE, drive_async, poll_environment, poll_reply, precheck
from ivr.engine import Services, SessionOutcome, run_session
from ivr.errors import CallerHungUp, UnknownFlow

log = logging.getLogger("ivr.fastagi")

DEFAULT_PORT = 4573
DEFAULT_HEADER_TIMEOUT_S = 5.0  # an idle server's; it shrinks to the minimum when full
DEFAULT_HEADER_TIMEOUT_MIN_S = 0.5
DEFAULT_MAX_SESSIONS = 1000
#: Longest wait for one reply. STREAM FILE of a long prompt or WAIT FOR DIGIT take their
#: own time; past this Asterisk is presumed gone.
DEFAULT_REPLY_TIMEOUT_S = 300.0


@dataclass
class ServerStats:
    accepted: int = 0
    rejected_busy: int = 0
    bad_header: int = 0
    header_timeout: int = 0
    evicted: int = 0  # waiting for a header when a newer connection needed the place
    unknown_flow: int = 0
    probes: int = 0  # connections closed before a byte: a health check (the dialer's /healthz)
    sessions: int = 0
    completed: int = 0
    hangup: int = 0
    error: int = 0
    commands: int = 0


class _Connection(asyncio.Protocol):
    """One connection: bytes go into the sans-I/O core as they arrive; the session's task waits
    on a future only when the core needs more of them (no stream reader, no per-read task).

    Reading pauses while the session is busy elsewhere and ``READ_SIZE`` bytes are buffered,
    so a peer that floods cannot grow the buffer; the core bounds lines and headers."""

    def __init__(self, server: FastAGIServer) -> None:
        self.server = server
        self.conn = AGIConnection()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.commands = 0
        self.bytes_in = 0
        self.lost = False
        self.env: AGIEnvironment | None = None
        self.header_error: ProtocolError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio's side ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._accept(self)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.conn.receive_data(data)
        if self.env is None and self.header_error is None:
            self._header()
        if self._waiter is not None:
            self._wake()
        elif self.conn.buffered >= READ_SIZE and not self._paused:
            assert self.transport is not None
            self._paused = True
            self.transport.pause_reading()

    def _header(self) -> None:
        """Parse the header as soon as its bytes are in: a connection that sent it is a live
        session at once (never evicted for a newer one), without waiting for its task's turn."""
        try:
            self.env = poll_environment(self.conn)
        except ProtocolError as exc:
            self.header_error = exc
            return
        if self.env is not None:
            self.server.guard.activated(self)  # also spares it if evicted in the last pass

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        if self.env is None and self.header_error is None:
            self._header()
        self._wake()
        return True  # the session closes the socket once it has recorded the hang-up

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.receive_data(b"")
        if self.env is None and self.header_error is None:
            self._header()
        self._wake()

    def _wake(self, exc: BaseException | None = None) -> None:
        w = self._waiter
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)

    # -- the session's side --------------------------------------------------------------

    async def _more(self, deadline: float | None = None) -> None:
        """Wait until bytes (or the end of the stream) arrive; ``TimeoutError`` past
        ``deadline`` (the loop's clock)."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        if self._paused:
            assert self.transport is not None
            self._paused = False
            self.transport.resume_reading()
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, self._wake, TimeoutError())
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def environment(self) -> AGIEnvironment:
        while self.env is None:
            if self.header_error is not None:
                raise self.header_error
            await self._more()  # the guard's sweeper bounds the wait
        return self.env

    async def roundtrip(self, command: Command) -> Reply:
        precheck(self.conn, command)
        if self.lost:
            raise CallerHungUp("connection lost")
        assert self.transport is not None
        self.transport.write(self.conn.send(command))
        self.commands += 1
        deadline = asyncio.get_running_loop().time() + self.server.reply_timeout
        try:
            while (reply := poll_reply(self.conn)) is None:
                await self._more(deadline)
        except TimeoutError:
            raise CallerHungUp("no reply from Asterisk in time") from None
        return reply

    def peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport else None


class FastAGIServer:
    def __init__(
        self,
        services: Services,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        header_timeout_min: float = DEFAULT_HEADER_TIMEOUT_MIN_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_per_address: int | None = None,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT_S,
        workers: int = 8,
        blocking_in_threads: bool = True,
        clock: Callable[[], float] = time.monotonic,  # the header time-outs'
    ) -> None:
        self.services = services
        self.host = host
        self.requested_port = port
        self.header_timeout = header_timeout
        self.max_sessions = max_sessions
        self.reply_timeout = reply_timeout
        self.guard: ConnectionGuard[_Connection] = ConnectionGuard(
            GuardLimits(
                max_connections=max_sessions,
                max_per_address=max_per_address or max_sessions,
                header_timeout_s=header_timeout,
                header_timeout_min_s=min(header_timeout_min, header_timeout),
            ),
            clock,
            last_read=True,
        )
        self._sweep_s = min(0.25, self.guard.limits.header_timeout_min_s / 2)
        self._warn = RateLimitedLog(log)
        self.stats = ServerStats()
        self.outcomes: list[SessionOutcome] = []
        self.keep_outcomes = 1000
        self._executor = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ivr-hook")
            if blocking_in_threads
            else None
        )
        self._server: asyncio.Server | None = None
        self._tasks: dict[_Connection, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._someone_waits = asyncio.Event()
        self._reap_pending = False
        self._closing = False
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        raise_nofile_limit()  # the guard, not the descriptor limit, decides who is served
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.requested_port, backlog=1024
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep(), name="fastagi-header-timeouts")
        log.info("FastAGI listening on %s:%d", self.host, self.port)

    @property
    def port(self) -> int:
        assert self._port is not None, "start() first"
        return self._port

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._server.serve_forever()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; let live sessions finish for ``grace`` s; interrupt the rest."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = set(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        await asyncio.to_thread(self.services.recorder.close)  # commit what sessions queued
        log.info("FastAGI closed")

    def reload_flows(self, directory: Path | None = None) -> list[str]:
        """Load the flows again and swap the whole library; live sessions keep the flow they
        started with. An invalid file is refused with the reason and the old library stays
        (raises ``FlowDefinitionError``). Returns the flow names now served."""
        from ivr.flow import FlowLibrary

        extra = {k: v for k, v in self.services.library.hooks.items()}
        library = FlowLibrary.load(directory, hooks=extra)
        self.services.library = library
        log.info("flows reloaded: %s", ", ".join(sorted(library.flows)))
        return sorted(library.flows)

    async def __aenter__(self) -> FastAGIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections ---------------------------------------------------------------------

    def _accept(self, c: _Connection) -> None:
        """A new connection (``connection_made``): admitted, its session started."""
        assert c.transport is not None
        self.stats.accepted += 1
        peer = c.peer()
        admission = None if self._closing else self.guard.admit(c, str(peer and peer[0]))
        if admission is not None and admission.evict:
            self.stats.evicted += len(admission.evict)
            self._reap_after_next_read()
        if admission is None or not admission.accepted:
            self.stats.rejected_busy += 1
            self._warn.warning("busy", "FastAGI %s: every connection is a live session", peer)
            c.transport.abort()
            return
        self._someone_waits.set()  # for its header: the sweeper times it
        # The session runs in a task of its own, which shutdown may cancel.
        c.task = task = asyncio.get_running_loop().create_task(self._session(c))
        self._tasks[c] = task
        task.add_done_callback(lambda t: self._ended(c, t))

    def _ended(self, c: _Connection, task: asyncio.Task[None]) -> None:
        self._tasks.pop(c, None)
        self.guard.closed(c)
        assert c.transport is not None
        c.transport.close()  # what was written still goes out first
        if not task.cancelled() and task.exception() is not None:
            log.error("FastAGI session failed", exc_info=task.exception())

    def _reap_after_next_read(self) -> None:
        """Close the connections the guard holds (evicted or timed out) once the loop has read
        every socket: a timer due now runs after the next pass's I/O callbacks (asyncio runs a
        pass's ready I/O before its due timers), so a header already in the kernel is parsed -
        and its connection spared - first."""
        if not self._reap_pending:
            self._reap_pending = True
            asyncio.get_running_loop().call_later(0, self._reap)

    def _reap(self) -> None:
        self._reap_pending = False
        for c in self.guard.reap():
            self._drop(c)

    def _drop(self, c: _Connection) -> None:
        """End a connection that is still waiting for its header (its task, then socket)."""
        if c.task is not None and not c.task.done():
            c.task.cancel()
        elif c.transport is not None:
            c.transport.abort()

    async def _sweep(self) -> None:
        while True:
            if not self.guard.waiting_count:  # every connection is a live session: nothing to time
                self._someone_waits.clear()
                await self._someone_waits.wait()
            await asyncio.sleep(self._sweep_s)
            self._sweep_once()

    def _sweep_once(self) -> None:
        """Time out the connections still without a header (closed after one more read)."""
        expired = self.guard.expired()
        for c in expired:
            self.stats.header_timeout += 1
            self._warn.warning(
                "header-timeout",
                "FastAGI %s: no complete header within %.1f s",
                c.peer(),
                self.guard.header_timeout(),
            )
        if expired:
            self._reap_after_next_read()

    async def _session(self, c: _Connection) -> None:
        try:
            env = await c.environment()  # the guard's sweeper bounds the wait
        except (ProtocolError, ConnectionError) as exc:
            if c.bytes_in == 0:  # connected and closed: a health probe, not a broken peer
                self.stats.probes += 1
                return
            self.stats.bad_header += 1
            self._warn.warning(
                "bad-header", "FastAGI %s: bad header: %s", c.peer(), scrub(str(exc))[:120]
            )
            return
        try:
            gen = run_session(self.services, env)
        except UnknownFlow:
            self.stats.unknown_flow += 1
            self._warn.warning(
                "unknown-flow", "FastAGI %s: unknown flow %r", c.peer(), env.script[:64]
            )
            return
        self.stats.sessions += 1
        started = time.monotonic()
        try:
            outcome = await drive_async(gen, c.roundtrip, self._executor)
        finally:
            self.stats.commands += c.commands
        counter = outcome.status.value
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if len(self.outcomes) < self.keep_outcomes:
            self.outcomes.append(outcome)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "session flow=%s attempt=%s test=%s channel=%s status=%s result=%s next=%s "
                "steps=%d commands=%d %.1fs%s",
                outcome.flow,
                outcome.attempt_id,
                outcome.is_test,
                scrub(env.channel)[:80],
                outcome.status.value,
                outcome.result,
                outcome.next,
                outcome.steps,
                c.commands,
                time.monotonic() - started,
                f" error={scrub(outcome.error)[:120]}" if outcome.error else "",
            )


async def start_in_process(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    flows_dir: Path | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    **options: Any,
) -> FastAGIServer:
    """One call for another asyncio program (e.g. ``dialer demo``): load the flows, record
    to ``store``, listen (port 0 = any free port). ``server.port`` is the bound port; pass
    ``f"agi://{host}:{server.port}"`` as ``DIALER_AGI``; ``await server.close()`` at the end."""
    from ivr.flow import FlowLibrary
    from ivr.record import GroupCommitRecorder

    now = clock or _utc_now
    services = Services(
        library=FlowLibrary.load(flows_dir),
        recorder=GroupCommitRecorder(store, now),
        store=store,
        clock=now,
    )
    server = FastAGIServer(services, host=host, port=port, **options)
    await server.start()
    return server


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
