"""The simulated switch: channels, Local channel pairs, Originate, the dialplan applications.

Why this file is shaped the way it is: real Asterisk runs one thread per channel and the AMI
events of two Local legs race. Here each channel that runs dialplan is one asyncio task; every
wait goes through the injected clock (``dialer.sim.clock``), so the same code runs in virtual
time for tests and in (scaled) real time for the command line. Events are built from the
channel's current snapshot and pushed synchronously to listeners (the AMI server), in the
order each leg produces them in the recordings (``tests/fixtures/asterisk/transcripts``).

Rules of this file:
- a channel is hung up exactly once (``_destroy``); the Local peer is told with
  ``HangupRequest`` carrying this leg's cause, as Asterisk does;
- an AMI ``Hangup`` only flags the channel (no event): its events come when the running
  application returns, as recorded;
- digits reach the *other* leg of a Local pair (``DTMFBegin``/``DTMFEnd``, Direction
  Received) and are delivered to whatever consumes digits on that leg at ``DTMFEnd`` time;
  with no consumer they are lost.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dialer.sim.agi import run_agi
from dialer.sim.amd import run_amd
from dialer.sim.clock import AnyClock
from dialer.sim.dialplan import Dialplan, split_args, substitute
from dialer.sim.events import (
    SOFTHANGUP_EXPLICIT,
    STATE_DESC,
    UNKNOWN,
    AmiEvent,
    Cause,
    ChannelHungup,
    ChannelState,
    OriginateReason,
    cause_text,
)
from dialer.sim.party import run_called_party
from dialer.sim.sounds import Prompt, SoundLibrary

log = logging.getLogger(__name__)

DTMF_DURATION_MS = 100
DTMF_GAP_MS = 250
DTMF_LEAD_MS = 100
#: ``Answer()`` on a ringing channel waits up to 500 ms for the first voice frame from the
#: other side: ~5 ms when the IVR leg starts a prompt at once, 500 ms otherwise (recorded).
ANSWER_MEDIA_WAIT_S = 0.5


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    device: str
    created: float
    state: ChannelState = ChannelState.DOWN
    cid_num: str = UNKNOWN
    cid_name: str = UNKNOWN
    conn_num: str = UNKNOWN
    conn_name: str = UNKNOWN
    language: str = "en"
    accountcode: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    vars: dict[str, str] = field(default_factory=dict)
    hangupcause: int = 0
    peer: Channel | None = None
    is_one: bool = False
    app: str = ""
    appdata: str = ""
    answered_at: float | None = None
    alive: bool = True
    soft_hangup: bool = False
    soft16_emitted: bool = False
    dialplan_mode: bool = True
    #: current interruptible wait: resolved with ("timeout"|"digit"|"hangup", digit)
    waiter: asyncio.Future[tuple[str, str | None]] | None = None
    accept_digits: str | None = None
    await_media: bool = False
    digit_listeners: list[Callable[[str], None]] = field(default_factory=list)
    hangup_listeners: list[Callable[[Channel], None]] = field(default_factory=list)
    ring_listeners: list[Callable[[Channel], None]] = field(default_factory=list)
    dial: Dialing | None = None
    #: the channel this one is bridged to (queue caller <-> member), for DTMF and hang-up
    bridged: Channel | None = None
    bridge_id: str = ""
    task: asyncio.Task[None] | None = None
    #: media the far end is currently sending (for AMD): list of (start, prompt)
    media_log: list[tuple[float, Prompt]] = field(default_factory=list)
    party: Any = None
    #: exten the leg shows once the far end sends its first control frame (queue members)
    exten_on_control: str | None = None
    #: set while ``Bridge()`` on another channel holds this one (its dialplan waits on it)
    held_by_bridge: asyncio.Future[tuple[str, str | None]] | None = None

    @property
    def state_desc(self) -> str:
        return STATE_DESC[self.state]

    def header(self, prefix: str = "") -> tuple[tuple[str, str], ...]:
        p = prefix
        return (
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(int(self.state))),
            (f"{p}ChannelStateDesc", self.state_desc),
            (f"{p}CallerIDNum", self.cid_num),
            (f"{p}CallerIDName", self.cid_name),
            (f"{p}ConnectedLineNum", self.conn_num),
            (f"{p}ConnectedLineName", self.conn_name),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.accountcode),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        )

    @property
    def other(self) -> Channel | None:
        """Where this channel's media and digits go: the bridge peer, else the Local peer."""
        if self.bridged is not None and self.bridged.alive:
            return self.bridged
        if self.peer is not None and self.peer.alive:
            return self.peer
        return None


class DialOutcome:
    ANSWER = "answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    HANGUP = "hangup"  # the callee leg went away before answering
    TIMEOUT = "timeout"
    CANCEL = "cancel"  # the caller side hung the dialled leg up (AMI Hangup, queue)


@dataclass(eq=False)
class Dialing:
    """A ``;1`` leg being dialled (by Originate or by a queue)."""

    future: asyncio.Future[str]
    ringing: bool = False
    started: float = 0.0


@dataclass(frozen=True)
class OriginateRequest:
    channel: str
    context: str | None = None
    exten: str | None = None
    priority: str | None = None
    application: str | None = None
    data: str = ""
    timeout_ms: int = 30000
    callerid: tuple[str, str] | None = None  # (name, num)
    channel_id: str | None = None
    other_channel_id: str | None = None
    variables: tuple[tuple[str, str], ...] = ()
    action_id: str | None = None
    is_async: bool = False
    account: str = ""


@dataclass(frozen=True)
class OriginateResult:
    success: bool
    reason: int
    channel: Channel | None


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Name" <num>`` -> (name, num), as Asterisk's ast_callerid_parse."""
    value = value.strip()
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', value)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    if re.fullmatch(r"[+\d*#]+", value):
        return "", value
    return value, ""


Listener = Callable[[AmiEvent], None]
AppFunc = Callable[["Engine", Channel, str], Awaitable["Jump | None"]]


@dataclass(frozen=True)
class Jump:
    context: str
    exten: str
    priority: int | str


class Engine:
    """Owns every live channel and runs their dialplan on the injected clock."""

    def __init__(
        self,
        clock: AnyClock,
        dialplan: Dialplan,
        sounds: SoundLibrary | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.dialplan = dialplan
        self.sounds = sounds or SoundLibrary()
        self.rng = rng or random.Random(0)
        self.listeners: list[Listener] = []
        self.channels: dict[str, Channel] = {}
        self.by_uid: dict[str, Channel] = {}
        self._sorted_uids: list[str] = []
        self._chan_seq = itertools.count()
        self._uid_seq = itertools.count(1)
        self._thread_seq = itertools.count(140633771603648, 512)
        self.apps: dict[str, AppFunc] = dict(APPS)
        self.calls_processed = 0
        self.boot_epoch = clock.epoch()
        self.queues: Any = None  # dialer.sim.queues.QueueManager (part 2)
        self.party_model: Any = None  # dialer.sim.party (part 2)
        #: (host, port) of an AGI URL -> where to really connect (tests bind port 0)
        self.agi_port_map: dict[tuple[str, int], tuple[str, int]] = {}
        self.events_emitted = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ events
    def emit(self, name: str, fields: tuple[tuple[str, str], ...], klass: str = "call") -> None:
        priv = {
            "call": "call,all",
            "dialplan": "dialplan,all",
            "dtmf": "dtmf,all",
            "agi": "agi,all",
            "agent": "agent,all",
            "system": "system,all",
        }[klass]
        ev = AmiEvent(name, priv, fields, self.clock.epoch(), klass)
        self.events_emitted += 1
        for listener in self.listeners:
            listener(ev)

    def chan_event(
        self, name: str, ch: Channel, extra: tuple[tuple[str, str], ...] = (), klass: str = "call"
    ) -> None:
        self.emit(name, ch.header() + extra, klass)

    def device_state(self, device: str, state: str) -> None:
        self.emit("DeviceStateChange", (("Device", device), ("State", state)))

    def set_state(self, ch: Channel, state: ChannelState) -> None:
        if ch.state != state:
            ch.state = state
            self.chan_event("Newstate", ch)

    def setvar(self, ch: Channel, name: str, value: str, event: bool = True) -> None:
        name = name.lstrip("_") if name.startswith("_") else name
        ch.vars[name] = value
        if event:
            self.chan_event("VarSet", ch, (("Variable", name), ("Value", value)), "dialplan")

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulated channel task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ naming
    def new_uniqueid(self) -> str:
        return f"{int(self.clock.epoch())}.{next(self._uid_seq)}"

    def id_in_use(self, cid: str) -> bool:
        """Asterisk matches ChannelIds by prefix against live channels (recorded quirk):
        ``conc-1`` collides with a live ``conc-10;2``. O(log n + len(cid)), not a scan."""
        i = bisect.bisect_left(self._sorted_uids, cid)
        if i < len(self._sorted_uids) and self._sorted_uids[i].startswith(cid):
            return True
        return any(cid[:k] in self.by_uid for k in range(1, len(cid) + 1))

    def new_channel(
        self, name: str, uniqueid: str, linkedid: str, device: str, state: ChannelState
    ) -> Channel:
        ch = Channel(name, uniqueid, linkedid, device, self.clock.now(), state=state)
        self.channels[name] = ch
        self.by_uid[uniqueid] = ch
        bisect.insort(self._sorted_uids, uniqueid)
        return ch

    def _forget(self, ch: Channel) -> None:
        self.channels.pop(ch.name, None)
        if self.by_uid.pop(ch.uniqueid, None) is not None:
            i = bisect.bisect_left(self._sorted_uids, ch.uniqueid)
            if i < len(self._sorted_uids) and self._sorted_uids[i] == ch.uniqueid:
                del self._sorted_uids[i]

    def find_channel(self, ident: str) -> Channel | None:
        ch = self.channels.get(ident) or self.by_uid.get(ident)
        if ch is not None and ch.alive:
            return ch
        return None

    # ------------------------------------------------------------------ resolving ${}
    def resolver(self, ch: Channel) -> Callable[[str], str | None]:
        def resolve(name: str) -> str | None:
            name = name.strip()
            special = {
                "CHANNEL": lambda: ch.name,
                "EXTEN": lambda: ch.exten,
                "CONTEXT": lambda: ch.context,
                "PRIORITY": lambda: str(ch.priority),
                "UNIQUEID": lambda: ch.uniqueid,
                "LINKEDID": lambda: ch.linkedid,
                "EPOCH": lambda: str(int(self.clock.epoch())),
                "HANGUPCAUSE": lambda: str(ch.hangupcause),
                "LANGUAGE": lambda: ch.language,
                "CALLERID(num)": lambda: "" if ch.cid_num == UNKNOWN else ch.cid_num,
                "CALLERID(name)": lambda: "" if ch.cid_name == UNKNOWN else ch.cid_name,
                "CHANNEL(language)": lambda: ch.language,
                "CHANNEL(name)": lambda: ch.name,
                "CHANNEL(uniqueid)": lambda: ch.uniqueid,
            }
            if name in special:
                return special[name]()
            m = re.match(r"^LEN\((.*)\)$", name)
            if m:
                return str(len(m.group(1)))
            if name in ch.vars:
                return ch.vars[name]
            return self.dialplan.globals.get(name)

        return resolve

    def expand(self, ch: Channel, text: str) -> str:
        return substitute(text, self.resolver(ch))

    # ------------------------------------------------------------------ waiting
    async def wait(
        self, ch: Channel, duration: float | None, digits: str | None = None, media: bool = False
    ) -> tuple[str, str | None]:
        """Wait ``duration`` s (None = until hangup), for a digit in ``digits``, or (with
        ``media``) until the other side starts sending audio."""
        if ch.soft_hangup or not ch.alive:
            raise ChannelHungup
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[str, str | None]] = loop.create_future()
        ch.waiter = fut
        ch.accept_digits = digits
        ch.await_media = media
        h = None
        if duration is not None:
            h = self.clock.call_later(duration, _resolve, fut, ("timeout", None))
        try:
            res = await fut
            if res[0] == "pulled" and ch.held_by_bridge is not None:
                # Bridge() on another channel took this one out of its dialplan: it waits in
                # the bridge (its own wait no longer runs) until the bridge lets it go
                if h is not None:
                    h.cancel()
                fut = ch.held_by_bridge
                ch.waiter, ch.accept_digits, ch.await_media = fut, None, False
                res = await fut
        finally:
            if ch.waiter is fut:
                ch.waiter = None
                ch.accept_digits = None
                ch.await_media = False
            if h is not None:
                h.cancel()
        if res[0] == "hangup":
            raise ChannelHungup
        return res

    def deliver_digit(self, ch: Channel, digit: str) -> None:
        """A digit finished arriving on ``ch`` (DTMFEnd): hand it to the running consumer."""
        for listener in list(ch.digit_listeners):
            listener(digit)
        if ch.waiter is not None and ch.accept_digits and digit in ch.accept_digits:
            _resolve(ch.waiter, ("digit", digit))

    async def send_dtmf(
        self, ch: Channel, digits: str, gap_ms: int = DTMF_GAP_MS, dur_ms: int = DTMF_DURATION_MS
    ) -> None:
        """SendDTMF: each digit is received by the other leg (DTMFBegin/DTMFEnd).

        Recorded timing: ~100 ms before the first digit, ``dur_ms`` per digit, ``gap_ms``
        after every digit (also the last, so the app returns ``gap_ms`` after the last end).
        """
        await self.wait(ch, DTMF_LEAD_MS / 1000.0)
        for d in digits:
            if d not in "0123456789*#ABCDabcdwW":
                continue
            if d in "wW":
                await self.wait(ch, 0.5)
                continue
            target = ch.other
            if target is not None:
                self.chan_event(
                    "DTMFBegin", target, (("Digit", d), ("Direction", "Received")), "dtmf"
                )
            await self.wait(ch, dur_ms / 1000.0)
            target = ch.other
            if target is not None:
                self.chan_event(
                    "DTMFEnd",
                    target,
                    (("Digit", d), ("DurationMs", str(dur_ms)), ("Direction", "Received")),
                    "dtmf",
                )
                self.deliver_digit(target, d)
            await self.wait(ch, gap_ms / 1000.0)

    def media_started(self, ch: Channel) -> None:
        """``ch`` starts sending audio: a pending ``Answer()`` on the other side returns."""
        target = ch.other
        if target is not None and target.await_media and target.waiter is not None:
            _resolve(target.waiter, ("media", None))

    async def play(
        self, ch: Channel, name: str, escape: str | None = None
    ) -> tuple[bool, str | None, float]:
        """Play one prompt: (found, digit that interrupted it or None, seconds played)."""
        prompt = self.sounds.lookup(name, ch.language)
        if prompt is None:
            return False, None, 0.0
        return await self.play_prompt(ch, prompt, escape)

    async def play_prompt(
        self, ch: Channel, prompt: Prompt, escape: str | None = None
    ) -> tuple[bool, str | None, float]:
        start = self.clock.now()
        target = ch.other
        if target is not None:
            target.media_log.append((start, prompt))
        self.media_started(ch)
        try:
            kind, digit = await self.wait(ch, prompt.duration, escape or None)
        except ChannelHungup:
            raise
        return True, (digit if kind == "digit" else None), self.clock.now() - start

    # ------------------------------------------------------------------ hang-up
    def request_hangup(self, ch: Channel, cause: int | None = None) -> None:
        """Soft hang-up (AMI Hangup, peer gone): the running app returns, then the leg dies."""
        if not ch.alive:
            return
        if cause is not None and cause > 0 and ch.hangupcause == 0:
            ch.hangupcause = cause
        if ch.dial is not None and not ch.dial.future.done():
            ch.dial.future.set_result(DialOutcome.CANCEL)
            ch.soft_hangup = True
            return
        first = not ch.soft_hangup
        ch.soft_hangup = True
        if ch.waiter is not None:
            _resolve(ch.waiter, ("hangup", None))
        if first:
            for cb in list(ch.hangup_listeners):
                cb(ch)
        if ch.task is None and ch.dial is None and not ch.dialplan_mode and ch.bridged is None:
            # nothing runs on this leg and no bridge will tear it down: die now
            self.destroy(ch)

    def destroy(self, ch: Channel) -> None:
        """The channel is hung up for good: tell the Local peer, emit Hangup."""
        if not ch.alive:
            return
        ch.alive = False
        peer = ch.peer
        if peer is not None and peer.alive:
            self.chan_event("HangupRequest", peer, (("Cause", str(ch.hangupcause)),))
            self.request_hangup(peer, ch.hangupcause)
        self.chan_event(
            "Hangup",
            ch,
            (("Cause", str(ch.hangupcause)), ("Cause-txt", cause_text(ch.hangupcause))),
        )
        self.device_state(ch.device, "NOT_INUSE")
        self._forget(ch)
        b = ch.bridged
        if b is not None and b.alive and b.bridged is ch:
            b.bridged = None
            for cb in list(b.hangup_listeners):
                cb(ch)
        for cb in list(ch.hangup_listeners):
            cb(ch)
        if ch.is_one:
            self.calls_processed += 1

    # ------------------------------------------------------------------ dialplan
    async def run_pbx(self, ch: Channel) -> None:
        """Run ``ch`` from its context/exten/priority until the dialplan ends or it hangs up."""
        ch.dialplan_mode = True
        try:
            while ch.alive and not ch.soft_hangup:
                ext = self.dialplan.find(ch.context, ch.exten)
                step = ext.steps.get(ch.priority) if ext is not None else None
                if step is None:
                    break
                data = self.expand(ch, step.data)
                ch.app, ch.appdata = step.app, data
                self.chan_event(
                    "Newexten",
                    ch,
                    (("Extension", ch.exten), ("Application", step.app), ("AppData", data)),
                    "dialplan",
                )
                app = self.apps[step.app]
                jump = await app(self, ch, data)
                if ch.soft_hangup or not ch.alive:
                    break
                if jump is None:
                    ch.priority += 1
                else:
                    self._jump(ch, ext, jump)
        except ChannelHungup:
            pass
        finally:
            self.end_pbx(ch)

    def _jump(self, ch: Channel, ext: Any, jump: Jump) -> None:
        ch.context, ch.exten = jump.context, jump.exten
        prio = jump.priority
        if isinstance(prio, str) and not prio.isdigit():
            target = self.dialplan.find(ch.context, ch.exten)
            if target is None or prio not in target.labels:
                log.warning("%s: no label %r in %s,%s", ch.name, prio, ch.context, ch.exten)
                ch.priority = 10_000_000
                return
            ch.priority = target.labels[prio]
        else:
            ch.priority = int(prio)

    def end_pbx(self, ch: Channel) -> None:
        if not ch.alive:
            return
        if ch.dialplan_mode and not ch.soft16_emitted:
            ch.soft16_emitted = True
            self.chan_event("SoftHangupRequest", ch, (("Cause", str(SOFTHANGUP_EXPLICIT)),))
        if not ch.soft_hangup and ch.hangupcause == 0:
            ch.hangupcause = Cause.NORMAL_CLEARING
        self.destroy(ch)

    def start_pbx(self, ch: Channel) -> None:
        ch.task = self.spawn(self.run_pbx(ch))

    # ------------------------------------------------------------------ Local channels
    def make_local_pair(
        self,
        exten: str,
        context: str,
        uid1: str | None = None,
        uid2: str | None = None,
        linkedid: str | None = None,
    ) -> tuple[Channel, Channel]:
        seq = next(self._chan_seq)
        base = f"Local/{exten}@{context}-{seq:08x}"
        u1 = uid1 or self.new_uniqueid()
        u2 = uid2 or (f"{uid1};2" if uid1 else self.new_uniqueid())
        link = linkedid or u1
        device = f"Local/{exten}@{context}"
        one = self.new_channel(base + ";1", u1, link, device, ChannelState.DOWN)
        two = self.new_channel(base + ";2", u2, link, device, ChannelState.RING)
        for c in (one, two):
            c.context, c.exten, c.priority = context, exten, 1
        one.is_one = True
        one.peer, two.peer = two, one
        return one, two

    async def originate(self, req: OriginateRequest) -> OriginateResult:
        """Originate as Asterisk does for ``Local/exten@context[/n]`` dial strings."""
        m = re.match(r"^Local/([^@]+)@([^/]+)(/n)?$", req.channel.strip(), re.I)
        if not m and self.queues is not None and self.queues.is_phone(req.channel.strip()):
            return await self._originate_phone(req)
        if not m or (req.channel_id and self.id_in_use(req.channel_id)):
            self._originate_response(req, None, False, OriginateReason.FAILED)
            return OriginateResult(False, OriginateReason.FAILED, None)
        exten, context, no_opt = m.group(1), m.group(2), bool(m.group(3))
        one, two = self.make_local_pair(exten, context, req.channel_id, req.other_channel_id)
        one.accountcode = two.accountcode = req.account
        one.app, one.appdata = "AppDial2", "(Outgoing Line)"
        self.chan_event("Newchannel", one)
        self.chan_event("Newchannel", two)
        self.chan_event(
            "Newexten",
            one,
            (("Extension", exten), ("Application", "AppDial2"), ("AppData", "(Outgoing Line)")),
            "dialplan",
        )
        for k, v in reversed(req.variables):
            self.setvar(one, k, v)
        if req.callerid is not None:
            self._set_callerid(one, req.callerid)
        for k, v in req.variables:
            self.setvar(two, k, v)
        if req.callerid is not None:
            self._set_callerid(two, req.callerid)
        if self.dialplan.find(context, exten) is None:
            two.alive = False
            self.chan_event("Hangup", two, (("Cause", "0"), ("Cause-txt", cause_text(0))))
            one.alive = False
            self.chan_event("Hangup", one, (("Cause", "0"), ("Cause-txt", cause_text(0))))
            for c in (one, two):
                self._forget(c)
            self.device_state(one.device, "INVALID")
            self.device_state(one.device, "INVALID")
            self.calls_processed += 1
            self._originate_response(req, None, False, OriginateReason.FAILED)
            return OriginateResult(False, OriginateReason.FAILED, None)
        self._local_bridge(one, two, no_opt)
        self.emit(
            "DialBegin",
            one.header("Dest") + (("DialString", f"{exten}@{context}" + ("/n" if no_opt else "")),),
        )
        one.dialplan_mode = False
        two.dialplan_mode = True
        outcome = await self._dial(one, req.timeout_ms, lambda: self.start_pbx(two))
        return self._originate_outcome(req, one, outcome)

    async def _originate_phone(self, req: OriginateRequest) -> OriginateResult:
        """Originate to a simulated agent's phone (a queue member that is no Local channel,
        e.g. ``PJSIP/sim-act-001``): one channel rings it, the agent answers as its
        ``AgentBehaviour`` says, and the answered channel runs the dialplan at the Originate's
        context (the agent-first callback's wait). The phone shows ringing, then in use, in
        every queue it is a member of, as a real device's state would."""
        iface = req.channel.strip()
        if req.channel_id and self.id_in_use(req.channel_id):
            self._originate_response(req, None, False, OriginateReason.FAILED)
            return OriginateResult(False, OriginateReason.FAILED, None)
        uid = req.channel_id or self.new_uniqueid()
        name = f"{iface}-{next(self._chan_seq):08x}"
        ch = self.new_channel(name, uid, uid, iface, ChannelState.DOWN)
        ch.accountcode = req.account
        ch.app, ch.appdata = "AppDial2", "(Outgoing Line)"
        ch.dialplan_mode = False
        self.chan_event("Newchannel", ch)
        for k, v in req.variables:
            self.setvar(ch, k, v)
        if req.callerid is not None:
            self._set_callerid(ch, req.callerid)
        self.emit("DialBegin", ch.header("Dest") + (("DialString", iface.split("/", 1)[1]),))
        outcome = await self._dial(ch, req.timeout_ms, lambda: self.queues.ring_phone(iface, ch))
        return self._originate_outcome(req, ch, outcome)

    async def _dial(self, ch: Channel, timeout_ms: int, start: Callable[[], None]) -> str:
        """``ch`` dialling: ``start`` the far end, then wait for the outcome or the timeout."""
        ch.dial = Dialing(asyncio.get_running_loop().create_future(), started=self.clock.now())
        start()
        timer = self.clock.call_later(
            timeout_ms / 1000.0, _resolve, ch.dial.future, DialOutcome.TIMEOUT
        )
        try:
            return await ch.dial.future
        finally:
            timer.cancel()
            ch.dial = None

    def _set_callerid(self, ch: Channel, cid: tuple[str, str]) -> None:
        name, num = cid
        ch.cid_name, ch.cid_num = name or UNKNOWN, num or UNKNOWN
        if not ch.is_one:
            # the ;2 leg already shows the connected line in its NewCallerid (recorded)
            ch.conn_name, ch.conn_num = ch.cid_name, ch.cid_num
        self.chan_event(
            "NewCallerid", ch, (("CID-CallingPres", "0 (Presentation Allowed, Not Screened)"),)
        )
        ch.conn_name, ch.conn_num = ch.cid_name, ch.cid_num
        self.chan_event("NewConnectedLine", ch)

    def _local_bridge(self, one: Channel, two: Channel, no_opt: bool) -> None:
        self.emit(
            "LocalBridge",
            one.header("LocalOne")
            + two.header("LocalTwo")
            + (
                ("Context", two.context),
                ("Exten", two.exten),
                ("LocalOptimization", "No" if no_opt else "Yes"),
            ),
        )

    def _originate_outcome(
        self, req: OriginateRequest, one: Channel, outcome: str
    ) -> OriginateResult:
        if outcome == DialOutcome.ANSWER:
            self.set_state(one, ChannelState.UP)
            one.answered_at = self.clock.now()
            self.device_state(one.device, "INUSE")
            self.emit("DialEnd", one.header("Dest") + (("DialStatus", "ANSWER"),))
            self._originate_response(req, one, True, OriginateReason.ANSWERED)
            if req.application:
                one.dialplan_mode = False
                one.task = self.spawn(self._run_application(one, req.application, req.data))
            else:
                one.context = req.context or "default"
                one.exten = req.exten or "s"
                one.priority = int(req.priority or 1) if (req.priority or "1").isdigit() else 1
                self.start_pbx(one)
            return OriginateResult(True, OriginateReason.ANSWERED, one)
        reason = {
            DialOutcome.BUSY: OriginateReason.BUSY,
            DialOutcome.CONGESTION: OriginateReason.CONGESTION,
            DialOutcome.TIMEOUT: OriginateReason.RING_TIMEOUT,
        }.get(outcome, OriginateReason.FAILED)
        if outcome == DialOutcome.BUSY:
            self.emit("DialEnd", one.header("Dest") + (("DialStatus", "BUSY"),))
        elif outcome == DialOutcome.CONGESTION:
            self.emit("DialEnd", one.header("Dest") + (("DialStatus", "CONGESTION"),))
        elif outcome in (DialOutcome.HANGUP, DialOutcome.CANCEL):
            self.emit("DialEnd", one.header("Dest") + (("DialStatus", "NOANSWER"),))
        elif outcome == DialOutcome.TIMEOUT:
            one.hangupcause = Cause.NO_ANSWER
        one.dialplan_mode = False
        self.destroy(one)
        self._originate_response(req, None, False, reason)
        return OriginateResult(False, reason, None)

    async def _run_application(self, ch: Channel, app: str, data: str) -> None:
        func = self.apps.get(app)
        try:
            if func is None:
                log.warning("Originate: no application %r", app)
            else:
                await func(self, ch, data)
        except ChannelHungup:
            pass
        finally:
            self.end_pbx(ch)

    def _originate_response(
        self, req: OriginateRequest, one: Channel | None, ok: bool, reason: int
    ) -> None:
        if not req.is_async:
            return  # a synchronous Originate answers with its Response only (recorded)
        if one is not None:
            chan_name, uid = one.name, one.uniqueid
            cnum, cname = one.cid_num, one.cid_name
        else:
            chan_name, uid = req.channel, req.channel_id or UNKNOWN
            cnum = req.callerid[1] if req.callerid and req.callerid[1] else UNKNOWN
            cname = req.callerid[0] if req.callerid and req.callerid[0] else UNKNOWN
        fields: list[tuple[str, str]] = []
        if req.action_id is not None:
            fields.append(("ActionID", req.action_id))
        fields += [("Response", "Success" if ok else "Failure"), ("Channel", chan_name)]
        if req.application:
            fields += [("Application", req.application), ("Data", req.data)]
        else:
            fields += [("Context", req.context or ""), ("Exten", req.exten or "")]
        fields += [("Reason", str(int(reason))), ("Uniqueid", uid)]
        fields += [("CallerIDNum", cnum), ("CallerIDName", cname)]
        self.emit("OriginateResponse", tuple(fields))

    # ------------------------------------------------------------------ control frames
    def answer(self, ch: Channel) -> None:
        """``ch`` answers: on a Local ``;2`` leg the ``;1`` side sees the answer."""
        if ch.state == ChannelState.UP:
            return
        self.set_state(ch, ChannelState.UP)
        ch.answered_at = self.clock.now()
        self.device_state(ch.device, "INUSE")
        peer = ch.peer
        if peer is not None and not ch.is_one and peer.dial is not None:
            if not peer.dial.future.done():
                peer.dial.future.set_result(DialOutcome.ANSWER)

    def ringing(self, ch: Channel) -> None:
        peer = ch.peer
        if peer is not None and not ch.is_one and peer.dial is not None and not peer.dial.ringing:
            peer.dial.ringing = True
            if peer.exten_on_control:
                peer.exten = peer.exten_on_control
            self.set_state(peer, ChannelState.RINGING)
            for cb in list(peer.ring_listeners):
                cb(peer)

    def busy(self, ch: Channel, congestion: bool) -> None:
        ch.hangupcause = Cause.CONGESTION if congestion else Cause.USER_BUSY
        self.set_state(ch, ChannelState.BUSY)
        if not congestion:
            self.device_state(ch.device, "INUSE")
        peer = ch.peer
        if peer is not None and not ch.is_one and peer.dial is not None:
            if not peer.dial.future.done():
                peer.dial.future.set_result(
                    DialOutcome.CONGESTION if congestion else DialOutcome.BUSY
                )


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


# ====================================================================== applications
async def app_answer(e: Engine, ch: Channel, data: str) -> None:
    if ch.state != ChannelState.UP:
        e.answer(ch)
        await e.wait(ch, ANSWER_MEDIA_WAIT_S, media=True)


async def app_noop(e: Engine, ch: Channel, data: str) -> None:
    return None


async def app_set(e: Engine, ch: Channel, data: str) -> None:
    if "=" not in data:
        return None
    name, value = data.split("=", 1)
    name = name.strip()
    if name.upper() == "CHANNEL(LANGUAGE)":
        ch.language = value.strip()
        return None
    if name.upper().startswith("CALLERID(NUM)"):
        ch.cid_num = value
        return None
    if name.upper().startswith("CALLERID(NAME)"):
        ch.cid_name = value
        return None
    e.setvar(ch, name.lstrip("_"), value)
    return None


async def app_wait(e: Engine, ch: Channel, data: str) -> None:
    try:
        secs = float(data.strip() or "0")
    except ValueError:
        secs = 0.0
    await e.wait(ch, secs)


async def app_playback(e: Engine, ch: Channel, data: str) -> None:
    args = split_args(data)
    files = [f for f in args[0].split("&") if f]
    ok = True
    try:
        for f in files:
            found, _, _ = await e.play(ch, f)
            ok = ok and found
    except ChannelHungup:
        # app_playback reports SUCCESS when the caller hangs up mid-prompt (recorded)
        e.setvar(ch, "PLAYBACKSTATUS", "SUCCESS" if ok else "FAILED")
        raise
    e.setvar(ch, "PLAYBACKSTATUS", "SUCCESS" if ok else "FAILED")


async def app_ringing(e: Engine, ch: Channel, data: str) -> None:
    e.ringing(ch)


async def app_progress(e: Engine, ch: Channel, data: str) -> None:
    return None


async def app_senddtmf(e: Engine, ch: Channel, data: str) -> None:
    args = split_args(data)
    gap = int(args[1]) if len(args) > 1 and args[1].strip().isdigit() else DTMF_GAP_MS
    dur = int(args[2]) if len(args) > 2 and args[2].strip().isdigit() else DTMF_DURATION_MS
    await e.send_dtmf(ch, args[0].strip(), gap, dur)


async def app_busy(e: Engine, ch: Channel, data: str) -> None:
    e.busy(ch, congestion=False)
    await e.wait(ch, float(data) if data.strip() else None)


async def app_congestion(e: Engine, ch: Channel, data: str) -> None:
    e.busy(ch, congestion=True)
    await e.wait(ch, float(data) if data.strip() else None)


async def app_hangup(e: Engine, ch: Channel, data: str) -> None:
    cause = int(data) if data.strip().isdigit() else Cause.NORMAL_CLEARING
    if ch.hangupcause == 0 or data.strip():
        ch.hangupcause = cause
    ch.soft16_emitted = True
    e.chan_event("SoftHangupRequest", ch, (("Cause", str(SOFTHANGUP_EXPLICIT)),))
    ch.soft_hangup = True
    raise ChannelHungup


def _goto_target(ch: Channel, spec: str) -> Jump:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 1:
        return Jump(ch.context, ch.exten, parts[0])
    if len(parts) == 2:
        return Jump(ch.context, parts[0], parts[1])
    return Jump(parts[0], parts[1], parts[2])


async def app_goto(e: Engine, ch: Channel, data: str) -> Jump:
    return _goto_target(ch, data)


async def app_gotoif(e: Engine, ch: Channel, data: str) -> Jump | None:
    if "?" not in data:
        return None
    cond, rest = data.split("?", 1)
    if ":" in rest:
        yes, no = rest.split(":", 1)
    else:
        yes, no = rest, ""
    target = yes if cond.strip() not in ("", "0") else no
    if not target.strip():
        return None
    return _goto_target(ch, target)


async def app_verbose(e: Engine, ch: Channel, data: str) -> None:
    return None


async def app_queue(e: Engine, ch: Channel, data: str) -> None:
    if e.queues is None:
        log.error("%s: Queue(%s) reached but queues are not loaded; the call ends", ch.name, data)
        return None
    await e.queues.run_queue_app(ch, data)
    return None


def bridge_fields(bridge_id: str) -> Callable[[int], tuple[tuple[str, str], ...]]:
    """The fields of a basic bridge's events, with ``BridgeNumChannels`` = n."""

    def fields(n: int) -> tuple[tuple[str, str], ...]:
        return (
            ("BridgeUniqueid", bridge_id),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", UNKNOWN),
            ("BridgeName", UNKNOWN),
            ("BridgeNumChannels", str(n)),
            ("BridgeVideoSourceMode", "none"),
        )

    return fields


async def app_bridge(e: Engine, ch: Channel, data: str) -> None:
    """``Bridge(channel[,options])`` as ``features.c`` ``bridge_exec``: the named channel
    (matched by name prefix) is taken out of its dialplan into a basic bridge with this one;
    ``BRIDGERESULT`` = ``NONEXISTENT`` (no such channel), ``LOOP`` (itself) or ``SUCCESS``.
    When the bridge ends this channel goes on in its dialplan; the other one goes on where it
    was, or with option ``x`` is hung up."""
    args = split_args(data)
    name = args[0].strip() if args else ""
    target = None
    if name:
        target = e.channels.get(name) or next(
            (c for n, c in e.channels.items() if n.startswith(name) and c.alive), None
        )
    if target is None or not target.alive or target.soft_hangup:
        e.setvar(ch, "BRIDGERESULT", "NONEXISTENT")
        return
    if target is ch:
        e.setvar(ch, "BRIDGERESULT", "LOOP")
        return
    kill = "x" in (args[1] if len(args) > 1 else "")
    loop = asyncio.get_running_loop()
    target.held_by_bridge = loop.create_future()
    if target.waiter is not None:
        _resolve(target.waiter, ("pulled", None))
    bridge_id = str(uuid.UUID(int=e.rng.getrandbits(128)))
    fields = bridge_fields(bridge_id)
    e.emit("BridgeCreate", fields(0))
    e.emit("BridgeEnter", fields(1) + target.header())
    e.emit("BridgeEnter", fields(2) + ch.header())
    ch.bridged, target.bridged = target, ch
    ch.bridge_id = target.bridge_id = bridge_id
    e.setvar(target, "BRIDGEPEER", ch.name)
    e.setvar(ch, "BRIDGEPEER", target.name)
    talk = e.queues.phone_talks(target) if e.queues is not None else None
    ended: asyncio.Future[str] = loop.create_future()

    def gone(who: str) -> Callable[[Channel], None]:
        return lambda _c: _resolve(ended, who)

    mine, theirs = gone("caller"), gone("peer")
    ch.hangup_listeners.append(mine)
    target.hangup_listeners.append(theirs)
    if ch.soft_hangup or not ch.alive:
        _resolve(ended, "caller")
    try:
        who = await ended
    finally:
        if talk is not None:
            talk.cancel()
        for cb, c in ((mine, ch), (theirs, target)):
            if cb in c.hangup_listeners:
                c.hangup_listeners.remove(cb)
    ch.bridged = target.bridged = None
    ch.bridge_id = target.bridge_id = ""
    first, second = (ch, target) if who == "caller" else (target, ch)
    e.emit("BridgeLeave", fields(1) + first.header())
    e.emit("BridgeLeave", fields(0) + second.header())
    e.emit("BridgeDestroy", fields(0))
    hold, target.held_by_bridge = target.held_by_bridge, None
    if hold is not None:
        _resolve(hold, ("hangup", None) if kill else ("timeout", None))
    e.setvar(ch, "BRIDGERESULT", "SUCCESS")
    if who == "caller":
        raise ChannelHungup


async def app_amd(e: Engine, ch: Channel, data: str) -> None:
    await run_amd(e, ch, data)


async def app_agi(e: Engine, ch: Channel, data: str) -> None:
    await run_agi(e, ch, data)


async def app_sim_called_party(e: Engine, ch: Channel, data: str) -> None:
    await run_called_party(e, ch, data)


APPS: dict[str, AppFunc] = {
    "Answer": app_answer,
    "NoOp": app_noop,
    "Set": app_set,
    "Wait": app_wait,
    "Playback": app_playback,
    "Ringing": app_ringing,
    "Progress": app_progress,
    "SendDTMF": app_senddtmf,
    "Busy": app_busy,
    "Congestion": app_congestion,
    "Hangup": app_hangup,
    "Goto": app_goto,
    "GotoIf": app_gotoif,
    "Verbose": app_verbose,
    "Queue": app_queue,
    "AMD": app_amd,
    "AGI": app_agi,
    "Bridge": app_bridge,
    "SimCalledParty": app_sim_called_party,
}
