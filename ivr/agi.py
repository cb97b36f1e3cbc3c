"""The AGI protocol without I/O: bytes in, typed events out; commands out as bytes.

Why this file exists (and why not pyst2 or panoramisk): Asterisk's AGI wire has a few forms
that the common libraries get wrong, and each one loses a call or leaks digits:

* A caller hanging up produces a bare ``HANGUP`` line that arrives *unsolicited* - between
  commands, or before the reply of the command in flight - followed by ``511`` for every later
  command (``GET VARIABLE`` and ``VERBOSE`` still answer ``200``). A parser that takes
  ``HANGUP`` as the reply to the current command loses sync for the rest of the session.
* ``200 result= (timeout)`` (empty result), ``200 result=12 (timeout)`` (partial digits),
  ``200 result=-1 endpos=0`` (missing prompt, channel alive), ``200 result=1 (value)``.
* ``520-`` usage text spans several lines and ends with ``520 End of proper usage.``.
* End-of-stream is input: a closed socket before the header ends, or while a command is in
  flight, is an event here, never a hang or a spin.

Rules of this file: no asyncio, no sockets, no logging of replies (they carry typed digits).
One class (``AGIConnection``) owns the state machine as a transition table; an illegal move
raises ``LocalProtocolError`` (our bug) or ``RemoteProtocolError`` (the peer's).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from dialer.errors import LocalProtocolError, RemoteProtocolError
from ivr.errors import AGICommandError, CallerHungUp

# --- limits -----------------------------------------------------------------------------

#: Longest line we accept from Asterisk (a usage line is ~500 bytes; a header line < 1 KiB).
MAX_LINE: Final = 16 * 1024
#: Most header lines we accept (Asterisk 22 sends 20 plus ``agi_arg_N``).
MAX_HEADER_LINES: Final = 256


class Status(enum.IntEnum):
    """AGI reply codes (res_agi.c)."""

    TRYING = 100  # "100 result=0 Trying..." before some async commands
    SUCCESS = 200
    INVALID = 510  # unknown command
    DEAD_CHANNEL = 511  # "Command Not Permitted on a dead channel or intercept routine"
    USAGE = 520  # bad syntax; multi-line usage follows


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AGIEnvironment:
    """The ``agi_*`` header, with the routing facts decoded.

    ``script`` is the flow name (last path segment of ``agi_network_script`` without the
    query), ``query`` the ``?a=b`` parameters, ``args`` the ``agi_arg_N`` values in order.
    """

    values: Mapping[str, str]
    script: str
    query: Mapping[str, str]
    args: tuple[str, ...]

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key if key.startswith("agi_") else f"agi_{key}", default)

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def language(self) -> str:
        return self.get("language")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    def param(self, name: str, position: int | None = None) -> str | None:
        """A parameter by name (``?attempt=42``, or ``attempt=42`` as an ``agi_arg``) or
        by position among the plain ``agi_arg_N`` values (1-based)."""
        if name in self.query:
            return self.query[name]
        plain: list[str] = []
        for arg in self.args:
            key, sep, value = arg.partition("=")
            if sep and key == name:
                return value
            if not sep:
                plain.append(arg)
        if position is not None and 0 < position <= len(plain):
            return plain[position - 1]
        return None


@dataclass(frozen=True)
class Reply:
    """One reply to one command.

    ``result`` is the raw token after ``result=`` (``""`` for ``result= (timeout)``; digits
    for GET DATA, which may include ``*``), ``data`` the parenthesised text, ``endpos`` the
    sample offset STREAM FILE reports.
    """

    status: Status
    result: str = ""
    data: str | None = None
    endpos: int | None = None
    message: str = ""
    usage: str = ""

    @property
    def code(self) -> int:
        """``result`` as an integer (0 when empty or not numeric)."""
        try:
            return int(self.result)
        except ValueError:
            return 0

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"

    @property
    def digit(self) -> str | None:
        """For STREAM FILE / WAIT FOR DIGIT: the key pressed (result is its ASCII code)."""
        c = self.code
        return chr(c) if c > 0 else None

    @property
    def failed(self) -> bool:
        """``result=-1``: channel failure, hang-up in progress, or a missing prompt file."""
        return self.status is Status.SUCCESS and self.result == "-1"


@dataclass(frozen=True)
class HangupRequested:
    """The unsolicited bare ``HANGUP`` line: the channel is gone."""


@dataclass(frozen=True)
class Provisional:
    """A ``100`` line; the final reply follows."""

    message: str


@dataclass(frozen=True)
class ConnectionClosed:
    """End of stream from Asterisk. ``in_header`` tells whether the header was complete."""

    in_header: bool
    partial: bool  # a partial line was pending when the stream ended


class _NeedData(enum.Enum):
    NEED_DATA = "need-data"


NEED_DATA: Final = _NeedData.NEED_DATA

Event = AGIEnvironment | Reply | HangupRequested | Provisional | ConnectionClosed


# --- commands ---------------------------------------------------------------------------


_SAFE_BARE = re.compile(r"^[A-Za-z0-9_.:/@+=${}()*#,;-]+$")


def quote(arg: str) -> str:
    """Quote one argument the way res_agi's parser reads it.

    res_agi splits on spaces/tabs, honours ``"..."`` and backslash escapes inside quotes. An
    empty argument must be ``""`` (``STREAM FILE beep ""`` = no escape digits). Newlines would
    end the command, so they are refused (``LocalProtocolError``).
    """
    if "\n" in arg or "\r" in arg or "\x00" in arg:
        raise LocalProtocolError("AGI argument contains a line break or NUL")
    if arg and _SAFE_BARE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Command:
    """One AGI command: its words (``STREAM FILE``) and its arguments.

    ``quoted`` names argument positions that are always quoted (escape digits, values) so an
    empty one is still sent as ``""``.
    """

    verb: str
    args: tuple[str, ...] = ()
    always_quote: frozenset[int] = frozenset()
    dead_ok: bool = False  # Asterisk still answers it on a dead channel

    @functools.cached_property
    def wire(self) -> bytes:
        """The command line as sent (encoded once per command: the constructors below reuse
        their commands, so a flow's prompts are encoded once per process)."""
        return self.format()

    def format(self) -> bytes:
        parts = [self.verb]
        for i, arg in enumerate(self.args):
            if i in self.always_quote:
                if "\n" in arg or "\r" in arg or "\x00" in arg:
                    raise LocalProtocolError("AGI argument contains a line break or NUL")
                parts.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"')
            else:
                parts.append(quote(arg))
        return (" ".join(parts) + "\n").encode("utf-8")

    def __str__(self) -> str:
        return self.format().decode("utf-8").rstrip("\n")


ESCAPE_ALL: Final = "0123456789*#"


@functools.lru_cache(maxsize=1024)
def answer() -> Command:
    return Command("ANSWER")


@functools.lru_cache(maxsize=1024)
def stream_file(prompt: str, escape_digits: str = "") -> Command:
    """``STREAM FILE prompt "escape"``; escape digits make it interruptible (README item 6)."""
    return Command("STREAM FILE", (prompt, escape_digits), always_quote=frozenset({1}))


@functools.lru_cache(maxsize=1024)
def wait_for_digit(timeout_ms: int) -> Command:
    return Command("WAIT FOR DIGIT", (str(int(timeout_ms)),))


@functools.lru_cache(maxsize=1024)
def get_data(prompt: str, timeout_ms: int, max_digits: int) -> Command:
    return Command("GET DATA", (prompt, str(int(timeout_ms)), str(int(max_digits))))


def set_variable(name: str, value: str) -> Command:
    return Command("SET VARIABLE", (name, value), always_quote=frozenset({1}))


@functools.lru_cache(maxsize=1024)
def get_variable(name: str) -> Command:
    return Command("GET VARIABLE", (name,), dead_ok=True)


def verbose(message: str, level: int = 1) -> Command:
    return Command("VERBOSE", (message, str(level)), always_quote=frozenset({0}), dead_ok=True)


@functools.lru_cache(maxsize=1024)
def hangup() -> Command:
    return Command("HANGUP")


def exec_app(app: str, options: str = "") -> Command:
    return Command("EXEC", (app, options) if options else (app,), always_quote=frozenset({1}))


# --- parsing ----------------------------------------------------------------------------

_REPLY_200 = re.compile(r"^200 result=(\S*)(?: \((.*)\))?(?: endpos=(-?\d+))?\s*$")
_STATUS_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_HEADER_LINE = re.compile(r"^agi_[A-Za-z0-9_]+:")


def parse_reply_line(line: str) -> Reply:
    """Parse a single-line reply (``200 ...``, ``510 ...``, ``511 ...``, ``520 ...``)."""
    m = _STATUS_LINE.match(line)
    if not m:
        raise RemoteProtocolError(f"not an AGI reply: {line[:80]!r}")
    try:
        status = Status(int(m.group(1)))
    except ValueError:
        raise RemoteProtocolError(f"unknown AGI status {m.group(1)}") from None
    if status is Status.SUCCESS:
        r = _REPLY_200.match(line)
        if not r:
            raise RemoteProtocolError(f"malformed 200 reply: {line[:80]!r}")
        endpos = int(r.group(3)) if r.group(3) is not None else None
        return Reply(status, result=r.group(1), data=r.group(2), endpos=endpos)
    return Reply(status, message=m.group(3))


def parse_header(lines: list[str]) -> AGIEnvironment:
    """Build the environment from ``agi_key: value`` lines (without the blank end line)."""
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_") or not key[4:].replace("_", "").isalnum():
            raise RemoteProtocolError(f"not an AGI header line: {line[:80]!r}")
        values[key] = value[1:] if value.startswith(" ") else value
    if not values:
        raise RemoteProtocolError("empty AGI header")
    args: list[str] = []
    n = 1
    while f"agi_arg_{n}" in values:
        args.append(values[f"agi_arg_{n}"])
        n += 1
    raw = values.get("agi_network_script") or values.get("agi_request", "")
    script, query = split_script(raw)
    return AGIEnvironment(values=values, script=script, query=query, args=tuple(args))


def split_script(raw: str) -> tuple[str, dict[str, str]]:
    """``card_activation?attempt=42`` or ``agi://h:4573/card_activation?attempt=42`` or a
    process-AGI path ``/usr/bin/ivr`` -> (``card_activation``, {"attempt": "42"})."""
    parts = urlsplit(raw)
    path = parts.path if parts.scheme else raw.partition("?")[0]
    query = parts.query if parts.scheme else raw.partition("?")[2]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name, dict(parse_qsl(query, keep_blank_values=True))


# --- the state machine -------------------------------------------------------------------


class State(enum.Enum):
    HEADER = "header"  # reading agi_ lines
    IDLE = "idle"  # no command outstanding
    WAITING = "waiting"  # a command was sent, its reply is due
    USAGE = "usage"  # inside a 520- multi-line reply
    CLOSED = "closed"  # end of stream seen


class Input(enum.Enum):
    HEADER_LINE = "header-line"
    HEADER_END = "header-end"
    SEND = "send"
    REPLY = "reply"
    USAGE_START = "usage-start"
    USAGE_LINE = "usage-line"
    USAGE_END = "usage-end"
    HANGUP_LINE = "hangup-line"
    TRYING = "trying"
    EOF = "eof"


#: (state, input) -> next state. Anything missing is illegal.
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (State.HEADER, Input.HEADER_LINE): State.HEADER,
    (State.HEADER, Input.HEADER_END): State.IDLE,
    (State.HEADER, Input.EOF): State.CLOSED,
    (State.IDLE, Input.SEND): State.WAITING,
    (State.IDLE, Input.HANGUP_LINE): State.IDLE,
    (State.IDLE, Input.EOF): State.CLOSED,
    (State.WAITING, Input.REPLY): State.IDLE,
    (State.WAITING, Input.TRYING): State.WAITING,
    (State.WAITING, Input.USAGE_START): State.USAGE,
    (State.WAITING, Input.HANGUP_LINE): State.WAITING,
    (State.WAITING, Input.EOF): State.CLOSED,
    (State.USAGE, Input.USAGE_LINE): State.USAGE,
    (State.USAGE, Input.USAGE_END): State.IDLE,
    (State.USAGE, Input.EOF): State.CLOSED,
    (State.CLOSED, Input.EOF): State.CLOSED,
}

#: Inputs that are the *peer's* doing; an illegal one is a RemoteProtocolError.
_REMOTE = frozenset(set(Input) - {Input.SEND})


@dataclass
class AGIConnection:
    """One AGI session seen from the script's side (FastAGI server or process AGI).

    Feed bytes with ``receive_data`` (``b""`` = end of stream), pull events with
    ``next_event`` until it returns ``NEED_DATA``; get bytes to write from ``send``.
    """

    state: State = State.HEADER
    hung_up: bool = False
    environment: AGIEnvironment | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _eof: bool = False
    _header: list[str] = field(default_factory=list)
    _usage: list[str] = field(default_factory=list)
    _usage_first: str = ""
    _pending: Command | None = None

    def _move(self, inp: Input) -> None:
        nxt = TRANSITIONS.get((self.state, inp))
        if nxt is None:
            err = RemoteProtocolError if inp in _REMOTE else LocalProtocolError
            raise err(f"AGI: {inp.value} not allowed in state {self.state.value}")
        self.state = nxt

    # -- input ---------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            if data:
                raise RemoteProtocolError("data after end of stream")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data

    def _next_line(self) -> str | None:
        i = self._buffer.find(b"\n")
        if i < 0:
            if len(self._buffer) > MAX_LINE:
                raise RemoteProtocolError("AGI line too long")
            return None
        if i > MAX_LINE:
            raise RemoteProtocolError("AGI line too long")
        raw = bytes(self._buffer[:i])
        del self._buffer[: i + 1]
        # Asterisk writes UTF-8 (caller names in Chinese); never fail on a stray byte.
        return raw.rstrip(b"\r").decode("utf-8", errors="replace")

    def next_event(self) -> Event | _NeedData:
        while True:
            line = self._next_line()
            if line is None:
                if self._eof and self.state is not State.CLOSED:
                    in_header = self.state is State.HEADER
                    partial = bool(self._buffer)
                    self._buffer.clear()
                    self._move(Input.EOF)
                    self._pending = None
                    return ConnectionClosed(in_header=in_header, partial=partial)
                return NEED_DATA
            event = self._line(line)
            if event is not None:
                return event

    def _line(self, line: str) -> Event | None:
        st = self.state
        if st is State.HEADER:
            if line == "":
                self._move(Input.HEADER_END)
                self.environment = parse_header(self._header)
                self._header = []
                return self.environment
            if len(self._header) >= MAX_HEADER_LINES:
                raise RemoteProtocolError("AGI header too long")
            if not _HEADER_LINE.match(line):
                raise RemoteProtocolError(f"not an AGI header line: {line[:80]!r}")
            self._move(Input.HEADER_LINE)
            self._header.append(line)
            return None
        if st is State.USAGE:
            if line.startswith("520 "):
                self._move(Input.USAGE_END)
                usage = "\n".join(self._usage)
                first, self._usage, self._pending = self._usage_first, [], None
                return Reply(Status.USAGE, message=first, usage=usage)
            self._move(Input.USAGE_LINE)
            self._usage.append(line)
            return None
        if line.strip() == "HANGUP":
            self._move(Input.HANGUP_LINE)
            self.hung_up = True
            return HangupRequested()
        if st is State.CLOSED:
            raise RemoteProtocolError("line after end of stream")
        if line.startswith("520-"):
            self._move(Input.USAGE_START)
            self._usage_first = line[4:]
            return None
        if line.startswith("100 "):
            self._move(Input.TRYING)
            return Provisional(line[4:])
        if st is State.IDLE:
            raise RemoteProtocolError(f"unsolicited AGI line: {line[:80]!r}")
        reply = parse_reply_line(line)
        self._move(Input.REPLY)
        self._pending = None
        if reply.status is Status.DEAD_CHANNEL:
            self.hung_up = True
        return reply

    # -- output --------------------------------------------------------------------------

    def send(self, command: Command) -> bytes:
        data = command.wire
        self._move(Input.SEND)
        self._pending = command
        return data

    @property
    def pending(self) -> Command | None:
        return self._pending


def check(reply: Reply) -> Reply:
    """Turn a reply into an exception where it is one: 511 -> ``CallerHungUp``; 510/520 ->
    ``AGICommandError``. A ``200`` (including ``result=-1``) is returned as is."""
    if reply.status is Status.DEAD_CHANNEL:
        raise CallerHungUp(reply.message or "dead channel")
    if reply.status in (Status.INVALID, Status.USAGE):
        raise AGICommandError(int(reply.status), reply.message, reply.usage)
    return reply


__all__ = [
    "ESCAPE_ALL",
    "NEED_DATA",
    "AGIConnection",
    "AGIEnvironment",
    "Command",
    "ConnectionClosed",
    "Event",
    "HangupRequested",
    "Provisional",
    "Reply",
    "State",
    "Status",
    "TRANSITIONS",
    "answer",
    "check",
    "exec_app",
    "get_data",
    "get_variable",
    "hangup",
    "parse_header",
    "parse_reply_line",
    "quote",
    "set_variable",
    "split_script",
    "stream_file",
    "verbose",
    "wait_for_digit",
]
