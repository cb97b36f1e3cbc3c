"""The AMI adapter: the one module that talks to Asterisk's manager socket.

Decision (issue 4): the live parser is **our own sans-I/O framing** (``dialer.telephony.ami.framing``) on
a plain asyncio stream; panoramisk is not imported. Its known faults each break a rule of ours,
and working around them would have meant replacing its protocol class anyway:

- ``AMIProtocol.data_received`` decodes every ``read()`` on its own with ``errors="ignore"``:
  a Chinese name whose UTF-8 bytes straddle two reads silently loses a character. Our framing
  decodes only complete messages.
- On reconnect it re-queues pending actions that got no reply (``awaiting_actions``): an
  ``Originate`` in flight would be dialled twice. Here nothing is ever re-sent: a pending action
  fails with ``AMIDisconnected`` and the tracker reconciles the call after the resync.
- Its futures are awaited without a timeout; here every await has one (``action_timeout_s``).
- An async ``Originate`` resolves to ``[Response, OriginateResponse]`` and that
  ``OriginateResponse`` never reaches event handlers. Here every event, ``OriginateResponse``
  included, goes to the listeners (only list-action items, e.g. ``CoreShowChannel``, are kept
  for the action that asked for them).

This module keeps the name "adapter" and is where a third-party client would live if one were
ever used again; nothing else in the project opens the AMI socket.

What AMI decides (banner, login, resync, ready, ActionID pairing, list actions) is the sans-I/O
``connection.AMIConnection``; this client moves its bytes, awaits and reconnects. The socket
comes from an injectable ``opener`` (default: a TCP connection to host and port).

Behaviour: connect, read the greeting, ``Login`` (user from settings ``ami.username``, secret
from ``DIALER_AMI_SECRET``), run the ``on_connect`` hook (the service's resync from
``CoreShowChannels`` + ``QueueStatus``), then open the ``ready`` gate. On any loss: close the
gate, fail every pending action with ``AMIDisconnected``, tell the disconnect listeners,
back off (exponential, jittered, capped at ``reconnect_max_s``) and start again. A ``Ping``
every ``ping_interval_s`` detects a half-open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from pydantic import SecretStr

from dialer.errors import AMIAuthFailed, AMIDisconnected, AMIError, ProtocolError
from dialer.settings import AMISettings, ami_secret_var, get_secret
from dialer.telephony.ami.connection import (
    ActionDone,
    ActionFailed,
    ActionResult,
    AMIConnection,
    ConnectionClosed,
    ConnState,
    EventReceived,
    Greeted,
    Happening,
    LoggedIn,
    LoginRefused,
)
from dialer.telephony.ami.messages import Action, Banner, Event

log = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
ConnectHook = Callable[["AMIClient"], Awaitable[None]]

_READ_SIZE = 65536

__all__ = ["AMIClient", "ActionResult", "Opener"]


class Reader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> None: ...

    def close(self) -> None: ...


#: Opens one connection to the manager interface: (reader, writer), like
#: ``asyncio.open_connection``.
Opener = Callable[[], Awaitable[tuple[Reader, Writer]]]


async def _first_of(
    step: asyncio.Future[None], reader_task: asyncio.Task[None], timeout: float, missing: str
) -> None:
    """Wait for ``step`` (or the reader's end); no step in time is ``AMIError(missing)``."""
    await asyncio.wait({step, reader_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if not step.done():
        raise AMIError(missing)
    step.result()  # raises a refusal, or the loss of the connection


async def _either(a: asyncio.Event, b: asyncio.Event, timeout: float | None) -> None:
    """Until either event is set, or ``timeout``."""
    waits = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _ping_loop(client: AMIClient) -> None:
    """A ping each ``ping_interval_s``; one unanswered drops the connection (it reconnects)."""
    while True:
        await asyncio.sleep(client.ping_interval_s)
        try:
            await client.action("Ping", timeout=client.action_timeout_s)
        except AMIDisconnected:
            return
        except AMIError:
            log.warning("AMI ping unanswered: dropping the connection")
            client.drop()
            return


class Backoff:
    """Delays between connection attempts: exponential, jittered, capped."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random) -> None:
        self.min_s, self.max_s, self.rng = min_s, max_s, rng
        self.reset()

    def reset(self) -> None:
        self.base_s = self.min_s

    def next(self) -> float:
        delay = self.base_s * (0.5 + self.rng.random())
        self.base_s = min(self.base_s * 2, self.max_s)
        return delay


class _Session:
    """One connection: the sans-I/O session, its socket, and the two steps awaited at login."""

    def __init__(self, client: AMIClient, conn: AMIConnection, writer: Writer) -> None:
        loop = asyncio.get_running_loop()
        self.client = client
        self.conn = conn
        self.writer = writer
        self.greeted: asyncio.Future[None] = loop.create_future()
        self.logged_in: asyncio.Future[None] = loop.create_future()
        self._write_due = False

    def write_soon(self) -> None:
        """Write what the session has queued once this pass of the event loop is over: the
        actions sent in one pass (a batch of Originates) leave in one write, not one system
        call each. Bytes still queued when the connection closes are never written; their
        actions fail ``AMIDisconnected`` like any action in flight."""
        if not self._write_due:
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        self._write_due = False
        out = self.conn.data_to_send()
        if out and self.conn.state is not ConnState.CLOSED:
            self.writer.write(out)

    def settle(self, fut: asyncio.Future[None], exc: BaseException | None = None) -> None:
        if fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a step nobody awaits any more must not warn

    def dispatch(self, happenings: list[Happening]) -> None:
        """Tell the client what the session said."""
        client = self.client
        for h in happenings:
            if isinstance(h, EventReceived):
                client._on_event(h.event)
            elif isinstance(h, ActionDone | ActionFailed):
                client._resolve(h)
            elif isinstance(h, Greeted):
                client.banner = h.banner
                self.settle(self.greeted)
            elif isinstance(h, LoggedIn):
                self.settle(self.logged_in)
            elif isinstance(h, LoginRefused):
                self.settle(
                    self.logged_in,
                    AMIAuthFailed(
                        f"AMI {client._where}: login refused for user {client.username!r} "
                        f"({h.message}); check the user in manager.conf and the secret "
                        "(DIALER_AMI_SECRET); not retrying"
                    ),
                )
            elif isinstance(h, ConnectionClosed):
                client.ready.clear()
                lost = AMIDisconnected("AMI connection lost")
                self.settle(self.greeted, lost)
                self.settle(self.logged_in, lost)


class AMIClient:
    """A reconnecting AMI client. One instance per Asterisk server."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: SecretStr | str,
        *,
        connect_timeout_s: float = 5.0,
        action_timeout_s: float = 10.0,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 30.0,
        ping_interval_s: float = 10.0,
        on_connect: ConnectHook | None = None,
        rng: random.Random | None = None,
        events: bool = True,
        opener: Opener | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self.connect_timeout_s = connect_timeout_s
        self.action_timeout_s = action_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.ping_interval_s = ping_interval_s
        self.on_connect = on_connect
        self._rng = rng or random.Random()
        self._events = events
        self._opener: Opener = opener or self._open_tcp
        self._listeners: list[EventListener] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._futures: dict[str, asyncio.Future[ActionResult]] = {}
        self._ids = itertools.count(1)
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._down_since: float | None = None  # when the connection was lost (monotonic)
        self.ready = asyncio.Event()  # set exactly while the session is READY
        self.failed = asyncio.Event()  # set once it gave up for good: ``fatal`` says why
        self.fatal: AMIAuthFailed | None = None
        self.banner: Banner | None = None
        self.connections = 0  # successful logins so far
        self.last_error: str | None = None
        self.events_in = 0
        self.bytes_in = 0

    @classmethod
    def from_settings(
        cls, settings: AMISettings, env: Mapping[str, str] | None = None, **kwargs: object
    ) -> AMIClient:
        secret = get_secret("ami_secret", env, var=ami_secret_var(settings, env))
        assert secret is not None
        return cls(
            settings.host,
            settings.port,
            settings.username,
            secret,
            connect_timeout_s=settings.connect_timeout_s,
            action_timeout_s=settings.action_timeout_s,
            reconnect_max_s=settings.reconnect_max_s,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    async def _open_tcp(self) -> tuple[Reader, Writer]:
        return await asyncio.open_connection(self.host, self.port)

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        """``listener(event)`` is called for every event, in wire order, on the reader task."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def add_disconnect_listener(self, listener: Callable[[], None]) -> None:
        self._disconnect_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def state(self) -> ConnState:
        return ConnState.CLOSED if self._session is None else self._session.conn.state

    @property
    def connected(self) -> bool:
        """Logged in on a live connection (resyncing or ready)."""
        return self.state in (ConnState.RESYNCING, ConnState.READY)

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="ami-client")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the session is ready; ``AMIAuthFailed`` at once if the login was refused."""
        await _either(self.ready, self.failed, timeout)
        if self.fatal is not None:
            raise self.fatal
        if not self.ready.is_set():
            raise AMIError(f"AMI not ready after {timeout} s ({self.last_error or 'connecting'})")

    async def close(self) -> None:
        """Log off (best effort) and stop reconnecting."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(AMIError, OSError):
                await self.action("Logoff", timeout=1.0)
        self.drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def drop(self) -> None:
        """Cut the current connection (tests, and a failed ping); the loop reconnects."""
        if self._session is not None:
            self._session.writer.close()

    # -- actions -----------------------------------------------------------------------

    def next_action_id(self, prefix: str = "a") -> str:
        return f"{prefix}-{next(self._ids)}"

    async def action(
        self,
        name: str,
        fields: Sequence[tuple[str, str]] = (),
        *,
        action_id: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        """Send an action once and wait for its response (and list, if it starts one).

        Never re-sent. If the connection drops before the reply, ``AMIDisconnected``; after
        ``timeout`` (default ``action_timeout_s``), ``AMIError``. In both cases the caller
        cannot know whether Asterisk acted on it.
        """
        session = self._session
        if session is None or not self.connected:
            raise AMIDisconnected("AMI not connected")
        aid = action_id or self.next_action_id(name.lower())
        if aid in self._futures:
            raise AMIError(f"ActionID {aid!r} already pending")
        act = Action(name, aid, tuple(fields))
        session.conn.send(act)
        fut: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._futures[aid] = fut
        try:
            session.write_soon()
            return await asyncio.wait_for(
                fut, self.action_timeout_s if timeout is None else timeout
            )
        except TimeoutError:
            raise AMIError(f"{name} {aid}: no response in time") from None
        finally:
            self._futures.pop(aid, None)
            session.conn.forget(aid)

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, and reconnect with back-off; every change of the connection is logged at
        the default level (a drop and a reconnect as warnings, the first login as info)."""
        backoff = Backoff(self.reconnect_min_s, self.reconnect_max_s, self._rng)
        while not self._closing:
            logins = self.connections
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except AMIAuthFailed as exc:  # retrying would only get the address banned
                self.last_error, self.fatal = str(exc), exc
                log.error("%s", exc)
                self.failed.set()
                break
            except (OSError, AMIError, ProtocolError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                lost = "connection lost" if self.connections > logins else "cannot connect"
                log.warning("AMI %s: %s (%s); reconnecting", self._where, lost, self.last_error)
            except Exception as exc:  # a bug in the resync hook: log it, keep reconnecting
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("AMI session failed")
            else:
                if not self._closing:
                    self.last_error = "closed by the peer"
                    log.warning("AMI %s: connection closed by the peer; reconnecting", self._where)
            if self._down_since is None:
                self._down_since = time.monotonic()
            if self._closing:
                break
            if self.connections > logins:
                backoff.reset()  # it had worked: start the back-off again
            await asyncio.sleep(backoff.next())

    async def _connect_once(self) -> None:
        reader, writer = await asyncio.wait_for(self._opener(), self.connect_timeout_s)
        conn = AMIConnection(
            self.username, self._secret.get_secret_value(), events=self._events, ids=self._ids
        )
        session = self._session = _Session(self, conn, writer)
        reader_task = asyncio.create_task(self._read(reader, session), name="ami-reader")
        pinger: asyncio.Task[None] | None = None
        try:
            wait_s = self.connect_timeout_s
            await _first_of(session.greeted, reader_task, wait_s, "no AMI greeting")
            await _first_of(session.logged_in, reader_task, wait_s, "no answer to Login")
            self.connections += 1
            if self.on_connect is not None:
                await self.on_connect(self)
            conn.resynced()
            self.last_error = None
            self.ready.set()
            self._log_up()
            pinger = asyncio.create_task(_ping_loop(self), name="ami-ping")
            await reader_task
        finally:
            await self._end(session, reader_task, pinger)

    def _log_up(self) -> None:
        if self._down_since is None:
            log.info("AMI %s: connected as %s", self._where, self.username)
        else:
            down_s = time.monotonic() - self._down_since
            log.warning("AMI %s: reconnected after %.1f s", self._where, down_s)
            self._down_since = None

    async def _end(
        self, session: _Session, reader_task: asyncio.Task[None], pinger: asyncio.Task[None] | None
    ) -> None:
        """The one teardown of a session, however it ended."""
        self._close(session)
        session.writer.close()
        for task in (pinger, reader_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._session is session:
            self._session = None
        for listener in list(self._disconnect_listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the reconnects
                log.exception("AMI disconnect listener failed")
        if reader_task.done() and not reader_task.cancelled():
            reader_error = reader_task.exception()
            if reader_error is not None:
                raise reader_error

    def _close(self, session: _Session) -> None:
        """The connection is gone: the gate closes and every waiter wakes at once."""
        self.ready.clear()
        session.dispatch(session.conn.close())

    async def _read(self, reader: Reader, session: _Session) -> None:
        conn = session.conn
        try:
            while conn.state is not ConnState.CLOSED:
                data = await reader.read(_READ_SIZE)
                self.bytes_in += len(data)
                before = conn.events_in
                session.dispatch(conn.receive_data(data))
                self.events_in += conn.events_in - before
                out = conn.data_to_send()
                if out:
                    session.writer.write(out)
                if not data:
                    return
        finally:
            self._close(session)

    def _resolve(self, h: ActionDone | ActionFailed) -> None:
        fut = self._futures.get(h.action_id)
        if fut is not None and not fut.done():
            if isinstance(h, ActionDone):
                fut.set_result(h.result)
            else:
                fut.set_exception(h.error)

    def _on_event(self, msg: Event) -> None:
        for listener in self._listeners:
            try:
                listener(msg)
            except Exception:  # one consumer's bug must not cost the others their events
                log.exception("AMI event listener failed on %s", msg.name)
