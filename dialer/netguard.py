"""Admission control for our TCP servers (the console, FastAGI): hostile clients cannot stall
them or run the process out of file descriptors.

Why: a server that accepts every connection and waits for its first request without a limit
is taken down by clients that connect and send nothing (1,100 idle connections exhausted a
1,024-descriptor console; 2,000 starved FastAGI so that Asterisk's real calls failed). The
rules, sans-I/O (a clock in, decisions out; the servers act on them):

- a connection is WAITING (connected, its request head not complete: a new or idle keep-alive
  connection, or a slow client) or ACTIVE (a request being served);
- a WAITING connection gets ``header_timeout`` to complete its head; the time-out shrinks
  linearly with load, from ``header_timeout_s`` when the server is empty to
  ``header_timeout_min_s`` when it is full, for connections already waiting as well;
- at ``max_per_address`` connections from one address, or ``max_connections`` in all, a new
  connection evicts the oldest WAITING one (of that address, or of any address): a client
  that sends its request at once (Asterisk, a supervisor's browser) is always served before
  one that sends nothing, however many of those there are; only when every connection is
  ACTIVE is the new one refused (the console answers 503, FastAGI closes it, and Asterisk
  continues with ``AGISTATUS=FAILURE``).
- with ``last_read`` (FastAGI), an evicted or timed-out connection is not closed at once: it
  is HELD until the server has read what its socket already holds (``reap`` after one pass of
  the event loop's I/O), and ``activated`` serves it if its head was there; and a time-out
  falls at the second ``expired`` that finds it late, not the first. Under load the server
  reads late: a head can sit unread in the kernel (or arrive in the very pass) when the
  decision is taken, and a stall of the whole loop puts every connection past its time-out
  at once - a connection whose head is there is a live session, not an idle one. CI once saw
  all 20 of Asterisk's calls cut this way beside a flood of 2,000 idle connections: after a
  stall, each was timed out in the pass before the one that read its header.

``raise_nofile_limit`` lifts the process's soft descriptor limit to its hard limit at start.
``RateLimitedLog`` keeps a flood from writing a log line per connection.
"""

from __future__ import annotations

import enum
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)  # whatever the server uses to name a connection


class ConnState(enum.Enum):
    WAITING = "waiting"  # no complete request head yet (new, idle keep-alive, or slow)
    ACTIVE = "active"  # a request is being served


@dataclass(frozen=True)
class GuardLimits:
    max_connections: int = 512
    max_per_address: int = 256
    header_timeout_s: float = 10.0  # when the server is empty
    header_timeout_min_s: float = 1.0  # when it is full

    def __post_init__(self) -> None:
        if not 0 < self.max_per_address <= self.max_connections:
            raise ValueError("need 0 < max_per_address <= max_connections")
        if not 0 < self.header_timeout_min_s <= self.header_timeout_s:
            raise ValueError("need 0 < header_timeout_min_s <= header_timeout_s")


@dataclass(frozen=True)
class Admission(Generic[K]):
    accepted: bool
    evict: tuple[K, ...] = ()  # connections to close now (oldest waiting ones)


@dataclass
class _Conn:
    address: str
    state: ConnState
    since: float  # when it entered its state


@dataclass
class GuardStats:
    admitted: int = 0
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0
    spared: int = 0  # evicted or timed out, but its head was in the last read: served


@dataclass
class ConnectionGuard(Generic[K]):
    """Decides, for one server, which connections to admit, evict and time out."""

    limits: GuardLimits = field(default_factory=GuardLimits)
    clock: Callable[[], float] = time.monotonic
    stats: GuardStats = field(default_factory=GuardStats)
    last_read: bool = False  # hold evicted / timed-out connections until ``reap``

    def __post_init__(self) -> None:
        # insertion order = age order of WAITING connections (moved to the end on re-entry)
        self._waiting: OrderedDict[K, _Conn] = OrderedDict()
        self._active: dict[K, _Conn] = {}
        self._per_address: dict[str, int] = {}
        self._held: dict[K, _Conn] = {}  # evicted or timed out, to close at ``reap``
        self._late: set[K] = set()  # past the time-out at the last ``expired`` (last_read)

    # --- queries ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._waiting) + len(self._active)

    @property
    def waiting_count(self) -> int:
        """Connections still waiting for their request head (what ``expired`` may close)."""
        return len(self._waiting)

    @property
    def load(self) -> float:
        return len(self) / self.limits.max_connections

    def header_timeout(self) -> float:
        lim = self.limits
        span = lim.header_timeout_s - lim.header_timeout_min_s
        return lim.header_timeout_s - span * min(1.0, self.load)

    def state(self, key: K) -> ConnState | None:
        conn = self._waiting.get(key) or self._active.get(key)
        return None if conn is None else conn.state

    @property
    def held_count(self) -> int:
        """Evicted or timed-out connections waiting for ``reap`` (``last_read`` only)."""
        return len(self._held)

    # --- events -------------------------------------------------------------------------

    def admit(self, key: K, address: str) -> Admission[K]:
        """A new connection from ``address``. Closing the evicted ones is the caller's job
        (it must still report them ``closed``)."""
        evict: list[K] = []
        if self._per_address.get(address, 0) >= self.limits.max_per_address:
            victim = self._oldest_waiting(address)
            if victim is None:
                self.stats.refused += 1
                return Admission(False)
            evict.append(victim)
        elif len(self) >= self.limits.max_connections:
            victim = self._oldest_waiting(None)
            if victim is None:
                self.stats.refused += 1
                return Admission(False)
            evict.append(victim)
        for v in evict:
            self._forget(v, hold=True)
            self.stats.evicted += 1
        self._waiting[key] = _Conn(address, ConnState.WAITING, self.clock())
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.stats.admitted += 1
        return Admission(True, tuple(evict))

    def activated(self, key: K) -> bool:
        """Its request head is complete: it is served and never evicted. A HELD connection
        (its head came in the last read) is served too, beyond the limits if need be: it is
        a live session. False if the guard does not know it (already reaped or closed)."""
        conn = self._waiting.pop(key, None)
        if conn is None:
            conn = self._held.pop(key, None)
            if conn is None:
                return False
            self._per_address[conn.address] = self._per_address.get(conn.address, 0) + 1
            self.stats.spared += 1
        conn.state, conn.since = ConnState.ACTIVE, self.clock()
        self._active[key] = conn
        return True

    def waiting(self, key: K) -> None:
        """Its request is done and it stays open (keep-alive): waiting again, youngest."""
        conn = self._active.pop(key, None)
        if conn is not None:
            conn.state, conn.since = ConnState.WAITING, self.clock()
            self._waiting[key] = conn

    def closed(self, key: K) -> None:
        self._forget(key)
        self._held.pop(key, None)

    def reap(self) -> list[K]:
        """The HELD connections whose head did not come in the last read: close them now
        (they are forgotten here). Call it after the event loop has read every socket once
        since the connections were evicted or timed out."""
        out = list(self._held)
        self._held.clear()
        return out

    def expired(self) -> list[K]:
        """WAITING connections past the current (load-dependent) time-out, to close now; they
        are forgotten here. With ``last_read``: those that were past it at the previous call
        already (a stall of the whole server puts everyone past it at once; they get one
        more sweep's time to be read), to close once ``reap`` returns them."""
        deadline = self.clock() - self.header_timeout()
        due = []
        for key, conn in self._waiting.items():
            if conn.since > deadline:
                break  # the rest are younger
            due.append(key)
        if self.last_read:
            out = [key for key in due if key in self._late]
            self._late = set(due).difference(out)
        else:
            out = due
        for key in out:
            self._forget(key, hold=True)
        self.stats.timed_out += len(out)
        return out

    # --- internals ----------------------------------------------------------------------

    def _oldest_waiting(self, address: str | None) -> K | None:
        for key, conn in self._waiting.items():
            if address is None or conn.address == address:
                return key
        return None

    def _forget(self, key: K, *, hold: bool = False) -> None:
        conn = self._waiting.pop(key, None) or self._active.pop(key, None)
        if conn is None:
            return
        self._late.discard(key)
        if hold and self.last_read:
            self._held[key] = conn
        n = self._per_address.get(conn.address, 0) - 1
        if n > 0:
            self._per_address[conn.address] = n
        else:
            self._per_address.pop(conn.address, None)


def raise_nofile_limit(want: int | None = None) -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to ``want`` (default: the hard limit); returns the limits
    now in force. Never lowers it; a refusal is logged, not raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None else min(want, hard)
    if hard == resource.RLIM_INFINITY and want is None:
        target = max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft, hard


class RateLimiter:
    """At most ``per_interval`` events of one kind per ``interval_s``."""

    def __init__(
        self,
        *,
        per_interval: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        self.per_interval = per_interval
        self.interval_s = interval_s
        self.clock = clock
        self.max_kinds = max_kinds
        self._window: dict[str, tuple[float, int, int]] = {}  # kind -> (start, passed, dropped)

    def allow(self, kind: str) -> int | None:
        """None: drop this one; else how many of its kind were dropped since the last one."""
        now = self.clock()
        start, passed, dropped = self._window.get(kind, (now, 0, 0))
        if now - start >= self.interval_s:
            start, passed = now, 0
        if passed >= self.per_interval:
            self._window[kind] = (start, passed, dropped + 1)
            return None
        if kind not in self._window and len(self._window) >= self.max_kinds:
            self._window.clear()  # bounded: a flood of distinct messages resets the table
        self._window[kind] = (start, passed + 1, 0)
        return dropped


class RateLimitedLog:
    """A logger that writes at most ``per_interval`` lines of one kind per ``interval_s``;
    the next line written says how many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_interval: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.limiter = RateLimiter(per_interval=per_interval, interval_s=interval_s, clock=clock)

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        dropped = self.limiter.allow(kind)
        if dropped is None:
            return False
        if dropped:
            msg = f"{msg} (and {dropped} more like it not logged)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, kind, msg, *args)


class RateLimitFilter(logging.Filter):
    """A ``logging.Filter``: at most ``per_interval`` records per (logger, message template)
    per ``interval_s`` - a flood of failing connections writes a handful of tracebacks, not
    hundreds of megabytes."""

    def __init__(self, per_interval: int = 10, interval_s: float = 10.0) -> None:
        super().__init__()
        self.limiter = RateLimiter(per_interval=per_interval, interval_s=interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        dropped = self.limiter.allow(f"{record.name}:{record.msg}")
        if dropped is None:
            return False
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it not logged)"
        return True


#: the loggers a flood of connections writes to (a logger's filter applies to its own records
#: only, not to its children's: each is named)
FLOOD_LOGGERS = (
    "asyncio",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.access",
    "aiohttp.internal",
    "dialer.floor.console.app",
    "ivr.fastagi",
)


def install_log_limits(names: tuple[str, ...] = FLOOD_LOGGERS) -> None:
    """Rate-limit the loggers a flood of connections writes to (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter())


__all__ = [
    "Admission",
    "ConnState",
    "ConnectionGuard",
    "GuardLimits",
    "GuardStats",
    "RateLimitFilter",
    "RateLimitedLog",
    "RateLimiter",
    "install_log_limits",
    "raise_nofile_limit",
]
