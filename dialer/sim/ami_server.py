"""The simulated PBX's AMI server: Asterisk's wire format over TCP.

``ActionParser`` is the sans-I/O part (bytes in, actions out; end of stream is ordinary
input). ``AmiServer`` is the asyncio adapter: banner, login and ``authtimeout``, permission
classes, actions, event fan-out, and the fault hooks tests use to exercise reconnects
(``drop_all``, ``drop``, ``refuse_for``).
"""

from __future__ import annotations

import asyncio
import configparser
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.sim.dialplan import split_args
from dialer.sim.engine import Engine, OriginateRequest, parse_callerid
from dialer.sim.events import AmiEvent, format_event, format_message
from dialer.sim.filters import FilterError, SessionFilters, parse_filter

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
AMI_VERSION = "11.0.0"
ASTERISK_VERSION = "22.10.1"
AUTH_FAIL_DELAY_S = 1.0
AUTH_TIMEOUT_S = 30.0

#: read classes of the recorded ``dialer`` user (manager.conf)
DEFAULT_READ = frozenset(
    "system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan,agi".split(",")
)

Action = list[tuple[str, str]]


def read_classes(manager_conf: Path, username: str) -> frozenset[str]:
    """The ``read =`` classes of ``[username]`` in an Asterisk ``manager.conf``, as Asterisk
    applies them: events of any other class never reach that user's sessions (``all`` grants
    every class; a user with no ``read`` line gets none)."""
    parser = configparser.ConfigParser(
        strict=False, inline_comment_prefixes=(";",), comment_prefixes=(";",), interpolation=None
    )
    parser.read_string(manager_conf.read_text(encoding="utf-8"))
    if not parser.has_section(username):
        raise ConfigError(f"no [{username}] user", file=str(manager_conf))
    value = parser.get(username, "read", fallback="")
    classes = frozenset(c.strip().lower() for c in value.split(",") if c.strip())
    return DEFAULT_READ if "all" in classes else classes & DEFAULT_READ


class ActionParser:
    """Splits a byte stream into AMI actions (``Key: Value`` blocks ended by a blank line)."""

    def __init__(self) -> None:
        self._buf = b""
        self._cur: Action = []
        self.closed = False

    def feed(self, data: bytes) -> list[Action]:
        if not data:
            self.closed = True
            rest = [self._cur] if self._cur else []
            self._cur = []
            return rest
        self._buf += data
        out: list[Action] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                break
            line = self._buf[:i].rstrip(b"\r").decode("utf-8", "replace")
            self._buf = self._buf[i + 1 :]
            if line == "":
                if self._cur:
                    out.append(self._cur)
                    self._cur = []
                continue
            if ":" in line:
                k, v = line.split(":", 1)
                self._cur.append((k.strip(), v.strip()))
        return out


def header(action: Action, key: str, default: str | None = None) -> str | None:
    kl = key.lower()
    for k, v in action:
        if k.lower() == kl:
            return v
    return default


def headers(action: Action, key: str) -> list[str]:
    kl = key.lower()
    return [v for k, v in action if k.lower() == kl]


@dataclass(eq=False)
class Session:
    writer: asyncio.StreamWriter
    peer: str
    authenticated: bool = False
    events_on: bool = True
    read: frozenset[str] = DEFAULT_READ
    username: str = ""
    closing: bool = False
    auth_timer: object | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sent: int = 0  # bytes written to the client / read from it (a virtual clock's hold)
    received: int = 0
    filters: SessionFilters = field(default_factory=SessionFilters)  # the Filter action's

    def send(self, data: bytes) -> None:
        if not self.closing and not self.writer.is_closing():
            self.writer.write(data)
            self.sent += len(data)

    def respond(self, pairs: list[tuple[str, str]]) -> None:
        self.send(format_message(pairs))

    def list_start(self, base: list[tuple[str, str]], message: str) -> None:
        """The reply that opens an AMI event list (CoreShowChannels, Status, QueueStatus...)."""
        self.respond([("Response", "Success"), *base, ("EventList", "start"), ("Message", message)])

    def list_complete(
        self, event: str, base: list[tuple[str, str]], items: int, *extra: tuple[str, str]
    ) -> None:
        """The event that closes an AMI event list, with its item count."""
        self.respond(
            [("Event", event), *base, ("EventList", "Complete"), ("ListItems", str(items)), *extra]
        )


class AmiServer:
    def __init__(
        self,
        engine: Engine,
        username: str = "dialer",
        secret: str | None = None,
        auth_timeout: float = AUTH_TIMEOUT_S,
        timestamps: bool = True,
        read: frozenset[str] = DEFAULT_READ,
    ) -> None:
        self.read = read
        self.engine = engine
        self.username = username
        self.secret = secret
        self.auth_timeout = auth_timeout
        self.timestamps = timestamps
        self.sessions: set[Session] = set()
        #: a fault: events reach the sessions this many PBX seconds after they were raised
        #: (stamped when raised, in order), as when the client reads its socket late
        self.event_delay_s = 0.0
        self._last_due = float("-inf")
        self._order: list[Session] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._refuse_until: float = -1.0
        self.port: int = 0
        self.host: str = "127.0.0.1"
        engine.listeners.append(self._on_event)
        self.extra_actions: dict[
            str, Callable[[Session, Action, list[tuple[str, str]]], object]
        ] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        return self.port

    async def stop(self) -> None:
        self.drop_all()
        handlers = [t for t in self._handlers if not t.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=1.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def session_of(self, peer: object) -> Session | None:
        """The open session whose client is at ``peer`` (its socket's address)."""
        name = str(peer)
        for s in self.sessions:
            if s.peer == name:
                return s
        return None

    # ------------------------------------------------------------------ faults
    def drop_all(self) -> int:
        """Close every AMI connection at once (as a crashed or restarted Asterisk would)."""
        n = 0
        for s in list(self.sessions):
            self._close(s, abort=True)
            n += 1
        return n

    def drop(self, which: int | Session = 0) -> bool:
        """Close one AMI connection: a ``Session`` or an index, oldest first (default 0)."""
        if isinstance(which, Session):
            s: Session | None = which
        else:
            s = self._order[which] if -len(self._order) <= which < len(self._order) else None
        if s is None:
            return False
        self._close(s, abort=True)
        return True

    def refuse_for(self, seconds: float, mode: str = "accept_close") -> None:
        """Refuse new connections for ``seconds`` of PBX time.

        ``accept_close``: accept and close at once (the client reads EOF before any banner);
        ``unlisten``: stop listening, so connecting fails with "connection refused", and
        listen again on the same port afterwards (existing connections are not touched).
        """
        self._refuse_until = self.engine.clock.now() + seconds
        if mode == "unlisten" and self._server is not None:
            self._server.close()
            self._server = None
            self.engine.clock.call_later(seconds, self._relisten)
        elif mode not in ("accept_close", "unlisten"):
            raise ValueError(f"unknown refuse mode {mode!r}")

    def _relisten(self) -> None:
        self.engine.spawn(self._listen_again())

    async def _listen_again(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

    # ------------------------------------------------------------------ connections
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.engine.clock.now() < self._refuse_until:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        peer = str(writer.get_extra_info("peername"))
        s = Session(writer, peer, read=self.read)
        self.sessions.add(s)
        self._order.append(s)
        s.send(BANNER)
        s.auth_timer = self.engine.clock.call_later(self.auth_timeout, self._auth_expired, s)
        parser = ActionParser()
        try:
            while not s.closing:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                s.received += len(data)
                for action in parser.feed(data):
                    await self._dispatch(s, action)
                if not data:
                    break
        finally:
            self._close(s)

    def _auth_expired(self, s: Session) -> None:
        if not s.authenticated:
            self._close(s)

    def _close(self, s: Session, abort: bool = False) -> None:
        if s in self.sessions:
            self.sessions.discard(s)
        if s in self._order:
            self._order.remove(s)
        if s.auth_timer is not None:
            s.auth_timer.cancel()  # type: ignore[attr-defined]
        s.closing = True
        if abort:
            s.writer.transport.abort()
        elif not s.writer.is_closing():
            s.writer.close()

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: AmiEvent) -> None:
        data: bytes | None = None
        for s in self.sessions:
            if s.authenticated and s.events_on and ev.klass in s.read:
                if data is None:
                    data = format_event(ev, self.timestamps)
                if s.filters and not s.filters.passes(ev.name, data.decode()):
                    continue
                self._deliver(s, data)

    def _deliver(self, s: Session, data: bytes) -> None:
        clock = self.engine.clock
        now = clock.now()
        due = self._last_due = max(now + self.event_delay_s, self._last_due)
        if due <= now:
            s.send(data)
        else:
            clock.call_later(due - now, s.send, data)

    # ------------------------------------------------------------------ actions
    async def _dispatch(self, s: Session, action: Action) -> None:
        name = header(action, "Action")
        aid = header(action, "ActionID")
        base: list[tuple[str, str]] = []
        if aid is not None:
            base.append(("ActionID", aid))

        def reply(resp: str, *pairs: tuple[str, str]) -> None:
            s.respond([("Response", resp), *base, *pairs])

        if name is None:
            reply("Error", ("Message", "Missing action in request"))
            return
        lname = name.lower()
        if lname == "login":
            await self._login(s, action, reply)
            return
        if lname == "logoff":
            reply("Goodbye", ("Message", "Thanks for all the fish."))
            await self._drain(s)
            self._close(s)
            return
        if not s.authenticated:
            reply("Error", ("Message", "Permission denied"))
            return
        handler = ACTIONS.get(lname)
        if handler is None and lname in self.extra_actions:
            self.extra_actions[lname](s, action, base)
            return
        if handler is None:
            reply(
                "Error",
                (
                    "Message",
                    f"Invalid/unknown command: {name}. Use Action: ListCommands to show "
                    "available commands.",
                ),
            )
            return
        await handler(self, s, action, base)

    async def _drain(self, s: Session) -> None:
        try:
            await s.writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _login(self, s: Session, action: Action, reply: Callable[..., None]) -> None:
        user = header(action, "Username") or ""
        secret = header(action, "Secret")
        good = (
            self.secret is not None
            and secret is not None
            and user == self.username
            and hmac.compare_digest(secret.encode(), self.secret.encode())
        )
        if not good:
            await self.engine.clock.sleep(AUTH_FAIL_DELAY_S)
            reply("Error", ("Message", "Authentication failed"))
            await self._drain(s)
            self._close(s)
            return
        s.authenticated = True
        s.username = user
        if s.auth_timer is not None:
            s.auth_timer.cancel()  # type: ignore[attr-defined]
        ev = header(action, "Events")
        if ev is not None:
            self._set_events(s, ev)
        reply("Success", ("Message", "Authentication accepted"))
        if s.events_on and "system" in s.read:
            up = str(int(self.engine.clock.epoch() - self.engine.boot_epoch))
            boot = AmiEvent(
                "FullyBooted",
                "system,all",
                (("Uptime", up), ("LastReload", up), ("Status", "Fully Booted")),
                self.engine.clock.epoch(),
                "system",
            )
            s.send(format_event(boot, self.timestamps))

    def _set_events(self, s: Session, value: str) -> None:
        v = value.strip().lower()
        if v in ("on", "yes", "true", "all"):
            s.events_on, s.read = True, self.read
        elif v in ("off", "no", "false", "none", ""):
            s.events_on = False
        else:
            s.events_on = True
            s.read = frozenset(c.strip() for c in v.split(",")) & self.read


# ====================================================================== action handlers
Base = list[tuple[str, str]]


async def a_ping(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    s.respond(
        [
            ("Response", "Success"),
            *base,
            ("Ping", "Pong"),
            ("Timestamp", f"{srv.engine.clock.epoch():.6f}"),
        ]
    )


async def a_events(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    srv._set_events(s, header(a, "EventMask", "on") or "on")
    s.respond([("Response", "Success"), *base, ("Events", "On" if s.events_on else "Off")])


async def a_filter(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    """``Filter``: add an event filter to this session (``dialer.sim.filters``)."""
    if (header(a, "Operation") or "").lower() != "add":
        s.respond([("Response", "Error"), *base, ("Message", "Unknown operation")])
        return
    try:
        entry = parse_filter(header(a, "MatchCriteria") or "", header(a, "Filter") or "")
    except FilterError as exc:
        s.respond([("Response", "Error"), *base, ("Message", str(exc))])
        return
    s.filters.add(entry)
    s.respond([("Response", "Success"), *base, ("Message", "Success")])


async def a_coresettings(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    s.respond(
        [
            ("Response", "Success"),
            *base,
            ("AMIversion", AMI_VERSION),
            ("AsteriskVersion", ASTERISK_VERSION),
            ("SystemName", ""),
            ("CoreMaxCalls", "0"),
            ("CoreMaxLoadAvg", "0.000000"),
            ("CoreRunUser", ""),
            ("CoreRunGroup", ""),
            ("CoreMaxFilehandles", "0"),
            ("CoreRealTimeEnabled", "No"),
            ("CoreCDRenabled", "Yes"),
            ("CoreHTTPenabled", "No"),
            ("SoundsSearchCustomDir", "No"),
        ]
    )


async def a_originate(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    def err(msg: str) -> None:
        s.respond([("Response", "Error"), *base, ("Message", msg)])

    channel = header(a, "Channel")
    if not channel:
        err("Channel not specified")
        return
    timeout_s = header(a, "Timeout")
    timeout_ms = 30000
    if timeout_s is not None and timeout_s != "":
        if not re.fullmatch(r"-?\d+", timeout_s.strip()):
            err("Invalid timeout")
            return
        timeout_ms = int(timeout_s)
    app = header(a, "Application")
    exten = header(a, "Exten")
    if not app and not exten:
        exten = "s"
    priority = header(a, "Priority")
    if not app and priority is not None and not priority.strip().isdigit():
        err("Invalid priority")
        return
    cid_raw = header(a, "CallerID")
    variables: list[tuple[str, str]] = []
    for header_value in headers(a, "Variable"):
        # astman_get_variables splits each header on commas (outside quotes), as Asterisk does
        for v in split_args(header_value):
            if "=" in v:
                k, val = v.split("=", 1)
                variables.append((k.strip(), val))
    is_async = (header(a, "Async") or "").lower() in ("true", "yes", "1", "on")
    req = OriginateRequest(
        channel=channel,
        context=header(a, "Context"),
        exten=exten,
        priority=priority,
        application=app,
        data=header(a, "Data") or "",
        timeout_ms=timeout_ms,
        callerid=parse_callerid(cid_raw) if cid_raw else None,
        channel_id=header(a, "ChannelId") or None,
        other_channel_id=header(a, "OtherChannelId") or None,
        variables=tuple(variables),
        action_id=dict(base).get("ActionID"),
        is_async=is_async,
        account=header(a, "Account") or "",
    )
    if is_async:
        s.respond([("Response", "Success"), *base, ("Message", "Originate successfully queued")])
        srv.engine.spawn(srv.engine.originate(req))
        return
    result = await srv.engine.originate(req)
    if result.success:
        s.respond([("Response", "Success"), *base, ("Message", "Originate successfully queued")])
    else:
        err("Originate failed")


async def a_hangup(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    name = header(a, "Channel") or ""
    ch = srv.engine.find_channel(name)
    if ch is None:
        s.respond([("Response", "Error"), *base, ("Message", "No such channel")])
        return
    cause_s = header(a, "Cause")
    cause = int(cause_s) if cause_s and cause_s.strip().isdigit() else None
    s.respond([("Response", "Success"), *base, ("Message", "Channel Hungup")])
    if cause is not None:
        ch.hangupcause = cause
    srv.engine.request_hangup(ch, cause)


async def a_getvar(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    var = header(a, "Variable") or ""
    chname = header(a, "Channel")
    e = srv.engine
    if chname:
        ch = e.find_channel(chname)
        if ch is None:
            s.respond([("Response", "Error"), *base, ("Message", "No such channel")])
            return
        value = e.resolver(ch)(var)
    elif var == "EPOCH":
        value = str(int(e.clock.epoch()))
    else:
        value = e.dialplan.globals.get(var)
    s.respond([("Response", "Success"), *base, ("Variable", var), ("Value", value or "")])


async def a_setvar(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    var = header(a, "Variable") or ""
    value = header(a, "Value") or ""
    chname = header(a, "Channel")
    e = srv.engine
    if chname:
        ch = e.find_channel(chname)
        if ch is None:
            s.respond([("Response", "Error"), *base, ("Message", "No such channel")])
            return
        e.setvar(ch, var, value)
    else:
        e.dialplan.globals[var] = value
    s.respond([("Response", "Success"), *base, ("Message", "Variable Set")])


def _duration(secs: float) -> str:
    t = int(secs)
    return f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


async def a_coreshowchannels(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    e = srv.engine
    s.list_start(base, "Channels will follow")
    chans = [c for c in reversed(list(e.channels.values())) if c.alive]
    for ch in chans:
        pairs = [("Event", "CoreShowChannel"), *base, *ch.header()]
        pairs += [
            ("Application", ch.app),
            ("ApplicationData", ch.appdata),
            ("Duration", _duration(e.clock.now() - ch.created)),
            ("BridgeId", ch.bridge_id),
        ]
        s.respond(pairs)
    s.list_complete("CoreShowChannelsComplete", base, len(chans))


async def a_status(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    e = srv.engine
    chname = header(a, "Channel")
    if chname:
        ch = e.find_channel(chname)
        if ch is None:
            s.respond([("Response", "Error"), *base, ("Message", "No such channel")])
            return
        chans = [ch]
    else:
        chans = [c for c in reversed(list(e.channels.values())) if c.alive]
    wanted = [v.strip() for v in (header(a, "Variables") or "").split(",") if v.strip()]
    s.list_start(base, "Channel status will follow")
    for ch in chans:
        pairs = [("Event", "Status"), ("Privilege", "Call"), *ch.header()]
        pairs += [
            ("Type", ch.name.split("/", 1)[0]),
            ("DNID", ""),
            ("EffectiveConnectedLineNum", ch.conn_num),
            ("EffectiveConnectedLineName", ch.conn_name),
            ("TimeToHangup", "0"),
            ("BridgeID", ch.bridge_id),
            ("Application", ch.app),
            ("Data", ch.appdata),
            ("Nativeformats", "(slin)"),
            ("Readformat", "slin"),
            ("Readtrans", ""),
            ("Writeformat", "slin"),
            ("Writetrans", ""),
            ("Callgroup", "0"),
            ("Pickupgroup", "0"),
            ("Seconds", str(int(e.clock.now() - ch.created))),
        ]
        resolve = e.resolver(ch)
        for v in wanted:
            pairs.append(("Variable", f"{v}={resolve(v) or ''}"))
        pairs += base
        s.respond(pairs)
    s.list_complete("StatusComplete", base, len(chans), ("Items", str(len(chans))))


async def a_command(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    cmd = (header(a, "Command") or "").strip().lower()
    e = srv.engine
    if cmd == "core show channels count":
        nchan = len(e.channels)
        calls = sum(1 for c in e.channels.values() if c.is_one)
        out = [
            f"{nchan} active channels",
            f"{calls} active calls",
            f"{e.calls_processed} calls processed",
        ]
    elif cmd == "core show version":
        out = [f"Asterisk {ASTERISK_VERSION} (simulated)"]
    else:
        out = [f"No such command '{cmd}' (type 'core show help {cmd}' for other possible commands)"]
    s.respond(
        [
            ("Response", "Success"),
            *base,
            ("Message", "Command output follows"),
            *[("Output", o) for o in out],
        ]
    )


async def a_queue_action(srv: AmiServer, s: Session, a: Action, base: Base) -> None:
    q = srv.engine.queues
    name = (header(a, "Action") or "").lower()
    if q is None:
        s.respond([("Response", "Error"), *base, ("Message", "Queues are not loaded")])
        return
    await q.ami_action(name, s, a, base)


ACTIONS = {
    "ping": a_ping,
    "events": a_events,
    "filter": a_filter,
    "coresettings": a_coresettings,
    "originate": a_originate,
    "hangup": a_hangup,
    "getvar": a_getvar,
    "setvar": a_setvar,
    "coreshowchannels": a_coreshowchannels,
    "status": a_status,
    "command": a_command,
    "queuestatus": a_queue_action,
    "queuesummary": a_queue_action,
    "queueadd": a_queue_action,
    "queueremove": a_queue_action,
    "queuepause": a_queue_action,
}
