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
import dataclasses
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from dialer.errors import AMIDisconnected, AMIError, ProtocolError
from dialer.settings import AMISettings, ami_secret_var, get_secret
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Action, Banner, Closed, Event, Response

log = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
ConnectHook = Callable[["AMIClient"], Awaitable[None]]

#: Events that close a list action's reply (``EventList: Complete`` is the general rule).
_READ_SIZE = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class ActionResult:
    """An action's response and, for list actions, the events of its list."""

    response: Response
    events: tuple[Event, ...] = ()


class _Pending:
    __slots__ = ("action", "future", "response", "events", "is_list")

    def __init__(self, action: Action, future: asyncio.Future[ActionResult]) -> None:
        self.action = action
        self.future = future
        self.response: Response | None = None
        self.events: list[Event] = []
        self.is_list = False


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
        self._listeners: list[EventListener] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._logged_in = False
        self.ready = asyncio.Event()
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
    def connected(self) -> bool:
        return self._writer is not None and self._logged_in

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="ami-client")

    async def wait_ready(self, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            raise AMIError(
                f"AMI not ready after {timeout} s ({self.last_error or 'connecting'})"
            ) from None

    async def close(self) -> None:
        """Log off (best effort) and stop reconnecting."""
        self._closing = True
        if self._writer is not None and self._logged_in:
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
        if self._writer is not None:
            self._writer.close()

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
        if self._writer is None:
            raise AMIDisconnected("AMI not connected")
        aid = action_id or self.next_action_id(name.lower())
        act = Action(name, aid, tuple(fields))
        return await self._send(act, timeout)

    async def _send(self, act: Action, timeout: float | None) -> ActionResult:
        writer = self._writer
        if writer is None:
            raise AMIDisconnected("AMI not connected")
        if act.action_id in self._pending:
            raise AMIError(f"ActionID {act.action_id!r} already pending")
        fut: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._pending[act.action_id] = _Pending(act, fut)
        try:
            writer.write(act.to_bytes())
            return await asyncio.wait_for(
                fut, self.action_timeout_s if timeout is None else timeout
            )
        except TimeoutError:
            raise AMIError(f"{act.name} {act.action_id}: no response in time") from None
        finally:
            self._pending.pop(act.action_id, None)

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.reconnect_min_s
        while not self._closing:
            logins = self.connections
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, AMIError, ProtocolError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("AMI %s:%s: %s", self.host, self.port, self.last_error)
            except Exception as exc:  # a bug in the resync hook: log it, keep reconnecting
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("AMI session failed")
            if self._closing:
                break
            if self.connections > logins:
                backoff = self.reconnect_min_s  # it had worked: start the back-off again
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(backoff * 2, self.reconnect_max_s)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout_s
        )
        self._writer = writer
        framing = AMIFraming()
        banner: asyncio.Future[Banner] = asyncio.get_running_loop().create_future()
        reader_task = asyncio.create_task(
            self._read(reader, writer, framing, banner), name="ami-reader"
        )
        pinger: asyncio.Task[None] | None = None
        try:
            waiters: set[asyncio.Future[Any]] = {banner, reader_task}
            await asyncio.wait(
                waiters,
                timeout=self.connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not banner.done():
                raise AMIError("no AMI greeting")
            result = await self._send(
                Action(
                    "Login",
                    self.next_action_id("login"),
                    (
                        ("Username", self.username),
                        ("Secret", self._secret.get_secret_value()),
                        ("Events", "on" if self._events else "off"),
                    ),
                ),
                self.connect_timeout_s,
            )
            if not result.response.ok:
                raise AMIError(f"login refused: {result.response.message}")
            self._logged_in = True
            self.connections += 1
            if self.on_connect is not None:
                await self.on_connect(self)
            self.last_error = None
            self.ready.set()
            pinger = asyncio.create_task(self._ping_loop(), name="ami-ping")
            await reader_task
        finally:
            self.ready.clear()
            self._logged_in = False
            self._writer = None
            writer.close()
            for task in (pinger, reader_task):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if reader_task.done() and not reader_task.cancelled():
                reader_error = reader_task.exception()  # retrieved here, raised below
            else:
                reader_error = None
            if not banner.done():
                banner.cancel()
            self._fail_pending(AMIDisconnected("AMI connection lost"))
            for listener in list(self._disconnect_listeners):
                try:
                    listener()
                except Exception:  # a listener's bug must not stop the reconnects
                    log.exception("AMI disconnect listener failed")
        if reader_error is not None:
            raise reader_error

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            try:
                await self.action("Ping", timeout=self.action_timeout_s)
            except AMIDisconnected:
                return
            except AMIError:
                log.warning("AMI ping unanswered: dropping the connection")
                self.drop()
                return

    async def _read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framing: AMIFraming,
        banner: asyncio.Future[Banner],
    ) -> None:
        try:
            await self._read_loop(reader, framing, banner)
        finally:
            # the connection is gone: nothing more may be written to it (an action sent now
            # would wait for a reply that cannot come), and every caller wakes at once
            if self._writer is writer:
                self._writer = None
                self.ready.clear()
            self._fail_pending(AMIDisconnected("AMI connection lost"))

    async def _read_loop(
        self, reader: asyncio.StreamReader, framing: AMIFraming, banner: asyncio.Future[Banner]
    ) -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            self.bytes_in += len(data)
            for msg in framing.receive_data(data):
                if isinstance(msg, Event):
                    self._on_event(msg)
                elif isinstance(msg, Response):
                    self._on_response(msg)
                elif isinstance(msg, Banner):
                    self.banner = msg
                    if not banner.done():
                        banner.set_result(msg)
                elif isinstance(msg, Closed):
                    return
            if not data:
                return

    def _on_response(self, msg: Response) -> None:
        aid = msg.action_id
        pending = self._pending.get(aid) if aid is not None else None
        if pending is None:
            log.debug("AMI response to no pending action: %s", aid)
            return
        pending.response = msg
        if (msg.headers.get("EventList") or "").lower() == "start":
            pending.is_list = True
            return
        if not pending.future.done():
            pending.future.set_result(ActionResult(msg))

    def _on_event(self, msg: Event) -> None:
        self.events_in += 1
        # Asterisk always spells it ActionID; exact lookup keeps the per-event cost low
        aid = msg.headers.get_exact("ActionID")
        if aid is not None:
            pending = self._pending.get(aid)
            if pending is not None and pending.is_list:
                if (msg.headers.get("EventList") or "").lower() == "complete":
                    assert pending.response is not None
                    if not pending.future.done():
                        pending.future.set_result(
                            ActionResult(pending.response, tuple(pending.events))
                        )
                else:
                    pending.events.append(msg)
                return
        for listener in self._listeners:
            try:
                listener(msg)
            except Exception:  # one consumer's bug must not cost the others their events
                log.exception("AMI event listener failed on %s", msg.name)

    def _fail_pending(self, exc: Exception) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()
