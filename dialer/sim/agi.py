"""The simulated PBX's FastAGI client: ``AGI(agi://host:port/script?args,arg1,...)``.

Behaves as Asterisk 22 did in ``tests/fixtures/asterisk/transcripts/fastagi-*.txt``:
the ``agi_`` environment, one reply per command, ``AGIExecStart``/``AGIExecEnd`` events, the
bare ``HANGUP`` line when the channel goes away (at once when no command runs, right after
the ``-1`` reply of the running one otherwise), ``511`` after it except for ``GET VARIABLE``,
``GET FULL VARIABLE`` and ``VERBOSE``, and ``AGISTATUS`` (``SUCCESS``, ``FAILURE`` when the
server is unreachable or a command failed, ``HANGUP``). The application returns only when the
FastAGI server closes the socket, even after a hang-up (recorded).

The command table (``COMMANDS``) and reply strings are pure; the session is a thin asyncio
adapter whose reads are wrapped in ``clock.io()`` so virtual time stands still while the
FastAGI server thinks.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dialer.sim.dialplan import split_args, substitute
from dialer.sim.events import SOFTHANGUP_AGI, UNKNOWN, ChannelHungup
from dialer.sim.sounds import SAMPLE_RATE, SAY_DIGIT_S, SAY_NUMBER_WORD_S

if TYPE_CHECKING:  # the engine runs this application
    from dialer.sim.engine import Channel, Engine

log = logging.getLogger(__name__)

AGI_VERSION = "22.10.1"
DEFAULT_AGI_PORT = 4573
HANGUP_LINE_DELAY_S = 0.04
R_DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
R_UNKNOWN = "510 Invalid or unknown command"
#: Commands that still work on a dead channel (recorded).
DEAD_OK = ("GET VARIABLE", "GET FULL VARIABLE", "VERBOSE")

USAGE = {
    "WAIT FOR DIGIT": [
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a "
        "DTMF digit. Returns <literal>-1</literal> on channel failure, <literal>0</literal> if "
        "no digit is received in the timeout, or the numerical value of the ascii of the digit "
        "if one is received. Use <literal>-1</literal> for the <replaceable>timeout</replaceable>"
        " value if you desire the call to block indefinitely."
    ],
    "STREAM FILE": [
        "Send the given file, allowing playback to be interrupted by the given digits, if any. "
        "Returns <literal>0</literal> if playback completes without a digit being pressed, or "
        "the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on "
        "error or if the channel was disconnected. If musiconhold is playing before calling "
        "stream file it will be automatically stopped and will not be restarted after "
        "completion.",
        "It sets the following channel variables upon completion:",
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ],
    "GET DATA": ["Stream the given <replaceable>file</replaceable>, and receive DTMF data."],
    "SAY DIGITS": [
        "Say a given digit string, returning early if any of the given DTMF digits "
        "are received on the channel."
    ],
    "SAY NUMBER": [
        "Say a given number, returning early if any of the given DTMF digits are "
        "received on the channel."
    ],
    "SET VARIABLE": ["Sets a variable to the current channel."],
    "GET VARIABLE": [
        "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set."
    ],
    "EXEC": [
        "Executes <replaceable>application</replaceable> with given "
        "<replaceable>options</replaceable>."
    ],
}


@dataclass(frozen=True, slots=True)
class Reply:
    """What Asterisk answers to one command, and how ``AGIExecEnd`` reports it."""

    text: str
    code: str = "200"
    result: str = "Success"


def usage_reply(cmd: str) -> Reply:
    lines = ["520-Invalid command syntax.  Proper usage follows:", *USAGE.get(cmd, [cmd])]
    lines.append("520 End of proper usage.")
    return Reply("\n".join(lines), "520", "Usage")


def ok(result: str, extra: str = "") -> Reply:
    return Reply(f"200 result={result}{(' ' + extra) if extra else ''}")


def fail(extra: str = "") -> Reply:
    return Reply(f"200 result=-1{(' ' + extra) if extra else ''}", "-1", "Failure")


def split_command(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError:
        return line.split()


def parse_agi_url(data: str) -> tuple[str, int, str, list[str]]:
    """``agi://host:port/script?x=1,arg1,arg2`` -> (host, port, network_script, args)."""
    args = split_args(data)
    url = args[0].strip()
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_AGI_PORT
    script = url.split("/", 3)[3] if url.count("/") >= 3 else ""
    return host, port, script, [a for a in args[1:]]


@dataclass
class AgiSession:
    engine: Engine
    ch: Channel
    writer: asyncio.StreamWriter | None = None
    executing: bool = False
    hangup_sent: bool = False
    failed: bool = False
    hangup_timer: Any = None
    hangup_due: float = 0.0

    @property
    def dead(self) -> bool:
        return self.ch.soft_hangup or not self.ch.alive

    def write(self, text: str) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write((text + "\n").encode("utf-8"))

    def send_hangup_line(self) -> None:
        if not self.hangup_sent:
            self.hangup_sent = True
            self.write("HANGUP")

    def on_hangup(self, _ch: Channel) -> None:
        if not self.executing:
            self.send_hangup_line()

    def schedule_hangup_line(self) -> None:
        """After a reply on a dead channel Asterisk sends ``HANGUP`` ~40 ms later (recorded),
        or at once when the next command arrives first."""
        if not self.hangup_sent and self.hangup_timer is None:
            self.hangup_due = self.engine.clock.now() + HANGUP_LINE_DELAY_S
            self.hangup_timer = self.engine.clock.call_later(
                HANGUP_LINE_DELAY_S, self.send_hangup_line
            )

    # ------------------------------------------------------------------ commands
    async def execute(self, line: str) -> Reply:
        words = split_command(line)
        upper = [w.upper() for w in words]
        name = None
        for n in (3, 2, 1):
            cand = " ".join(upper[:n])
            if cand in HANDLERS:
                name = cand
                break
        if name is None:
            return Reply(R_UNKNOWN, "510", "Invalid or unknown command")
        if self.dead and self.hangup_sent and name not in DEAD_OK:
            return Reply(R_DEAD, "511", R_DEAD[4:])
        if self.dead and name not in DEAD_OK:
            return Reply(R_DEAD, "511", R_DEAD[4:])
        args = words[len(name.split()) :]
        try:
            return await HANDLERS[name](self, args)
        except _Usage:
            return usage_reply(name)


class _Usage(Exception):
    pass


def _need(args: list[str], n: int) -> None:
    if len(args) < n:
        raise _Usage


async def c_answer(s: AgiSession, args: list[str]) -> Reply:
    s.engine.answer(s.ch)
    return ok("0")


async def c_hangup(s: AgiSession, args: list[str]) -> Reply:
    ch = s.ch
    s.engine.chan_event("SoftHangupRequest", ch, (("Cause", str(SOFTHANGUP_AGI)),))
    ch.soft_hangup = True
    return ok("1")


async def c_verbose(s: AgiSession, args: list[str]) -> Reply:
    return ok("1")


async def c_noop(s: AgiSession, args: list[str]) -> Reply:
    return ok("0")


async def c_channel_status(s: AgiSession, args: list[str]) -> Reply:
    return ok(str(int(s.ch.state)))


async def c_get_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    value = s.engine.resolver(s.ch)(args[0])
    if value is None:
        return ok("0")
    return ok("1", f"({value})")


async def c_get_full_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    return ok("1", f"({substitute(args[0], s.engine.resolver(s.ch))})")


async def c_set_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    s.engine.setvar(s.ch, args[0], args[1])
    return ok("1")


async def c_stream_file(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    e, ch = s.engine, s.ch
    prompt = e.sounds.lookup(args[0], ch.language)
    if prompt is None:
        s.failed = True
        return Reply("200 result=-1 endpos=0", "-1", "Failure")
    start = e.clock.now()
    try:
        _, digit, played = await e.play(ch, args[0], args[1] or None)
    except ChannelHungup:
        endpos = int((e.clock.now() - start) * SAMPLE_RATE)
        e.setvar(ch, "PLAYBACKSTATUS", "FAILED")
        return fail(f"endpos={endpos}")
    endpos = int(played * SAMPLE_RATE)
    if digit is not None:
        e.setvar(ch, "PLAYBACKSTATUS", "FAILED")
        return ok(str(ord(digit)), f"endpos={endpos}")
    e.setvar(ch, "PLAYBACKSTATUS", "SUCCESS")
    return ok("0", f"endpos={endpos}")


async def c_wait_for_digit(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    try:
        ms = int(args[0])
    except ValueError as exc:
        raise _Usage from exc
    try:
        kind, digit = await s.engine.wait(s.ch, None if ms < 0 else ms / 1000.0, "0123456789*#ABCD")
    except ChannelHungup:
        return fail()
    return ok(str(ord(digit)) if digit else "0")


async def c_get_data(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    e, ch = s.engine, s.ch
    timeout = float(args[1]) / 1000.0 if len(args) > 1 and args[1].lstrip("-").isdigit() else 6.0
    maxd = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1024
    got = ""
    try:
        prompt = e.sounds.lookup(args[0], ch.language)
        if prompt is not None:
            _, digit, _ = await e.play(ch, args[0], "0123456789*#")
            if digit is not None:
                if digit == "#":
                    return ok(got)
                got += digit
        while len(got) < maxd:
            kind, digit = await e.wait(ch, timeout, "0123456789*#")
            if kind == "timeout" or digit is None:
                return ok(f"{got} (timeout)" if got else " (timeout)")
            if digit == "#":
                break
            got += digit
    except ChannelHungup:
        return fail()
    return ok(got)


async def _say(s: AgiSession, words: int, per: float, escape: str) -> Reply:
    try:
        kind, digit = await s.engine.wait(s.ch, words * per, escape or None)
    except ChannelHungup:
        return fail()
    return ok(str(ord(digit)) if digit else "0")


async def c_say_digits(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    return await _say(s, len(args[0]), SAY_DIGIT_S, args[1])


async def c_say_number(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    n = args[0].lstrip("-")
    words = max(1, len(n)) if len(n) <= 2 else len(n) + 1
    return await _say(s, words, SAY_NUMBER_WORD_S, args[1])


async def c_exec(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    app = next((a for a in s.engine.apps if a.lower() == args[0].lower()), None)
    if app is None or app in ("AGI",):
        return Reply("200 result=-2", "200", "Unknown Result")
    data = " ".join(args[1:])
    try:
        await s.engine.apps[app](s.engine, s.ch, data)
    except ChannelHungup:
        return fail()
    return ok("0")


async def c_set_music(s: AgiSession, args: list[str]) -> Reply:
    return ok("0")


HANDLERS = {
    "ANSWER": c_answer,
    "HANGUP": c_hangup,
    "VERBOSE": c_verbose,
    "NOOP": c_noop,
    "CHANNEL STATUS": c_channel_status,
    "GET VARIABLE": c_get_variable,
    "GET FULL VARIABLE": c_get_full_variable,
    "SET VARIABLE": c_set_variable,
    "STREAM FILE": c_stream_file,
    "WAIT FOR DIGIT": c_wait_for_digit,
    "GET DATA": c_get_data,
    "SAY DIGITS": c_say_digits,
    "SAY NUMBER": c_say_number,
    "EXEC": c_exec,
    "SET MUSIC": c_set_music,
}


def agi_environment(e: Engine, ch: Channel, url: str, script: str, args: list[str]) -> list[str]:
    has_cid = ch.cid_num != UNKNOWN
    env = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", url),
        ("agi_channel", ch.name),
        ("agi_language", ch.language),
        ("agi_type", ch.name.split("/", 1)[0]),
        ("agi_uniqueid", ch.uniqueid),
        ("agi_version", AGI_VERSION),
        ("agi_callerid", ch.cid_num if has_cid else "unknown"),
        ("agi_calleridname", ch.cid_name if ch.cid_name != UNKNOWN else "unknown"),
        ("agi_callingpres", "0" if has_cid else "67"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", ch.context),
        ("agi_extension", ch.exten),
        ("agi_priority", str(ch.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ch.accountcode),
        ("agi_threadid", str(next(e._thread_seq))),
    ]
    env += [(f"agi_arg_{i}", a) for i, a in enumerate(args, 1)]
    return [f"{k}: {v}" for k, v in env] + [""]


async def run_agi(e: Engine, ch: Channel, data: str) -> None:
    url = split_args(data)[0].strip()
    host, port, script, args = parse_agi_url(data)
    host, port = e.agi_port_map.get((host, port), (host, port))
    session = AgiSession(e, ch)
    try:
        with e.clock.io():
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    except (TimeoutError, OSError):
        log.info("%s: FastAGI %s:%s unreachable", ch.name, host, port)
        e.setvar(ch, "AGISTATUS", "FAILURE")
        return
    session.writer = writer
    ch.hangup_listeners.append(session.on_hangup)
    try:
        for line in agi_environment(e, ch, url, script, args):
            session.write(line)
        if session.dead:
            session.send_hangup_line()
        while True:
            with e.clock.io():
                try:
                    raw = await reader.readline()
                except (ConnectionError, OSError):
                    raw = b""
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            if session.hangup_timer is not None and not session.hangup_sent:
                session.hangup_timer.cancel()
                session.send_hangup_line()
                await e.clock.sleep(max(0.0, session.hangup_due - e.clock.now()))
            cmd_id = str(e.rng.randrange(100_000_000, 2_147_483_647))
            e.chan_event("AGIExecStart", ch, (("CommandId", cmd_id), ("Command", line)), "agi")
            session.executing = True
            try:
                reply = await session.execute(line)
            finally:
                session.executing = False
            if reply.code == "-1" and not session.dead:
                session.failed = True
            e.chan_event(
                "AGIExecEnd",
                ch,
                (
                    ("CommandId", cmd_id),
                    ("Command", line),
                    ("ResultCode", reply.code),
                    ("Result", reply.result),
                ),
                "agi",
            )
            session.write(reply.text)
            if session.dead:
                session.schedule_hangup_line()
    finally:
        if session.hangup_timer is not None:
            session.hangup_timer.cancel()
        if session.on_hangup in ch.hangup_listeners:
            ch.hangup_listeners.remove(session.on_hangup)
        writer.close()
        try:
            with e.clock.io():
                await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    status = "FAILURE" if session.failed else ("HANGUP" if session.dead else "SUCCESS")
    e.setvar(ch, "AGISTATUS", status)
