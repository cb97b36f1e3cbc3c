"""Sans-I/O AMI connection: one manager session's lifecycle, bytes in and bytes out.

Why this file exists: the asyncio client (``adapter.AMIClient``) only moves bytes and awaits;
everything AMI itself decides lives here, where it is tested by replaying recorded transcripts
without a socket (``tests/ami/test_ami_connection.py``).

Rules of this file:
- No I/O, no asyncio, no clock. ``receive_data(data)`` takes what the socket read
  (``b""`` is end-of-stream) and returns what happened, as values (``Happening``);
  ``data_to_send()`` hands over the bytes to write.
- The session's states are the table ``TRANSITIONS``: awaiting the banner, login sent,
  resyncing (logged in, the service catching up), ready, closed. An input with no entry raises
  ``IllegalTransition``.
- The ``Login`` action goes out when the banner arrives. Other actions may be sent while
  resyncing or ready; each is paired with its response by ``ActionID``. A response that opens
  a list (``EventList: start``) collects the events carrying its ActionID until the one with
  ``EventList: Complete``; those list items never reach the event stream.
- Nothing is ever re-sent: when the connection closes, every pending action fails.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Sequence

from dialer.errors import AMIDisconnected, IllegalTransition
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Action, Banner, Closed, Event, Response


class ConnState(enum.Enum):
    AWAITING_BANNER = "awaiting_banner"
    LOGIN_SENT = "login_sent"
    RESYNCING = "resyncing"
    READY = "ready"
    CLOSED = "closed"


class ConnInput(enum.Enum):
    BANNER = "banner"
    LOGIN_ACCEPTED = "login_accepted"
    LOGIN_REFUSED = "login_refused"
    RESYNCED = "resynced"
    CLOSE = "close"  # end of stream, or closed by us


C, I = ConnState, ConnInput  # noqa: E741 - the table reads as a table

#: The session's lifecycle. (state, input) -> next state. Anything else is illegal.
TRANSITIONS: dict[tuple[ConnState, ConnInput], ConnState] = {
    (C.AWAITING_BANNER, I.BANNER): C.LOGIN_SENT,
    (C.LOGIN_SENT, I.LOGIN_ACCEPTED): C.RESYNCING,
    (C.LOGIN_SENT, I.LOGIN_REFUSED): C.CLOSED,
    (C.RESYNCING, I.RESYNCED): C.READY,
    **{(state, I.CLOSE): C.CLOSED for state in ConnState},
}

#: States in which actions other than the login may be sent.
SENDING_STATES = frozenset({C.RESYNCING, C.READY})


@dataclasses.dataclass(frozen=True, slots=True)
class ActionResult:
    """An action's response and, for list actions, the events of its list."""

    response: Response
    events: tuple[Event, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Greeted:
    banner: Banner


@dataclasses.dataclass(frozen=True, slots=True)
class LoggedIn:
    """Login accepted: the session is resyncing until ``resynced()``."""


@dataclasses.dataclass(frozen=True, slots=True)
class LoginRefused:
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class ActionDone:
    action_id: str
    result: ActionResult


@dataclasses.dataclass(frozen=True, slots=True)
class EventReceived:
    event: Event


@dataclasses.dataclass(frozen=True, slots=True)
class ActionFailed:
    """The connection closed before this action's reply: Asterisk may or may not have acted."""

    action_id: str
    error: AMIDisconnected


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionClosed:
    pass


Happening = (
    Greeted | LoggedIn | LoginRefused | ActionDone | EventReceived | ActionFailed | ConnectionClosed
)


class _Pending:
    __slots__ = ("action", "response", "events")

    def __init__(self, action: Action) -> None:
        self.action = action
        self.response: Response | None = None  # set once a list has started
        self.events: list[Event] = []


class AMIConnection:
    """One AMI session (a new object for every connection)."""

    def __init__(
        self,
        username: str,
        secret: str,
        *,
        events: bool = True,
        ids: itertools.count[int] | None = None,
    ) -> None:
        self.state = C.AWAITING_BANNER
        self.banner: Banner | None = None
        self.events_in = 0
        self._username = username
        self._secret = secret
        self._events = events
        self._ids = ids if ids is not None else itertools.count(1)
        self._framing = AMIFraming()
        self._out = bytearray()
        self._pending: dict[str, _Pending] = {}
        self._login_id: str | None = None

    # -- the table -----------------------------------------------------------------------

    def _move(self, inp: ConnInput) -> None:
        after = TRANSITIONS.get((self.state, inp))
        if after is None:
            raise IllegalTransition("AMI connection", self.state.value, inp.value)
        self.state = after

    # -- outgoing --------------------------------------------------------------------------

    def next_action_id(self, prefix: str = "a") -> str:
        return f"{prefix}-{next(self._ids)}"

    def send(self, action: Action) -> None:
        """Queue an action (its bytes come out of ``data_to_send``); its reply is paired."""
        if self.state not in SENDING_STATES:
            raise AMIDisconnected(f"AMI {self.state.value}: cannot send {action.name}")
        if action.action_id in self._pending:
            raise IllegalTransition("AMI action", action.action_id, "sent while pending")
        self._queue(action)

    def _queue(self, action: Action) -> None:
        self._pending[action.action_id] = _Pending(action)
        self._out += action.to_bytes()

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def forget(self, action_id: str) -> None:
        """The caller stopped waiting (a timeout): a late reply is then ignored."""
        self._pending.pop(action_id, None)

    def resynced(self) -> None:
        """The service has caught up after the login: the session is ready."""
        self._move(I.RESYNCED)

    def close(self) -> list[Happening]:
        """The socket is gone (or we closed it): every pending action fails."""
        if self.state is C.CLOSED and not self._pending:
            return []
        self._move(I.CLOSE)
        error = AMIDisconnected("AMI connection lost")
        out: list[Happening] = [
            ActionFailed(aid, error) for aid in self._pending if aid != self._login_id
        ]
        self._pending.clear()
        out.append(ConnectionClosed())
        return out

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Happening]:
        out: list[Happening] = []
        for msg in self._framing.receive_data(data):
            if isinstance(msg, Event):
                self._on_event(msg, out)
            elif isinstance(msg, Response):
                self._on_response(msg, out)
            elif isinstance(msg, Banner):
                self._on_banner(msg, out)
            elif isinstance(msg, Closed):
                out.extend(self.close())
        return out

    def _on_banner(self, msg: Banner, out: list[Happening]) -> None:
        self._move(I.BANNER)
        self.banner = msg
        self._login_id = self.next_action_id("login")
        fields: Sequence[tuple[str, str]] = (
            ("Username", self._username),
            ("Secret", self._secret),
            ("Events", "on" if self._events else "off"),
        )
        self._queue(Action("Login", self._login_id, tuple(fields)))
        out.append(Greeted(msg))

    def _on_response(self, msg: Response, out: list[Happening]) -> None:
        aid = msg.action_id
        pending = self._pending.get(aid) if aid is not None else None
        if pending is None or aid is None:
            return  # a reply to nothing we wait for (a forgotten action)
        if aid == self._login_id:
            del self._pending[aid]
            self._login_id = None
            if msg.ok:
                self._move(I.LOGIN_ACCEPTED)
                out.append(LoggedIn())
            else:
                self._move(I.LOGIN_REFUSED)
                out.append(LoginRefused(msg.message))
            return
        if (msg.headers.get("EventList") or "").lower() == "start":
            pending.response = msg
            return
        del self._pending[aid]
        out.append(ActionDone(aid, ActionResult(msg)))

    def _on_event(self, msg: Event, out: list[Happening]) -> None:
        self.events_in += 1
        # Asterisk always spells it ActionID; exact lookup keeps the per-event cost low
        aid = msg.headers.get_exact("ActionID")
        if aid is not None:
            pending = self._pending.get(aid)
            if pending is not None and pending.response is not None:
                if (msg.headers.get("EventList") or "").lower() == "complete":
                    del self._pending[aid]
                    result = ActionResult(pending.response, tuple(pending.events))
                    out.append(ActionDone(aid, result))
                else:
                    pending.events.append(msg)
                return
        out.append(EventReceived(msg))
