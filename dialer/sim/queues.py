"""app_queue for the simulated PBX, as Asterisk 22 behaved in the recordings.

What is modelled (``tests/fixtures/asterisk/transcripts/ami-queue*.txt``):
- ``Queue(name,options,URL,announce,timeout)``: the six empty timing ``VarSet``s, join
  (``QueueCallerJoin``, ``MusicOnHoldStart``), ringing members by strategy (``ringall``,
  ``rrmemory``, ``linear``), member ``timeout``/``retry``, the caller's timeout (an abandon:
  ``QueueCallerAbandon`` + ``QueueCallerLeave`` + ``QUEUESTATUS=TIMEOUT``), the caller hanging
  up while queued (abandon, no ``QUEUESTATUS``), a member answering (``AgentConnect``, a basic
  bridge, ``AgentComplete`` with ``Reason`` agent/caller), ``wrapuptime`` (invisible on AMI),
  ``joinempty`` (``yes``/``no``/``strict`` or a list of member conditions: penalty, paused,
  inuse, ringing, unavailable, invalid, unknown, wrapup), a caller's ``QUEUE_MIN_PENALTY`` /
  ``QUEUE_MAX_PENALTY`` (members outside the range are never rung), pause with reason; the ``QUEUE*``/``MEMBER*``/``QE*`` variables when
  ``setqueuevar``/``setinterfacevar``/``setqueueentryvar`` are set.
- Members: ``Local/<exten>@<context>[/n]`` runs that dialplan (a ringing Local member shows
  ``Status: 2``, never 6, as recorded); any other interface (``PJSIP/agent101``) is a
  *simulated agent* played by ``AgentBehaviour`` (scenario-driven; default: answers after 0.5 s
  (auto-answer, as on a predictive floor), talks 30 s).
- Actions: QueueStatus, QueueSummary, QueueAdd, QueueRemove, QueuePause.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialer.errors import ConfigError
from dialer.sim.dialplan import split_args
from dialer.sim.engine import (
    Channel,
    ChannelHungup,
    Dialing,
    DialOutcome,
    Engine,
    _resolve,
    bridge_fields,
)
from dialer.sim.events import Cause, ChannelState, cause_text

if TYPE_CHECKING:  # scenarios configure queues
    from dialer.sim.scenario import Persona

log = logging.getLogger(__name__)

DEFAULT_MEMBER_TIMEOUT = 15
DEFAULT_RETRY = 5
MOH_MEDIA_DELAY_S = 0.05


class MemberStatus:
    """``QueueMemberStatus`` ``Status`` values (AST_DEVICE_*)."""

    UNKNOWN = 0
    NOT_INUSE = 1
    INUSE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5
    RINGING = 6


@dataclass
class QueueConfig:
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    #: (interface, penalty, member name, paused)
    members: list[tuple[str, int, str, bool]] = field(default_factory=list)


def parse_queues_conf(text: str, fname: str = "<queues.conf>") -> dict[str, QueueConfig]:
    templates: dict[str, QueueConfig] = {}
    queues: dict[str, QueueConfig] = {}
    general = QueueConfig("general")
    cur: QueueConfig | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            end = line.index("]")
            name = line[1:end].strip()
            rest = line[end + 1 :].strip()
            is_template = False
            parents: list[str] = []
            if rest.startswith("(") and rest.endswith(")"):
                for p in rest[1:-1].split(","):
                    p = p.strip()
                    if p == "!":
                        is_template = True
                    elif p:
                        parents.append(p)
            if name == "general":
                cur = general
                continue
            cur = QueueConfig(name)
            for p in parents:
                if p not in templates:
                    raise ConfigError(f"line {lineno}: unknown template {p!r}", file=fname)
                cur.settings.update(templates[p].settings)
                cur.members.extend(templates[p].members)
            (templates if is_template else queues)[name] = cur
            if not is_template:
                templates.setdefault(name, cur)
            continue
        if cur is None:
            continue
        if "=" not in line:
            raise ConfigError(f"line {lineno}: cannot parse {line!r}", file=fname)
        k, v = line.split("=", 1)
        k = k.strip().lower()
        v = v[1:].strip() if v.startswith(">") else v.strip()
        if k == "member":
            parts = [p.strip() for p in v.split(",")]
            iface = parts[0]
            penalty = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            mname = parts[2] if len(parts) > 2 and parts[2] else iface
            paused = len(parts) > 6 and parts[6].lower() in ("yes", "1", "true")
            cur.members.append((iface, penalty, mname, paused))
        else:
            cur.settings[k] = v
    # app_queue's autofill_default: [general] autofill, else no
    for cfg in queues.values():
        cfg.settings.setdefault("autofill", general.settings.get("autofill", "no"))
    return queues


#: ``joinempty`` words that stand for a list of conditions (app_queue's parse_empty_options)
_EMPTY_WORDS = {
    "yes": frozenset(),
    "true": frozenset(),
    "no": frozenset({"penalty", "paused", "invalid", "unavailable"}),
    "false": frozenset({"penalty", "paused", "invalid", "unavailable"}),
    "strict": frozenset({"penalty", "paused", "invalid", "unavailable", "unknown"}),
    "loose": frozenset({"penalty", "invalid"}),
}


def _empty_conditions(value: str | None) -> frozenset[str]:
    """``joinempty`` as the set of member conditions that count as "no member"."""
    out: set[str] = set()
    for word in (value or "yes").lower().replace(" ", "").split(","):
        out |= _EMPTY_WORDS.get(word, {word} if word else set())
    return frozenset(out)


def _penalty_var(value: str | None) -> int | None:
    """A QUEUE_MIN_PENALTY / QUEUE_MAX_PENALTY value (app_queue ignores one that is no
    non-negative number)."""
    v = (value or "").strip()
    return int(v) if v.isdigit() else None


def _yes(v: str | None, default: bool = False) -> bool:
    if v is None:
        return default
    return v.strip().lower() in ("yes", "true", "1", "on")


@dataclass(eq=False)
class Member:
    interface: str
    name: str
    penalty: int
    paused: bool
    dynamic: bool
    login_time: int
    paused_reason: str = ""
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    in_call: bool = False
    #: the member's own wrap-up override (0 = the queue's)
    wrapuptime: int = 0
    #: simulated agent logged out (non-Local members only)
    unavailable: bool = False


@dataclass(eq=False)
class Caller:
    ch: Channel
    joined: float
    position: int
    original_position: int
    options: str = ""
    give_up: Any = None
    ringing: bool = False
    wake_fut: asyncio.Future[tuple[str, str | None]] | None = None
    #: the caller's QUEUE_MIN_PENALTY / QUEUE_MAX_PENALTY at Queue() (None: no bound)
    min_penalty: int | None = None
    max_penalty: int | None = None

    def admits(self, m: Member) -> bool:
        """A member whose penalty is inside the caller's range (app_queue skips the rest)."""
        lo, hi = self.min_penalty, self.max_penalty
        return (lo is None or m.penalty >= lo) and (hi is None or m.penalty <= hi)


@dataclass
class AgentBehaviour:
    """How a simulated (non-Local) agent answers and talks; the scenario replaces it."""

    ring_s: Callable[[random.Random], float] = lambda r: 0.5
    talk_s: Callable[[random.Random], float] = lambda r: 30.0
    answers: Callable[[random.Random], bool] = lambda r: True


class Queue:
    def __init__(self, mgr: QueueManager, cfg: QueueConfig) -> None:
        self.mgr = mgr
        self.name = cfg.name
        s = cfg.settings
        self.settings = s
        self.strategy = s.get("strategy", "ringall")
        self.timeout = int(s.get("timeout", DEFAULT_MEMBER_TIMEOUT) or DEFAULT_MEMBER_TIMEOUT)
        self.retry = int(s.get("retry", DEFAULT_RETRY) or DEFAULT_RETRY)
        self.wrapuptime = int(s.get("wrapuptime", "0") or 0)
        self.joinempty = _empty_conditions(s.get("joinempty", "yes"))
        self.maxlen = int(s.get("maxlen", "0") or 0)
        self.servicelevel = int(s.get("servicelevel", "0") or 0)
        self.weight = int(s.get("weight", "0") or 0)
        self.setqueuevar = _yes(s.get("setqueuevar"))
        self.setinterfacevar = _yes(s.get("setinterfacevar"))
        self.setqueueentryvar = _yes(s.get("setqueueentryvar"))
        self.autofill = _yes(s.get("autofill"))
        self.members: dict[str, Member] = {}
        now = int(mgr.engine.boot_epoch) - 10
        for iface, penalty, mname, paused in cfg.members:
            m = Member(iface, mname, penalty, paused, False, now)
            if paused:
                m.last_pause = now
            self.members[iface] = m
        self.callers: list[Caller] = []
        self.holdtime = 0
        self.talktime = 0
        self.completed = 0
        self.abandoned = 0
        self.completed_in_sl = 0
        self.rr_next = 0

    # ------------------------------------------------------------------ stats
    def srvlevelperf(self) -> str:
        return f"{(100.0 * self.completed_in_sl / self.completed) if self.completed else 0.0:.1f}"

    def stats_vars(self, ch: Channel) -> None:
        if not self.setqueuevar:
            return
        e = self.mgr.engine
        for k, v in (
            ("QUEUENAME", self.name),
            ("QUEUEMAX", str(self.maxlen)),
            ("QUEUESTRATEGY", self.strategy),
            ("QUEUECALLS", str(len(self.callers))),
            ("QUEUEHOLDTIME", str(self.holdtime)),
            ("QUEUETALKTIME", str(self.talktime)),
            ("QUEUECOMPLETED", str(self.completed)),
            ("QUEUEABANDONED", str(self.abandoned)),
            ("QUEUESRVLEVEL", str(self.servicelevel)),
            ("QUEUESRVLEVELPERF", self.srvlevelperf()),
        ):
            e.setvar(ch, k, v)

    @staticmethod
    def _avg(old: int, new: int) -> int:
        return (((old << 2) - old) + new) >> 2


class QueueManager:
    def __init__(self, engine: Engine, configs: dict[str, QueueConfig]) -> None:
        self.engine = engine
        self.queues: dict[str, Queue] = {name: Queue(self, c) for name, c in configs.items()}
        #: interfaces currently in a call or ringing (shared by every queue: ringinuse=no)
        self.busy: dict[str, int] = {}
        self.wrapup_until: dict[str, float] = {}
        #: simulated (non-Local) agents' phones ringing now
        self.ringing_ifaces: set[str] = set()
        self.behaviour: dict[str, AgentBehaviour] = {}
        self.default_behaviour = AgentBehaviour()
        self._chan_seq = itertools.count(1)
        self.rng = engine.rng

    @classmethod
    def load(cls, engine: Engine, path: Path) -> QueueManager:
        if not path.exists():
            raise ConfigError("file not found", file=str(path))
        return cls(engine, parse_queues_conf(path.read_text(encoding="utf-8"), str(path)))

    # ------------------------------------------------------------------ member state
    def member_status(self, m: Member) -> int:
        if m.unavailable:
            return MemberStatus.UNAVAILABLE
        if self.busy.get(m.interface):
            # a Local member shows "in use" while it rings (recorded); a phone shows ringing
            if m.interface in self.ringing_ifaces:
                return MemberStatus.RINGING
            return MemberStatus.INUSE
        if m.interface.lower().startswith("local/"):
            mm = re.match(r"^Local/([^@]+)@([^/]+)", m.interface, re.I)
            if not mm or self.engine.dialplan.find(mm.group(2), mm.group(1)) is None:
                return MemberStatus.INVALID
        return MemberStatus.NOT_INUSE

    def _joinable(self, q: Queue, m: Member, caller: Caller) -> bool:
        """app_queue's get_member_status: a member counts for ``joinempty`` unless it is in
        one of the queue's conditions (``no`` = penalty,paused,invalid,unavailable; a list
        names them: penalty, paused, inuse, ringing, unavailable, invalid, unknown, wrapup)."""
        cond = q.joinempty
        if "penalty" in cond and not caller.admits(m):
            return False
        if "paused" in cond and m.paused:
            return False
        if "wrapup" in cond and self.wrapup_until.get(m.interface, 0.0) > self.engine.clock.now():
            return False
        status = self.member_status(m)
        if m.unavailable:
            status = MemberStatus.UNAVAILABLE
        if "inuse" in cond and (status == MemberStatus.INUSE or self.busy.get(m.interface)):
            return False
        return not any(
            name in cond and status == st
            for name, st in (
                ("ringing", MemberStatus.RINGING),
                ("unavailable", MemberStatus.UNAVAILABLE),
                ("invalid", MemberStatus.INVALID),
                ("unknown", MemberStatus.UNKNOWN),
            )
        )

    def available(self, q: Queue, m: Member) -> bool:
        if m.paused or m.unavailable:
            return False
        if self.busy.get(m.interface):
            return False
        if self.wrapup_until.get(m.interface, 0.0) > self.engine.clock.now():
            return False
        return self.member_status(m) == MemberStatus.NOT_INUSE

    def member_fields(
        self, q: Queue, m: Member, status_list: bool = False
    ) -> list[tuple[str, str]]:
        head: list[tuple[str, str]] = [("Queue", q.name)]
        if status_list:
            head += [("Name", m.name), ("Location", m.interface)]
        else:
            head += [("MemberName", m.name), ("Interface", m.interface)]
        head += [
            ("StateInterface", m.interface),
            ("Membership", "dynamic" if m.dynamic else "static"),
            ("Penalty", str(m.penalty)),
            ("CallsTaken", str(m.calls_taken)),
            ("LastCall", str(m.last_call)),
            ("LastPause", str(m.last_pause)),
            ("LoginTime", str(m.login_time)),
            ("InCall", "1" if m.in_call else "0"),
            ("Status", str(self.member_status(m))),
            ("Paused", "1" if m.paused else "0"),
            ("PausedReason", m.paused_reason),
        ]
        if not status_list:
            head.append(("Ringinuse", "0"))
        head.append(("Wrapuptime", str(m.wrapuptime)))
        return head

    def member_event(self, name: str, q: Queue, m: Member) -> None:
        self.engine.emit(name, tuple(self.member_fields(q, m)), "agent")

    def _set_busy(self, iface: str, busy: bool) -> None:
        before = bool(self.busy.get(iface))
        self.busy[iface] = self.busy.get(iface, 0) + (1 if busy else -1)
        if self.busy[iface] <= 0:
            self.busy.pop(iface, None)
        after = bool(self.busy.get(iface))
        if before != after:
            for q in self.queues.values():
                m = q.members.get(iface)
                if m is not None:
                    self.member_event("QueueMemberStatus", q, m)
                    self.engine.device_state(
                        f"Queue:{q.name}_avail", "INUSE" if after else "NOT_INUSE"
                    )
        if not after:
            self._wake_all()

    def _wake_all(self) -> None:
        for q in self.queues.values():
            self._notify(q)

    def _notify(self, q: Queue) -> None:
        """Wake as many waiting callers (from the head, skipping those already ringing an
        agent) as there are free members: O(free), not one task per waiting caller."""
        free = self._free_count(q)
        n = 0
        for c in q.callers:
            if n >= free:
                break
            if c.ringing:
                continue
            if c.wake_fut is not None:
                _resolve(c.wake_fut, ("wake", None))
            n += 1

    def _wrapup_over(self, iface: str) -> None:
        for q in self.queues.values():
            if iface in q.members:
                self._notify(q)

    # ------------------------------------------------------------------ public API (scenario)
    def add_member(
        self, queue: str, iface: str, name: str = "", penalty: int = 0, paused: bool = False
    ) -> bool:
        q = self.queues.get(queue)
        if q is None or iface in q.members:
            return False
        m = Member(iface, name or iface, penalty, paused, True, int(self.engine.clock.epoch()))
        q.members[iface] = m
        self.engine.device_state(
            f"Queue:{q.name}_pause_{iface}", "INUSE" if paused else "NOT_INUSE"
        )
        self.member_event("QueueMemberAdded", q, m)
        self._notify(q)
        return True

    def remove_member(self, queue: str, iface: str) -> bool:
        q = self.queues.get(queue)
        if q is None or iface not in q.members:
            return False
        m = q.members.pop(iface)
        self.member_event("QueueMemberRemoved", q, m)
        return True

    def pause_member(self, queue: str | None, iface: str, paused: bool, reason: str = "") -> bool:
        found = False
        for q in self.queues.values():
            if queue and q.name != queue:
                continue
            m = q.members.get(iface)
            if m is None:
                continue
            found = True
            m.paused = paused
            m.paused_reason = reason if paused else ""
            m.last_pause = int(self.engine.clock.epoch()) if paused else m.last_pause
            self.engine.device_state(
                f"Queue:{q.name}_pause_{iface}", "INUSE" if paused else "NOT_INUSE"
            )
            self.member_event("QueueMemberPause", q, m)
            self._notify(q)
        return found

    def set_unavailable(self, iface: str, unavailable: bool) -> None:
        for q in self.queues.values():
            m = q.members.get(iface)
            if m is not None and m.unavailable != unavailable:
                m.unavailable = unavailable
                self.member_event("QueueMemberStatus", q, m)
                self._notify(q)

    # ------------------------------------------------------------------ the application
    async def run_queue_app(self, ch: Channel, data: str) -> None:
        e = self.engine
        args = split_args(data)
        qname = args[0].strip()
        timeout_s = args[4].strip() if len(args) > 4 else ""
        q = self.queues.get(qname)
        for k in (
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "QUEUEWAIT",
            "QUEUEWAIT_MS",
        ):
            e.setvar(ch, k, "")
        if q is None:
            log.warning("%s: Queue(%s): no such queue", ch.name, qname)
            e.setvar(ch, "QUEUESTATUS", "UNKNOWN")
            return
        bounds = [_penalty_var(ch.vars.get(k)) for k in ("QUEUE_MIN_PENALTY", "QUEUE_MAX_PENALTY")]
        probe = Caller(ch, 0.0, 0, 0, min_penalty=bounds[0], max_penalty=bounds[1])
        if q.joinempty and not any(self._joinable(q, m, probe) for m in q.members.values()):
            e.setvar(ch, "QUEUESTATUS", "JOINEMPTY")
            return
        if q.maxlen and len(q.callers) >= q.maxlen:
            e.setvar(ch, "QUEUESTATUS", "FULL")
            return
        start = e.clock.now()
        caller = Caller(
            ch,
            start,
            len(q.callers) + 1,
            len(q.callers) + 1,
            args[1].strip() if len(args) > 1 else "",
            min_penalty=bounds[0],
            max_penalty=bounds[1],
        )
        q.callers.append(caller)
        if len(q.callers) == 1:
            e.device_state(f"Queue:{q.name}", "RINGING")
        e.chan_event(
            "QueueCallerJoin",
            ch,
            (("Queue", q.name), ("Position", str(caller.position)), ("Count", str(len(q.callers)))),
            "agent",
        )
        e.chan_event("MusicOnHoldStart", ch, (("Class", "default"),))
        # music on hold reaches the other side ~50 ms later (it wakes a waiting Answer())
        e.clock.call_later(MOH_MEDIA_DELAY_S, self._moh_media, q, caller)
        deadline = (
            start + float(timeout_s) if timeout_s.strip().replace(".", "", 1).isdigit() else None
        )
        ch.app, ch.appdata = "Queue", data
        patience = queue_patience(e, ch)
        if patience is not None:
            caller.give_up = e.clock.call_later(patience, customer_gives_up, e, ch)
        outcome = "timeout"
        try:
            outcome = await self._serve(q, caller, deadline)
        except ChannelHungup:
            if caller not in q.callers:
                raise  # the call was connected: hung up after the bridge
            outcome = "hangup"
        if outcome in ("timeout", "hangup"):
            self._abandon(q, caller, outcome)
            if outcome == "hangup":
                raise ChannelHungup
            e.setvar(ch, "QUEUESTATUS", "TIMEOUT")

    def _secs(self, since: float) -> int:
        """Whole seconds as app_queue counts them: time(NULL) - start, both time_t."""
        e = self.engine
        return int(e.clock.epoch()) - int(e.clock.epoch() - (e.clock.now() - since))

    def _moh_media(self, q: Queue, caller: Caller) -> None:
        if caller in q.callers and caller.ch.alive:
            self.engine.media_started(caller.ch)

    def _leave(self, q: Queue, caller: Caller) -> None:
        e = self.engine
        pos = caller.position
        if caller.give_up is not None:
            caller.give_up.cancel()
        if caller in q.callers:
            q.callers.remove(caller)
        for i, c in enumerate(q.callers, 1):
            c.position = i
        self._notify(q)  # the callers behind move up
        if not q.callers:
            e.device_state(f"Queue:{q.name}", "NOT_INUSE")
        e.chan_event(
            "QueueCallerLeave",
            caller.ch,
            (("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.callers)))),
            "agent",
        )
        e.setvar(caller.ch, "QUEUEPOSITION", str(pos))

    def _timing_vars(self, ch: Channel, waited: float) -> None:
        e = self.engine
        e.setvar(ch, "QUEUEWAIT", str(int(waited)))
        e.setvar(ch, "QUEUEWAIT_MS", str(int(waited * 1000)))
        e.setvar(ch, "DIALEDTIME", str(int(waited)))
        e.setvar(ch, "DIALEDTIME_MS", str(int(waited * 1000)))
        e.setvar(ch, "ANSWEREDTIME", "0")
        e.setvar(ch, "ANSWEREDTIME_MS", "0")

    def _abandon(self, q: Queue, caller: Caller, why: str) -> None:
        e = self.engine
        ch = caller.ch
        waited = e.clock.now() - caller.joined
        if why == "hangup":
            e.chan_event("MusicOnHoldStop", ch)
            self._timing_vars(ch, waited)
            e.setvar(ch, "ABANDONED", "TRUE")
            q.stats_vars(ch)
        else:
            e.setvar(ch, "ABANDONED", "TRUE")
            q.stats_vars(ch)
        q.abandoned += 1
        e.chan_event(
            "QueueCallerAbandon",
            ch,
            (
                ("Queue", q.name),
                ("Position", str(caller.position)),
                ("OriginalPosition", str(caller.original_position)),
                ("HoldTime", str(self._secs(caller.joined))),
            ),
            "agent",
        )
        if why != "hangup":
            self._timing_vars(ch, waited)
            e.chan_event("MusicOnHoldStop", ch)
        q.stats_vars(ch)
        self._leave(q, caller)

    def _pick(self, q: Queue, caller: Caller) -> list[Member]:
        free = [m for m in q.members.values() if self.available(q, m) and caller.admits(m)]
        if not free:
            return []
        if q.strategy == "ringall":
            best = min(m.penalty for m in free)
            return [m for m in free if m.penalty == best]
        order = list(q.members.values())
        if q.strategy in ("rrmemory", "roundrobin", "rrordered"):
            n = len(order)
            for i in range(n):
                m = order[(q.rr_next + i) % n]
                if m in free:
                    return [m]
            return []
        if q.strategy == "random":
            return [self.rng.choice(free)]
        if q.strategy == "leastrecent":
            return [min(free, key=lambda m: m.last_call)]
        if q.strategy == "fewestcalls":
            return [min(free, key=lambda m: m.calls_taken)]
        return [free[0]]

    async def _serve(self, q: Queue, caller: Caller, deadline: float | None) -> str:
        e = self.engine
        ch = caller.ch
        while True:
            if ch.soft_hangup or not ch.alive:
                raise ChannelHungup
            now = e.clock.now()
            if deadline is not None and now >= deadline:
                return "timeout"
            members = self._pick(q, caller) if self._our_turn(q, caller) else []
            if not members:
                wait_for = None if deadline is None else deadline - now
                await self._wait_wake(caller, wait_for)
                # app_queue re-checks a waiting caller once a second (from its join time)
                now = e.clock.now()
                tick = (1.0 - ((now - caller.joined) % 1.0)) % 1.0
                if deadline is not None:
                    tick = min(tick, max(0.0, deadline - now))
                if tick > 1e-9:
                    await e.wait(ch, tick)
                continue
            ring_for = float(q.timeout)
            if deadline is not None:
                ring_for = min(ring_for, deadline - now)
            caller.ringing = True
            try:
                result = await self._ring(q, caller, members, ring_for)
            finally:
                caller.ringing = False
                self._notify(q)
            if result == "connected":
                return "connected"
            if result == "hangup":
                raise ChannelHungup
            # no answer: retry after a pause (unless the caller's time is up)
            now = e.clock.now()
            if deadline is not None and now >= deadline:
                return "timeout"
            pause = float(q.retry)
            if deadline is not None:
                pause = min(pause, deadline - now)
            await e.wait(ch, pause)

    def _our_turn(self, q: Queue, caller: Caller) -> bool:
        """app_queue's is_our_turn: callers ahead that are not ringing anyone yet each take
        one free member first. Without autofill (app_queue's default) only the head caller
        is served, one member at a time, and with ringall one caller at a time."""
        avl = self._free_count(q)
        if not q.autofill or q.strategy == "ringall":
            avl = min(avl, 1)
        ahead = 0
        for c in q.callers:
            if c is caller:
                break
            if not c.ringing:
                ahead += 1
        head = bool(q.callers) and q.callers[0] is caller
        return ahead < avl and (q.autofill or head)

    def _free_count(self, q: Queue) -> int:
        return sum(1 for m in q.members.values() if self.available(q, m))

    async def _wait_wake(self, caller: Caller, timeout: float | None) -> None:
        e = self.engine
        ch = caller.ch
        fut: asyncio.Future[tuple[str, str | None]] = asyncio.get_running_loop().create_future()
        ch.waiter = fut
        caller.wake_fut = fut
        h = (
            e.clock.call_later(timeout, _resolve, fut, ("timeout", None))
            if timeout is not None
            else None
        )
        try:
            res = await fut
        finally:
            caller.wake_fut = None
            if ch.waiter is fut:
                ch.waiter = None
            if h is not None:
                h.cancel()
        if res[0] == "hangup":
            raise ChannelHungup

    # ------------------------------------------------------------------ ringing members
    def _member_channel(
        self, q: Queue, caller: Caller, m: Member
    ) -> tuple[Channel, Channel | None]:
        e = self.engine
        ch = caller.ch
        mm = re.match(r"^Local/([^@]+)@([^/]+)(/n)?$", m.interface, re.I)
        if mm:
            exten, context = mm.group(1), mm.group(2)
            one, two = e.make_local_pair(exten, context, linkedid=ch.linkedid)
            e.chan_event("Newchannel", one)
            e.chan_event("Newchannel", two)
            one.cid_num, one.cid_name = ch.cid_num, ch.cid_name
            e.chan_event(
                "Newexten",
                one,
                (("Extension", exten), ("Application", "AppQueue"), ("AppData", "(Outgoing Line)")),
                "dialplan",
            )
            cid_pres = (("CID-CallingPres", "0 (Presentation Allowed, Not Screened)"),)
            e.chan_event("NewCallerid", one, cid_pres)
            dialed = m.interface.split("/", 1)[1]
            e.setvar(one, "DIALEDPEERNUMBER", dialed)
            e.setvar(two, "DIALEDPEERNUMBER", dialed)
            two.cid_num, two.cid_name = ch.cid_num, ch.cid_name
            two.conn_num, two.conn_name = ch.cid_num, ch.cid_name
            e.chan_event("NewCallerid", two, cid_pres)
            e.chan_event("NewConnectedLine", two)
            e._local_bridge(one, two, bool(mm.group(3)))
            # recorded quirk: once the member answers or rings, its ;1 shows the caller's exten
            one.exten_on_control = ch.exten
            one.app, one.appdata = "AppQueue", "(Outgoing Line)"
            one.dialplan_mode = False
            return one, two
        seq = next(self._chan_seq)
        name = f"{m.interface}-{seq:08x}"
        agent = e.new_channel(name, e.new_uniqueid(), ch.linkedid, m.interface, ChannelState.DOWN)
        agent.context, agent.exten, agent.priority = "default", "s", 1
        agent.cid_num, agent.cid_name = ch.cid_num, ch.cid_name
        agent.dialplan_mode = False
        e.chan_event("Newchannel", agent)
        return agent, None

    async def _ring(self, q: Queue, caller: Caller, members: list[Member], ring_for: float) -> str:
        e = self.engine
        ch = caller.ch
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[tuple[Member, Channel] | None] = loop.create_future()
        legs: list[tuple[Member, Channel, Channel | None, float]] = []
        for m in members:
            one, two = self._member_channel(q, caller, m)
            if not m.interface.lower().startswith("local/"):
                self.ringing_ifaces.add(m.interface)
            self._set_busy(m.interface, True)
            one.dial = Dialing(loop.create_future(), started=e.clock.now())
            # recorded quirk: AgentCalled already shows the member leg at the caller's exten
            dest = tuple(
                (k, ch.exten if k == "DestExten" and one.name.startswith("Local/") else v)
                for k, v in one.header("Dest")
            )
            dest = tuple(
                (
                    k,
                    {"DestConnectedLineNum": ch.cid_num, "DestConnectedLineName": ch.cid_name}.get(
                        k, v
                    ),
                )
                for k, v in dest
            )
            e.emit(
                "AgentCalled",
                ch.header()
                + dest
                + (("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name)),
                "agent",
            )
            e.emit(
                "DialBegin",
                ch.header() + one.header("Dest") + (("DialString", m.interface),),
            )
            one.conn_num, one.conn_name = ch.cid_num, ch.cid_name
            legs.append((m, one, two, e.clock.now()))
            one.ring_listeners.append(self._on_member_ring(ch, one))
            one.dial.future.add_done_callback(self._on_dial_done(answered, m, one))
            if two is not None:
                two.dialplan_mode = True
                e.start_pbx(two)
            else:
                e.spawn(self._simulated_agent(m, one))
        timer = e.clock.call_later(ring_for, _resolve, answered, None)
        hang = loop.create_future()

        def on_caller_hangup(_c: Channel) -> None:
            _resolve(hang, True)

        ch.hangup_listeners.append(on_caller_hangup)
        try:
            done, _ = await asyncio.wait({answered, hang}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if on_caller_hangup in ch.hangup_listeners:
                ch.hangup_listeners.remove(on_caller_hangup)
        winner = answered.result() if answered.done() and not answered.cancelled() else None
        if hang in done and winner is None:
            for m, one, _two, t0 in legs:
                self._cancel_leg(q, caller, m, one, t0, noanswer=False)
            return "hangup"
        if winner is None:
            for m, one, _two, t0 in legs:
                self._cancel_leg(q, caller, m, one, t0, noanswer=True)
            return "noanswer"
        m_win, one_win = winner
        if q.strategy in ("rrmemory", "roundrobin", "rrordered"):
            order = list(q.members)
            if m_win.interface in order:
                q.rr_next = order.index(m_win.interface) + 1
        for m, one, _two, t0 in legs:
            if one is not one_win:
                self._cancel_leg(q, caller, m, one, t0, noanswer=False)
        await self._connect(q, caller, m_win, one_win, legs)
        return "connected"

    @staticmethod
    def _on_dial_done(
        answered: asyncio.Future[tuple[Member, Channel] | None], m: Member, one: Channel
    ) -> Callable[[asyncio.Future[str]], None]:
        def cb(f: asyncio.Future[str]) -> None:
            if not f.cancelled() and f.result() == DialOutcome.ANSWER:
                _resolve(answered, (m, one))

        return cb

    def _on_member_ring(self, caller_ch: Channel, one: Channel) -> Callable[[Channel], None]:
        def cb(_c: Channel) -> None:
            e = self.engine
            e.chan_event(
                "Newexten",
                one,
                (
                    ("Extension", one.exten),
                    ("Application", "AppQueue"),
                    ("AppData", "(Outgoing Line)"),
                ),
                "dialplan",
            )
            e.chan_event("NewConnectedLine", one)
            e.emit(
                "DialState",
                caller_ch.header() + one.header("Dest") + (("DialStatus", "RINGING"),),
            )

        return cb

    def _cancel_leg(
        self, q: Queue, caller: Caller, m: Member, one: Channel, t0: float, noanswer: bool
    ) -> None:
        e = self.engine
        ch = caller.ch
        if noanswer:
            e.emit(
                "AgentRingNoAnswer",
                ch.header()
                + one.header("Dest")
                + (
                    ("Queue", q.name),
                    ("Interface", m.interface),
                    ("MemberName", m.name),
                    ("RingTime", str(int(round((e.clock.now() - t0) * 1000)))),
                ),
                "agent",
            )
            e.emit("DialEnd", ch.header() + one.header("Dest") + (("DialStatus", "NOANSWER"),))
        e.emit("DialEnd", ch.header() + one.header("Dest") + (("DialStatus", "CANCEL"),))
        if one.dial is not None and not one.dial.future.done():
            one.dial.future.set_result(DialOutcome.CANCEL)
        one.dial = None
        one.dialplan_mode = False
        e.destroy(one)
        self.ringing_ifaces.discard(m.interface)
        self._set_busy(m.interface, False)

    async def _connect(
        self,
        q: Queue,
        caller: Caller,
        m: Member,
        one: Channel,
        legs: list[tuple[Member, Channel, Channel | None, float]],
    ) -> None:
        """The member's leg ``one`` answered: connect it to the caller, bridge them, wait for
        either to hang up, and close the call as app_queue does (events in its order)."""
        ch = caller.ch
        holdtime = self._secs(caller.joined)
        self._agent_answered(q, caller, m, one, legs, holdtime)
        bfields = self._bridge(ch, one, m)
        t_connect = self.engine.clock.now()
        reason = await _until_hangup(ch, one)
        talk = self._secs(t_connect)
        self._unbridge(q, caller, m, one, bfields, reason, holdtime, talk)
        self._after_call(q, caller, m, one, t_connect, reason)

    def _agent_answered(
        self,
        q: Queue,
        caller: Caller,
        m: Member,
        one: Channel,
        legs: list[tuple[Member, Channel, Channel | None, float]],
        holdtime: int,
    ) -> None:
        e = self.engine
        ch = caller.ch
        now = e.clock.now()
        ring_t0 = next(t0 for mm, o, _t, t0 in legs if o is one)
        one.dial = None
        first_control = one.state != ChannelState.RINGING
        if one.exten_on_control:
            one.exten = one.exten_on_control
        e.set_state(one, ChannelState.UP)
        if one.name.startswith("Local/") and first_control:
            e.chan_event(
                "Newexten",
                one,
                (
                    ("Extension", one.exten),
                    ("Application", "AppQueue"),
                    ("AppData", "(Outgoing Line)"),
                ),
                "dialplan",
            )
            one.conn_num, one.conn_name = ch.cid_num, ch.cid_name
            e.chan_event("NewConnectedLine", one)
        e.emit("DialEnd", ch.header() + one.header("Dest") + (("DialStatus", "ANSWER"),))
        if m.interface in self.ringing_ifaces:
            self.ringing_ifaces.discard(m.interface)
            for qq in self.queues.values():  # the phone goes from ringing to in use
                if m.interface in qq.members:
                    self.member_event("QueueMemberStatus", qq, qq.members[m.interface])
        e.chan_event("MusicOnHoldStop", ch)
        if q.setinterfacevar:
            for target in (ch, one):
                for k, v in (
                    ("MEMBERINTERFACE", m.interface),
                    ("MEMBERNAME", m.name),
                    ("MEMBERCALLS", str(m.calls_taken)),
                    ("MEMBERLASTCALL", str(m.last_call)),
                    ("MEMBERPENALTY", str(m.penalty)),
                    ("MEMBERDYNAMIC", "1" if m.dynamic else "0"),
                    ("MEMBERREALTIME", "0"),
                ):
                    e.setvar(target, k, v)
        if q.setqueueentryvar:
            for target in (ch, one):
                e.setvar(target, "QEHOLDTIME", str(holdtime))
                e.setvar(target, "QEORIGINALPOS", str(caller.original_position))
        q.stats_vars(ch)
        q.stats_vars(one)
        self._leave(q, caller)
        e.setvar(ch, "QUEUEWAIT", str(holdtime))
        e.setvar(ch, "QUEUEWAIT_MS", str(int((now - caller.joined) * 1000)))
        q.holdtime = Queue._avg(q.holdtime, holdtime)
        e.emit(
            "AgentConnect",
            ch.header()
            + one.header("Dest")
            + (
                ("Queue", q.name),
                ("Interface", m.interface),
                ("MemberName", m.name),
                ("HoldTime", str(holdtime)),
                ("RingTime", str(int(now - ring_t0))),
            ),
            "agent",
        )

    def _bridge(
        self, ch: Channel, one: Channel, m: Member
    ) -> Callable[[int], tuple[tuple[str, str], ...]]:
        e = self.engine
        bridge_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        bfields = bridge_fields(bridge_id)
        e.emit("BridgeCreate", bfields(0))
        e.emit("BridgeEnter", bfields(1) + one.header())
        e.emit("BridgeEnter", bfields(2) + ch.header())
        one.bridge_id = ch.bridge_id = bridge_id
        m.in_call = True
        one.bridged, ch.bridged = ch, one
        e.setvar(one, "BRIDGEPEER", ch.name)
        e.setvar(ch, "BRIDGEPEER", one.name)
        return bfields

    def _unbridge(
        self,
        q: Queue,
        caller: Caller,
        m: Member,
        one: Channel,
        bfields: Callable[[int], tuple[tuple[str, str], ...]],
        reason: str,
        holdtime: int,
        talk: int,
    ) -> None:
        e = self.engine
        ch = caller.ch
        e.setvar(one, "BRIDGEPEER", "")
        e.setvar(ch, "BRIDGEPEER", "")
        one.bridged = ch.bridged = None
        first, second = (ch, one) if reason == "caller" else (one, ch)
        e.emit("BridgeLeave", bfields(1) + first.header())
        if reason == "agent" and one.alive:
            e.destroy(one)
        m.in_call = False
        m.calls_taken += 1
        m.last_call = int(e.clock.epoch())
        q.completed += 1
        if holdtime <= q.servicelevel:
            q.completed_in_sl += 1
        # app_queue seeds the talk-time average with the first call (recorded: 11 after one)
        q.talktime = Queue._avg(q.talktime, talk) if q.talktime else talk
        extra = one.header("Dest") if one.alive else ()
        e.emit(
            "AgentComplete",
            ch.header()
            + extra
            + (
                ("Queue", q.name),
                ("Interface", m.interface),
                ("MemberName", m.name),
                ("HoldTime", str(holdtime)),
                ("TalkTime", str(talk)),
                ("Reason", reason),
            ),
            "agent",
        )
        e.emit("BridgeLeave", bfields(0) + second.header())
        e.emit("BridgeDestroy", bfields(0))
        if reason == "caller" and one.alive:
            one.hangupcause = one.hangupcause or Cause.NORMAL_CLEARING
            e.destroy(one)
        one.bridge_id = ch.bridge_id = ""

    def _after_call(
        self, q: Queue, caller: Caller, m: Member, one: Channel, t_connect: float, reason: str
    ) -> None:
        e = self.engine
        ch = caller.ch
        caller_options = caller.options
        q.stats_vars(ch)
        answered_ms = int((e.clock.now() - t_connect) * 1000)
        e.setvar(ch, "ANSWEREDTIME", str(answered_ms // 1000))
        e.setvar(ch, "ANSWEREDTIME_MS", str(answered_ms))
        dialed_ms = int((e.clock.now() - caller.joined) * 1000)
        e.setvar(ch, "DIALEDTIME", str(dialed_ms // 1000))
        e.setvar(ch, "DIALEDTIME_MS", str(dialed_ms))
        q.stats_vars(ch)
        wrap = m.wrapuptime or q.wrapuptime
        if wrap > 0:
            # app_queue compares whole time_t seconds: free once now - lastcall >= wrapuptime
            until = m.last_call + wrap - e.clock.epoch() + e.clock.now()
            self.wrapup_until[m.interface] = until
            e.clock.call_later(until - e.clock.now(), self._wrapup_over, m.interface)
        self._set_busy(m.interface, False)
        if reason == "caller" or "c" not in caller_options:
            # without option c the caller is hung up when the agent hangs up (recorded)
            if ch.hangupcause == 0:
                ch.hangupcause = Cause.NORMAL_CLEARING
            ch.soft_hangup = True
            raise ChannelHungup

    # ------------------------------------------------------------------ simulated agents
    async def _simulated_agent(self, m: Member, agent: Channel) -> None:
        """A non-Local member: rings, maybe answers, talks, hangs up (AgentBehaviour)."""
        e = self.engine
        b = self.behaviour.get(m.interface, self.default_behaviour)
        agent.task = asyncio.current_task()
        try:
            e.set_state(agent, ChannelState.RINGING)
            if agent.dial is not None:
                for cb in list(agent.ring_listeners):
                    cb(agent)
            ring = max(0.0, b.ring_s(self.rng))
            if not b.answers(self.rng):
                await e.wait(agent, None)
                return
            await e.wait(agent, ring)
            if agent.dial is None or agent.dial.future.done():
                return
            agent.answered_at = e.clock.now()
            agent.dial.future.set_result(DialOutcome.ANSWER)
            await e.wait(agent, max(0.0, b.talk_s(self.rng)))
            agent.hangupcause = Cause.NORMAL_CLEARING
            e.request_hangup(
                agent, Cause.NORMAL_CLEARING
            )  # the bridge (AgentComplete) tears the leg down
        except ChannelHungup:
            pass
        finally:
            agent.task = None
            if agent.alive and agent.bridged is None and agent.dial is None:
                e.destroy(agent)

    # ------------------------------------------------------------------ phones rung directly
    def is_phone(self, iface: str) -> bool:
        """A simulated agent's phone: a member of some queue that is no Local channel."""
        if iface.lower().startswith("local/"):
            return False
        return iface in self.behaviour or any(iface in q.members for q in self.queues.values())

    def ring_phone(self, iface: str, ch: Channel) -> None:
        """An Originate rings the phone ``iface`` on ``ch`` (not through a queue): it shows
        ringing, then in use until ``ch`` hangs up, and its agent answers as they would a
        queue call (``AgentBehaviour``: ring time, or never)."""
        self.ringing_ifaces.add(iface)
        self._set_busy(iface, True)
        done = [False]

        def gone(_c: Channel) -> None:
            if not done[0]:
                done[0] = True
                self.ringing_ifaces.discard(iface)
                self._set_busy(iface, False)

        ch.hangup_listeners.append(gone)
        self.engine.spawn(self._answer_phone(iface, ch))

    async def _answer_phone(self, iface: str, ch: Channel) -> None:
        e = self.engine
        b = self.behaviour.get(iface, self.default_behaviour)
        e.set_state(ch, ChannelState.RINGING)
        if not b.answers(self.rng):
            return  # rings until the Originate's timeout
        await e.clock.sleep(max(0.0, b.ring_s(self.rng)))
        if ch.dial is None or ch.dial.future.done() or not ch.alive:
            return
        self.ringing_ifaces.discard(iface)
        for q in self.queues.values():  # the phone goes from ringing to in use
            if iface in q.members:
                self.member_event("QueueMemberStatus", q, q.members[iface])
        ch.answered_at = e.clock.now()
        ch.dial.future.set_result(DialOutcome.ANSWER)

    def phone_talks(self, ch: Channel) -> Any:
        """``ch`` (a simulated agent's phone) was bridged to a caller: its agent hangs up after
        their talk time (the timer, to cancel when the bridge ends first); None for a channel
        that is no simulated phone."""
        iface = ch.device
        if not self.is_phone(iface):
            return None
        b = self.behaviour.get(iface, self.default_behaviour)
        return self.engine.clock.call_later(
            max(0.0, b.talk_s(self.rng)), self.engine.request_hangup, ch, Cause.NORMAL_CLEARING
        )

    # ------------------------------------------------------------------ AMI actions
    async def ami_action(self, name: str, s: Any, a: Any, base: list[tuple[str, str]]) -> None:
        from dialer.sim.ami_server import header

        def ok(msg: str) -> None:
            s.respond([("Response", "Success"), *base, ("Message", msg)])

        def err(msg: str) -> None:
            s.respond([("Response", "Error"), *base, ("Message", msg)])

        qname = header(a, "Queue") or ""
        iface = header(a, "Interface") or ""
        if name == "queuestatus":
            self._queue_status(s, base, qname, header(a, "Member") or "")
        elif name == "queuesummary":
            self._queue_summary(s, base, qname)
        elif name == "queueadd":
            if qname not in self.queues:
                err("Unable to add interface to queue: No such queue")
            elif self.add_member(
                qname,
                iface,
                header(a, "MemberName") or "",
                int(header(a, "Penalty") or 0),
                _yes(header(a, "Paused")),
            ):
                ok("Added interface to queue")
            else:
                err("Unable to add interface: Already there")
        elif name == "queueremove":
            if qname not in self.queues:
                err("Unable to remove interface: No such queue")
            elif self.remove_member(qname, iface):
                ok("Removed interface from queue")
            else:
                err("Unable to remove interface: Not there")
        elif name == "queuepause":
            paused = _yes(header(a, "Paused"))
            if self.pause_member(qname or None, iface, paused, header(a, "Reason") or ""):
                ok("Interface paused successfully" if paused else "Interface unpaused successfully")
            else:
                err("Interface not found")

    def _queue_status(self, s: Any, base: list[tuple[str, str]], qname: str, member: str) -> None:
        e = self.engine
        s.list_start(base, "Queue status will follow")
        n = 0
        for q in self.queues.values():
            if qname and q.name != qname:
                continue
            perf = q.srvlevelperf()
            s.respond(
                [
                    ("Event", "QueueParams"),
                    ("Queue", q.name),
                    ("Max", str(q.maxlen)),
                    ("Strategy", q.strategy),
                    ("Calls", str(len(q.callers))),
                    ("Holdtime", str(q.holdtime)),
                    ("TalkTime", str(q.talktime)),
                    ("Completed", str(q.completed)),
                    ("Abandoned", str(q.abandoned)),
                    ("ServiceLevel", str(q.servicelevel)),
                    ("ServicelevelPerf", perf),
                    ("ServicelevelPerf2", perf),
                    ("Weight", str(q.weight)),
                    *base,
                ]
            )
            n += 1
            for m in q.members.values():
                if member and m.interface != member:
                    continue
                s.respond([("Event", "QueueMember"), *self.member_fields(q, m, True), *base])
                n += 1
            for c in q.callers:
                ch = c.ch
                s.respond(
                    [
                        ("Event", "QueueEntry"),
                        ("Queue", q.name),
                        ("Position", str(c.position)),
                        ("Channel", ch.name),
                        ("Uniqueid", ch.uniqueid),
                        ("CallerIDNum", ch.cid_num),
                        ("CallerIDName", ch.cid_name),
                        ("ConnectedLineNum", ch.conn_num),
                        ("ConnectedLineName", ch.conn_name),
                        ("Wait", str(int(e.clock.now() - c.joined))),
                        ("Priority", "0"),
                        *base,
                    ]
                )
                n += 1
        s.list_complete("QueueStatusComplete", base, n)

    def _queue_summary(self, s: Any, base: list[tuple[str, str]], qname: str) -> None:
        e = self.engine
        s.list_start(base, "Queue summary will follow")
        n = 0
        for q in self.queues.values():
            if qname and q.name != qname:
                continue
            logged = [
                m
                for m in q.members.values()
                if self.member_status(m) not in (MemberStatus.INVALID, MemberStatus.UNAVAILABLE)
            ]
            avail = [
                m
                for m in logged
                if not m.paused and self.member_status(m) == MemberStatus.NOT_INUSE
            ]
            longest = max((int(e.clock.now() - c.joined) for c in q.callers), default=0)
            s.respond(
                [
                    ("Event", "QueueSummary"),
                    ("Queue", q.name),
                    ("LoggedIn", str(len(logged))),
                    ("Available", str(len(avail))),
                    ("Callers", str(len(q.callers))),
                    ("HoldTime", str(q.holdtime)),
                    ("TalkTime", str(q.talktime)),
                    ("LongestHoldTime", str(longest)),
                    *base,
                ]
            )
            n += 1
        s.list_complete("QueueSummaryComplete", base, n)


__all__ = ["AgentBehaviour", "QueueManager", "cause_text"]


def queue_patience(e: Engine, caller: Channel) -> float | None:
    """How long the customer behind ``caller`` (a ``;1`` leg) waits in a queue."""
    peer = caller.peer
    if peer is None or peer.party is None:
        return None
    p: Persona = peer.party
    return p.queue_patience_s


def customer_gives_up(e: Engine, caller: Channel) -> None:
    peer = caller.peer
    if peer is not None and peer.alive:
        peer.hangupcause = Cause.NORMAL_CLEARING
        e.request_hangup(peer, Cause.NORMAL_CLEARING)


async def _until_hangup(ch: Channel, one: Channel) -> str:
    """Wait until one side of a bridge hangs up: ``"agent"`` or ``"caller"``."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[str] = loop.create_future()

    def agent_gone(_c: Channel) -> None:
        _resolve(ended, "agent")

    def caller_gone(_c: Channel) -> None:
        _resolve(ended, "caller")

    one.hangup_listeners.append(agent_gone)
    ch.hangup_listeners.append(caller_gone)
    if not one.alive:
        _resolve(ended, "agent")
    if ch.soft_hangup or not ch.alive:
        _resolve(ended, "caller")
    reason = await ended
    for cb, c in ((agent_gone, one), (caller_gone, ch)):
        if cb in c.hangup_listeners:
            c.hangup_listeners.remove(cb)
    return reason
