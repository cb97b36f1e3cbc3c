"""Replay a recorded Asterisk transcript against the simulated PBX and compare.

THE COMPARATOR AND ITS TOLERANCES (what differs by nature, and nothing else):

1. Ignored fields: ``Timestamp`` (events and Ping), ``Uptime``/``LastReload``, ``Seconds``,
   ``Duration``, ``CommandId`` (AGIExec*, random in Asterisk), ``LoginTime``/``LastCall``/
   ``LastPause`` (epoch values), Getvar ``EPOCH`` values, ``agi_threadid``.
2. Renamed values: the ``-0000000N`` channel suffix is replaced by the channel's creation
   rank in the transcript (``-#0``, ``-#1``...); ``Uniqueid``/``Linkedid`` values Asterisk
   numbered itself (``<epoch>.<seq>``) likewise by rank (``U0``, ``U1``...). ChannelIds given
   by the client are compared verbatim. ``BridgeId`` uuids are replaced by their rank.
3. Order: events are compared **in order within each channel's stream** (events naming the
   channel in ``Channel``; ``DialBegin``/``DialEnd``/``DialState`` and ``AgentCalled`` etc. by
   ``DestChannel``; ``LocalBridge`` by its ``;1`` leg). Interleaving *between* streams - the
   two legs of a Local pair run on separate threads in Asterisk and race - is free.
   Responses and list events are compared in order per ``ActionID``.
4. ``OriginateResponse`` is compared field by field but not placed in a stream: the
   recordings show it racing the ``;1`` leg's first events (before ``Newstate`` in one run,
   after the first ``Newexten`` in another). Likewise ``AgentComplete``, which races the
   member leg's hang-up (``ami-queue`` shows it after the member's ``Hangup`` without
   ``Dest*`` fields, ``ami-queue-wrapup`` before it with them): compared without ``Dest*``.
   ``MEMBERLASTCALL`` values are epoch seconds (like ``LastCall``) and not compared.
5. ``DeviceStateChange``: only the last state of each device the recording reports is
   compared (the number of INUSE/NOT_INUSE repetitions, and whether ``Queue:<q>_avail``
   appears at all, differ from run to run in the recordings).
5a. The items of ``CoreShowChannels`` and ``Status`` lists come in the order of Asterisk's
   channel container (a hash table): compared as a multiset per action.
5b. ``QueueStatus`` without a ``Queue:`` header lists every queue with its statistics since
   the recording switch booted (other recordings' calls): its list is not compared.
6. Timing: each stream's events must happen within ``TIME_TOL_S`` (0.35 s) of the recorded
   time, measured from the transcript's first action.
   Actions are sent 1 ms before their recorded time (the final ``Logoff`` 20 ms before: in
   the recordings it raced a FastAGI peer's last close).
7. AGI side: the environment must match line by line (after the renames above) and every
   reply must match exactly, except ``endpos=`` values, which may differ by 1600 samples
   (0.2 s) because they depend on when a digit arrives.
8. Whole-second durations (``HoldTime``, ``TalkTime``, ``Wait``, ``LongestHoldTime``, the
   ``QUEUE*TIME``/``QEHOLDTIME`` values) may differ by 1 s: Asterisk subtracts ``time_t``
   seconds, so the result depends on where the second boundaries fall; ``RingTime`` in ms
   within 1000 ms.
8a. ``QUEUECOMPLETED``/``QUEUESRVLEVELPERF`` values are not compared: whether they already
   count the call that just ended races the member leg's hang-up in Asterisk (counted in
   ``ami-queue``, not yet in calls 2 and 3 of ``ami-queue-wrapup``). ``QueueParams``
   ``Completed`` in a later ``QueueStatus`` is compared.
8b. ``VarSet`` values of ``*_MS`` variables (``DIALEDTIME_MS``...) are compared to 0.1 s.
9. ``Command`` output ``N calls processed`` counts calls since the switch booted: the number
   is not compared.

Channel names in replayed actions (e.g. ``Hangup Channel: Local/480@customer-0000000c;1``)
are translated to the simulator's name of the channel with the same creation rank.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.sim import SimPbx, VirtualClock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
TRANSCRIPTS = FIXTURES / "transcripts"
CONF = FIXTURES / "conf"
RECORDED_SECRET = "EXAMPLE-SECRET"
TIME_TOL_S = 0.35
ENDPOS_TOL = 1600

IGNORED = {
    "Timestamp",
    "Uptime",
    "LastReload",
    "Seconds",
    "Duration",
    "CommandId",
    "LoginTime",
    "LastCall",
    "LastPause",
}
FREE_EVENTS = {"OriginateResponse", "AgentComplete"}
UNORDERED_LISTS = {"CoreShowChannel", "Status"}

Msg = list[tuple[str, str]]


# ============================================================================ AMI transcript
@dataclass
class Send:
    t: float
    action: Msg
    received: list[Msg] = field(default_factory=list)
    conn: int = 0


@dataclass
class ConnEvent:
    t: float
    kind: str  # "connect" | "eof"
    conn: int


@dataclass
class AmiTranscript:
    sends: list[Send]
    conn_events: list[ConnEvent]
    end_t: float


def _pairs(lines: list[str]) -> Msg:
    out: Msg = []
    for ln in lines:
        if ": " in ln:
            k, v = ln.split(": ", 1)
        elif ln.endswith(":"):
            k, v = ln[:-1], ""
        else:
            continue
        out.append((k, v))
    return out


def parse_ami(path: Path) -> AmiTranscript:
    sends: list[Send] = []
    conns: list[ConnEvent] = []
    cur: Send | None = None
    block: list[str] = []
    in_action = False
    end_t = 0.0
    conn = -1

    def flush() -> None:
        nonlocal block
        if block and cur is not None:
            cur.received.append(_pairs(block))
        block = []

    for raw in path.read_text(encoding="utf-8").split("\n"):
        m = re.match(r"^### \[\s*([\d.]+)\] (.*)$", raw)
        if m:
            flush()
            t = float(m.group(1))
            end_t = max(end_t, t)
            if m.group(2) == "SEND":
                cur = Send(t, [], conn=conn)
                sends.append(cur)
                in_action = True
            else:
                in_action = False
                if m.group(2).startswith("BANNER"):
                    conn += 1
                    conns.append(ConnEvent(t, "connect", conn))
                elif m.group(2) == "EOF":
                    conns.append(ConnEvent(t, "eof", conn))
            continue
        if in_action and cur is not None:
            if raw.startswith(("Response:", "Event:")) or raw == "":
                in_action = False
            else:
                cur.action.append(_pairs([raw])[0])
                continue
        if raw == "":
            flush()
        else:
            block.append(raw)
    flush()
    return AmiTranscript(sends, conns, end_t)


# ============================================================================ FastAGI transcript
@dataclass
class Exchange:
    t_cmd: float
    command: str
    reply: list[str]
    t_reply: float


@dataclass
class AgiSession:
    start: float
    env: list[tuple[str, str]]
    exchanges: list[Exchange]
    closed_t: float
    hangup_lines: int
    channel: str = ""
    script: str = ""


def parse_fastagi(path: Path) -> list[AgiSession]:
    sessions: list[AgiSession] = []
    cur: AgiSession | None = None
    in_env = False
    for raw in path.read_text(encoding="utf-8").split("\n"):
        m = re.match(r"^\[\s*([\d.]+)\] (<<|>>|\*\*) ?(.*)$", raw)
        if not m:
            continue
        t, kind, text = float(m.group(1)), m.group(2), m.group(3)
        if kind == "**":
            if text.startswith("connection from"):
                cur = AgiSession(t, [], [], t, 0)
                sessions.append(cur)
                in_env = True
            elif text == "closed" and cur is not None:
                cur.closed_t = t
                cur = None
            continue
        if cur is None:
            continue
        if kind == "<<":
            if in_env:
                if text == "":
                    in_env = False
                else:
                    k, v = text.split(": ", 1) if ": " in text else (text.rstrip(":"), "")
                    cur.env.append((k, v))
                    if k == "agi_channel":
                        cur.channel = v
                    if k == "agi_network_script":
                        cur.script = v
                continue
            if text == "HANGUP":
                cur.hangup_lines += 1
                continue
            if cur.exchanges:
                cur.exchanges[-1].reply.append(text)
                cur.exchanges[-1].t_reply = t
        else:
            cur.exchanges.append(Exchange(t, text, [], t))
    return sessions


def agi_sessions_for(ami_path: Path) -> list[AgiSession]:
    """The recorded FastAGI sessions whose channel appears in this AMI transcript."""
    text = ami_path.read_text(encoding="utf-8")
    out = []
    for f in sorted(TRANSCRIPTS.glob("fastagi-*.txt")):
        for s in parse_fastagi(f):
            if s.channel and f"Channel: {s.channel}\n" in text:
                out.append(s)
    return out


class ScriptedAgiServer:
    """A FastAGI server that replays recorded sessions and records what Asterisk sent."""

    def __init__(self, pbx: SimPbx, sessions: list[AgiSession]) -> None:
        self.pbx = pbx
        self.pending = {s.script: [] for s in sessions}  # type: dict[str, list[AgiSession]]
        for s in sessions:
            self.pending[s.script].append(s)
        self.results: list[tuple[AgiSession, list[tuple[str, str]], list[list[str]], int]] = []
        self.errors: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = self.pbx.clock
        env: list[tuple[str, str]] = []
        while True:
            line = (await reader.readline()).decode().rstrip("\n")
            if line == "":
                break
            k, v = line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
            env.append((k, v))
        script = dict(env).get("agi_network_script", "")
        queue = self.pending.get(script) or []
        if not queue:
            self.errors.append(f"unexpected FastAGI session for {script!r}")
            writer.close()
            return
        rec = queue.pop(0)
        replies: list[list[str]] = []
        hangups = 0
        prev_t = rec.start
        assert isinstance(clock, VirtualClock)
        origin = clock.now() - 0.0
        # idle gaps (the script waiting on purpose) are anchored to the session's start, so a
        # script that acts "1.5 s after the call started" does so in simulated time too
        for ex in rec.exchanges:
            gap = ex.t_cmd - prev_t
            if gap > 0.08:
                await clock.peer_sleep(max(0.0, origin + (ex.t_cmd - rec.start) - clock.now()))
            writer.write((ex.command + "\n").encode())
            got: list[str] = []
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                text = raw.decode().rstrip("\n")
                if text == "HANGUP":
                    hangups += 1
                    continue
                got.append(text)
                if not text.startswith("520-") and not (
                    got[0].startswith("520-") and text != "520 End of proper usage."
                ):
                    break
            replies.append(got)
            prev_t = ex.t_reply
        linger = rec.closed_t - prev_t
        if linger > 0.08:
            await clock.peer_sleep(max(0.0, origin + (rec.closed_t - rec.start) - clock.now()))
        # collect a late HANGUP line, if any
        try:
            while True:
                raw = await asyncio.wait_for(reader.readline(), 0.01)
                if not raw:
                    break
                if raw.decode().strip() == "HANGUP":
                    hangups += 1
        except TimeoutError:
            pass
        writer.close()
        self.results.append((rec, env, replies, hangups))


# ============================================================================ normalisation
class Renamer:
    """Ranks channel suffixes, Asterisk-numbered uniqueids and bridge ids by first sight."""

    def __init__(self) -> None:
        self.suffix: dict[str, str] = {}
        self.uid: dict[str, str] = {}
        self.bridge: dict[str, str] = {}

    def prepare(self, msgs: list[Msg]) -> None:
        sufs: set[str] = set()
        uids: set[str] = set()
        for m in msgs:
            for k, v in m:
                if k in IGNORED:
                    continue
                for s in re.findall(r"-([0-9a-f]{8})(?=;|$)", v):
                    sufs.add(s)
                if re.fullmatch(r"\d{9,}\.\d+", v):
                    uids.add(v)
        for i, s in enumerate(sorted(sufs, key=lambda x: int(x, 16))):
            self.suffix[s] = f"#{i}"
        for i, u in enumerate(sorted(uids, key=lambda x: int(x.split(".")[1]))):
            self.uid[u] = f"U{i}"

    def value(self, key: str, v: str) -> str:
        v = re.sub(r"-([0-9a-f]{8})(?=;|$| )", lambda m: "-" + self.suffix.get(m.group(1), "?"), v)
        if v in self.uid:
            return self.uid[v]
        if key in ("BridgeId", "BridgeID", "BridgeUniqueid") and v:
            self.bridge.setdefault(v, f"B{len(self.bridge)}")
            return self.bridge[v]
        return v

    def msg(self, m: Msg) -> tuple[tuple[str, str], ...]:
        out = []
        for k, v in m:
            if k in IGNORED:
                continue
            if k == "Value" and dict(m).get("Variable") in ("EPOCH", "MEMBERLASTCALL"):
                continue
            if dict(m).get("Event") == "AgentComplete" and k.startswith("Dest"):
                continue
            if k == "Value" and dict(m).get("Variable", "").endswith("_MS") and v.isdigit():
                v = str(int(v) // 100 * 100)  # ms timings compared to 0.1 s
            if k == "Output":
                v = re.sub(r"^\d+ calls processed$", "N calls processed", v)
            out.append((k, self.value(k, v)))
        return tuple(out)


def stream_key(m: dict[str, str]) -> str | None:
    ev = m.get("Event")
    if ev is None or ev in FREE_EVENTS or ev == "DeviceStateChange":
        return None
    if "ActionID" in m and ev not in FREE_EVENTS:
        return "action:" + m["ActionID"]
    for k in ("DestChannel", "LocalOneChannel", "Channel"):
        if k in m:
            return m[k]
    return None


@dataclass
class Comparison:
    problems: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.problems


def compare_ami(
    recorded: list[tuple[float, Msg]],
    simulated: list[tuple[float, Msg]],
    time_check: bool = True,
    all_status_ids: frozenset[str] = frozenset(),
) -> Comparison:
    """Compare two message sequences (time relative to the first action, message)."""
    res = Comparison()
    rr, sr = Renamer(), Renamer()
    rr.prepare([m for _, m in recorded])
    sr.prepare([m for _, m in simulated])

    def split(
        seq: list[tuple[float, Msg]], ren: Renamer
    ) -> tuple[dict[str, list[Any]], Counter[Any], dict[str, str], list[Any]]:
        streams: dict[str, list[Any]] = {}
        free: Counter[Any] = Counter()
        devices: dict[str, str] = {}
        responses: list[Any] = []
        for t, m in seq:
            d = dict(m)
            norm = ren.msg(m)
            if "Event" not in d:
                responses.append(norm)
                continue
            if d["Event"] == "DeviceStateChange":
                devices[d["Device"]] = d["State"]
                continue
            key = stream_key(d)
            if key is None:
                free[norm] += 1
                continue
            if d["Event"] in UNORDERED_LISTS:
                # list items come in Asterisk's channel-container (hash) order
                free[(key, norm)] += 1
                continue
            streams.setdefault(ren.value("Channel", key), []).append((t, norm))
        return streams, free, devices, responses

    skip_ids = {
        dict(m).get("ActionID")
        for _, m in recorded
        if dict(m).get("Event") == "QueueParams" and dict(m).get("ActionID") in all_status_ids
    }
    recorded = [
        (t, m)
        for t, m in recorded
        if not ("Event" in dict(m) and dict(m).get("ActionID") in skip_ids)
    ]
    simulated = [
        (t, m)
        for t, m in simulated
        if not ("Event" in dict(m) and dict(m).get("ActionID") in skip_ids)
    ]
    r_streams, r_free, r_dev, r_resp = split(recorded, rr)
    s_streams, s_free, s_dev, s_resp = split(simulated, sr)
    if not _seq_eq(r_resp, s_resp):
        res.problems.append(_diff("responses", r_resp, s_resp))
    for key in sorted(set(r_streams) | set(s_streams)):
        a = [n for _, n in r_streams.get(key, [])]
        b = [n for _, n in s_streams.get(key, [])]
        if not _seq_eq(a, b):
            res.problems.append(_diff(f"stream {key}", a, b))
        elif time_check:
            for (ta, na), (tb, _) in zip(r_streams[key], s_streams[key], strict=False):
                if abs(ta - tb) > TIME_TOL_S:
                    res.problems.append(
                        f"stream {key}: {dict(na).get('Event')} at {tb:.3f}s, recorded {ta:.3f}s"
                    )
                    break
    if r_free != s_free:
        res.problems.append(
            f"free events differ:\n  recorded-only {list((r_free - s_free).elements())}\n"
            f"  simulated-only {list((s_free - r_free).elements())}"
        )
    s_dev = {k: v for k, v in s_dev.items() if k in r_dev}
    if r_dev != s_dev:
        res.problems.append(f"device final states differ: recorded {r_dev} simulated {s_dev}")
    return res


#: queue statistics right after a call: whether they already count it races the member
#: leg's hang-up (counted in ami-queue, not yet in ami-queue-wrapup calls 2 and 3)
RACY_STATS = {"QUEUECOMPLETED", "QUEUESRVLEVELPERF"}

#: whole-second durations Asterisk computes from time_t values: compared to within 1 s
SECOND_FIELDS = {"HoldTime", "TalkTime", "Wait", "LongestHoldTime", "Holdtime", "RingTime"}


def _eq(x: Any, y: Any) -> bool:
    if x == y:
        return True
    if x is None or y is None or len(x) != len(y):
        return False
    for (k1, v1), (k2, v2) in zip(x, y, strict=True):
        if k1 != k2:
            return False
        if v1 == v2:
            continue
        if k1 in SECOND_FIELDS and v1.isdigit() and v2.isdigit():
            tol = 1000 if k1 == "RingTime" and int(v1) > 100 else 1
            if abs(int(v1) - int(v2)) <= tol:
                continue
        var = dict(x).get("Variable", "")
        if k1 == "Value" and var in RACY_STATS:
            continue
        if k1 == "Value" and v1.isdigit() and v2.isdigit():
            var = dict(x).get("Variable", "")
            if (
                var
                in (
                    "QEHOLDTIME",
                    "QUEUEHOLDTIME",
                    "QUEUETALKTIME",
                    "QUEUEWAIT",
                    "DIALEDTIME",
                    "ANSWEREDTIME",
                )
                and abs(int(v1) - int(v2)) <= 1
            ):
                continue
        return False
    return True


def _seq_eq(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))


def _diff(title: str, a: list[Any], b: list[Any]) -> str:
    lines = [f"{title} differs:"]
    n = max(len(a), len(b))
    for i in range(n):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x is not None and y is not None and not _eq(x, y):
            dx, dy = dict(x), dict(y)
            keys = [k for k in dict.fromkeys([*dx, *dy]) if dx.get(k) != dy.get(k)]
            lines.append(
                f"  #{i} {dx.get('Event') or dx.get('Response')}: "
                + ", ".join(f"{k}: recorded {dx.get(k)!r} simulated {dy.get(k)!r}" for k in keys)
            )
            if len(lines) > 12:
                break
            continue
        if not _eq(x, y):
            lines.append(f"  #{i} recorded : {_short(x)}")
            lines.append(f"  #{i} simulated: {_short(y)}")
            if len(lines) > 12:
                break
    return "\n".join(lines)


def _short(m: Any) -> str:
    if m is None:
        return "(none)"
    d = dict(m)
    head = d.get("Event") or ("Response " + d.get("Response", "?"))
    rest = {
        k: v
        for k, v in m
        if k not in ("Event", "Privilege")
        and not k.startswith(
            (
                "Caller",
                "Connected",
                "Language",
                "AccountCode",
                "Linkedid",
                "Dest",
                "LocalOne",
                "LocalTwo",
            )
        )
    }
    return f"{head} {rest}"


# ============================================================================ the replay
@dataclass
class ReplayResult:
    ami: Comparison
    agi_problems: list[str]
    pbx: SimPbx


def _event_time(m: Msg, base: float) -> float:
    ts = dict(m).get("Timestamp")
    return float(ts) - base if ts else -1.0


async def replay(
    name: str,
    *,
    agi: bool = True,
    connections: list[str] | None = None,
    time_check: bool = True,
    read_without: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
) -> ReplayResult:
    """Replay ``transcripts/<name>.txt`` against a fresh SimPbx on the recorded conf."""
    from simpbx_helpers import RawAmi

    path = TRANSCRIPTS / f"{name}.txt"
    tr = parse_ami(path)
    for extra_name in also:
        # another connection recorded in its own file, on the same time base
        more = parse_ami(TRANSCRIPTS / f"{extra_name}.txt")
        offset = 1 + max((c.conn for c in tr.conn_events), default=0)
        for c in more.conn_events:
            c.conn += offset
        for snd in more.sends:
            snd.conn += offset
        tr.conn_events.extend(more.conn_events)
        tr.sends.extend(more.sends)
        tr.conn_events.sort(key=lambda c: c.t)
        tr.sends.sort(key=lambda snd: snd.t)
    # the simulated epoch runs in step with the recorded one, so whole-second (time_t)
    # arithmetic in app_queue falls on the same second boundaries
    first_t0 = tr.conn_events[0].t if tr.conn_events else 0.0
    epoch0 = None
    for send in tr.sends:
        for m in send.received:
            d = dict(m)
            if (
                epoch0 is None
                and "Timestamp" in d
                and "Event" in d
                and d.get("Event") != "FullyBooted"
            ):
                epoch0 = float(d["Timestamp"]) - send.t + first_t0
    clock = VirtualClock(start_epoch=epoch0) if epoch0 else VirtualClock()
    pbx = SimPbx(
        clock=clock,
        dialplan=CONF / "extensions.conf",
        customer=False,
        queues=CONF / "queues.conf",
        secret=RECORDED_SECRET,
        record=True,
    )
    if read_without:
        pbx.ami.read = pbx.ami.read - set(read_without)
    await pbx.start(ami_port=0)
    server: ScriptedAgiServer | None = None
    agi_problems: list[str] = []
    sessions = agi_sessions_for(path) if agi else []
    if agi:
        server = ScriptedAgiServer(pbx, sessions)
        port = await server.start()
        for p in (4573, 4574):
            pbx.engine.agi_port_map[("127.0.0.1", p)] = ("127.0.0.1", port)
    else:
        # nothing listens: bind a port and close it
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        dead = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        for p in (4573, 4574):
            pbx.engine.agi_port_map[("127.0.0.1", p)] = ("127.0.0.1", dead)
    clients: list[RawAmi] = []
    by_conn: dict[int, RawAmi] = {}
    t0_sim = clock.now()
    first_t = tr.conn_events[0].t if tr.conn_events else 0.0
    sim_msgs: list[tuple[float, Msg]] = []
    sim_msgs_raw: list[dict[str, str]] = []
    agi_problems_eof: list[str] = []
    rec_sufs = sorted(
        {
            x
            for s in tr.sends
            for m in s.received
            for _, v in m
            for x in re.findall(r"-([0-9a-f]{8})(?=;|$)", v)
        },
        key=lambda x: int(x, 16),
    )
    rank = {x: i for i, x in enumerate(rec_sufs)}

    def translate(action: Msg) -> Msg:
        return [
            (k, re.sub(r"-([0-9a-f]{8})(?=;|$)", lambda m: f"-{rank.get(m.group(1), 0):08x}", v))
            for k, v in action
        ]

    async def pump() -> None:
        for c in clients:
            if c.reader.at_eof() and not c._buf:
                continue
            before = len(c.messages)
            await c.pump(0.005)
            sim_msgs_raw.extend(c.messages[before:])

    items: list[tuple[float, int, Any]] = [
        (c.t, 0 if c.kind == "connect" else 2, c) for c in tr.conn_events
    ]
    items += [(s.t, 1, s) for s in tr.sends]
    items.sort(key=lambda x: (x[0], x[1]))
    for t, _, item in items:
        # actions go 1 ms early so that a simultaneous timer (a peer closing) comes after them;
        # the final action (Logoff) 20 ms early: in the recordings it raced the last peer close
        early = 0.02 if item is tr.sends[-1] else 0.001
        target = t0_sim + (t - first_t) - early
        if clock.now() < target:
            await clock.run_until(target)
        await pump()
        if isinstance(item, ConnEvent):
            if item.kind == "connect":
                by_conn[item.conn] = await RawAmi.connect(pbx.port)
                clients.append(by_conn[item.conn])
            else:
                # step until the server closes, at most TIME_TOL_S past the recorded EOF
                cl = by_conn[item.conn]
                deadline = clock.now() + TIME_TOL_S
                while not cl.reader.at_eof() and clock.now() < deadline:
                    await clock.run_until(clock.now() + 0.01)
                    await pump()
                if not cl.reader.at_eof():
                    agi_problems_eof.append(f"connection {item.conn} still open at {t:.3f}s")
            continue
        by_conn[item.conn].send(*translate(item.action))
        await clock.settle()
        await pump()
    await pump()
    for c in clients:
        await c.close()
    # times: simulated events carry PBX epoch timestamps
    base_sim = clock.start_epoch + t0_sim
    for m in sim_msgs_raw:
        pairs: Msg = []
        for k, v in m.items():
            for part in v.split("\n") if k in ("Variable", "Output") else [v]:
                pairs.append((k, part))
        sim_msgs.append(
            (_event_time(pairs, base_sim) + first_t if "Timestamp" in m else -1.0, pairs)
        )
    # recorded: the first event's timestamp anchors the clock (events follow actions within ms)
    rec_msgs: list[tuple[float, Msg]] = []
    base_rec = None
    for send in tr.sends:
        for m in send.received:
            d = dict(m)
            if (
                base_rec is None
                and "Timestamp" in d
                and "Event" in d
                and d.get("Event") != "FullyBooted"
            ):
                base_rec = float(d["Timestamp"]) - send.t
    for send in tr.sends:
        for m in send.received:
            d = dict(m)
            t = (
                float(d["Timestamp"]) - base_rec
                if ("Timestamp" in d and base_rec is not None and "Event" in d)
                else -1.0
            )
            rec_msgs.append((t, m))
    # Ping responses carry a Timestamp too: not an event time
    all_status = frozenset(
        dict(s.action).get("ActionID", "")
        for s in tr.sends
        if dict(s.action).get("Action") == "QueueStatus" and "Queue" not in dict(s.action)
    )
    cmp = compare_ami(rec_msgs, sim_msgs, time_check, all_status)
    cmp.problems.extend(agi_problems_eof)
    if server is not None:
        await server.stop()
        agi_problems.extend(server.errors)
        for rec, env, replies, hangups in server.results:
            agi_problems.extend(compare_agi(rec, env, replies, hangups))
        left = [s.script for q in server.pending.values() for s in q]
        if left:
            agi_problems.append(f"recorded FastAGI sessions never opened: {left}")
    await pbx.stop()
    return ReplayResult(cmp, agi_problems, pbx)


def compare_agi(
    rec: AgiSession, env: list[tuple[str, str]], replies: list[list[str]], hangups: int
) -> list[str]:
    problems: list[str] = []

    def norm_env(e: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out = []
        for k, v in e:
            if k == "agi_threadid":
                continue
            v = re.sub(r"-[0-9a-f]{8};", "-*;", v)
            if re.fullmatch(r"\d{9,}\.\d+", v):
                v = "<uid>"
            out.append((k, v))
        return out

    if norm_env(rec.env) != norm_env(env):
        problems.append(
            f"{rec.script}: env differs:\n  recorded {norm_env(rec.env)}\n  simulated {norm_env(env)}"
        )
    for ex, got in zip(rec.exchanges, replies, strict=False):
        want = [re.sub(r"-[0-9a-f]{8};", "-*;", x) for x in ex.reply]
        have = [re.sub(r"-[0-9a-f]{8};", "-*;", x) for x in got]
        if want != have and not _endpos_close(want, have):
            problems.append(f"{rec.script}: {ex.command!r} -> {have}, recorded {want}")
    if len(replies) != len(rec.exchanges):
        problems.append(f"{rec.script}: {len(replies)} replies, recorded {len(rec.exchanges)}")
    if (hangups > 0) != (rec.hangup_lines > 0):
        problems.append(f"{rec.script}: HANGUP lines {hangups}, recorded {rec.hangup_lines}")
    return problems


def _endpos_close(want: list[str], have: list[str]) -> bool:
    if len(want) != 1 or len(have) != 1:
        return False
    rw = re.fullmatch(r"(200 result=\S+) endpos=(\d+)", want[0])
    rh = re.fullmatch(r"(200 result=\S+) endpos=(\d+)", have[0])
    return bool(
        rw
        and rh
        and rw.group(1) == rh.group(1)
        and abs(int(rw.group(2)) - int(rh.group(2))) <= ENDPOS_TOL
    )
