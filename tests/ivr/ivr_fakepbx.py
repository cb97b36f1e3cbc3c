"""A test peer that speaks AGI the way Asterisk 22 does (see /work/shared/asterisk/README.md).

``FakeAsterisk`` is sans-I/O: ``header()`` gives the ``agi_*`` block, ``reply(line)`` the
bytes Asterisk would answer to one command line. A ``Persona`` plays the caller:

* ``answers``: what the caller types each time the IVR waits for input. An answer is taken
  when a ``WAIT FOR DIGIT`` finds nothing typed yet, or - if it starts with ``!`` - the
  caller barges in on the next interruptible prompt. ``None`` = says nothing (timeout).
* ``early``: digits pressed during the first non-interruptible prompt: lost, as in
  ``ami-dtmflost.txt``.
* ``hangup_after``: the caller hangs up after that many commands were answered; ``hangup_mode``
  ``between`` = bare ``HANGUP`` then ``511``; ``during`` = the command in flight returns
  ``result=-1`` and the ``HANGUP`` line follows (the recorded orders).

Drivers: ``memory_io`` (read/write functions for ``BlockingAGI``) and ``run_tcp`` (a real
client over loopback).
"""

from __future__ import annotations

import asyncio
import shlex
from collections import deque
from dataclasses import dataclass, field

DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
USAGE = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage text here.\n"
    b"520 End of proper usage.\n"
)


@dataclass
class Persona:
    answers: list[str | None] = field(default_factory=list)
    early: str = ""
    hangup_after: int | None = None
    hangup_mode: str = "between"
    not_installed: frozenset[str] = frozenset()  # prompts Asterisk cannot find


def header(
    script: str, *, language: str = "zh", args: tuple[str, ...] = (), port: int = 4573
) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:{port}/{script}",
        "agi_channel: Local/+8613800000486@customer-00000011;1",
        f"agi_language: {language}",
        "agi_type: Local",
        "agi_uniqueid: 8b0195a0-3778-4a5b-916d-757d2a3f4ab6",
        "agi_version: 22.10.1",
        "agi_callerid: 95588",
        "agi_calleridname: Dialer",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        "agi_dnid: unknown",
        "agi_rdnis: unknown",
        "agi_context: dialer-outbound",
        "agi_extension: s",
        "agi_priority: 4",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140633771603648",
    ]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class FakeAsterisk:
    persona: Persona
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    played: list[str] = field(default_factory=list)
    lost: str = ""
    dead: bool = False
    _buffer: str = ""
    _answers: deque[str | None] = field(default_factory=deque)
    _early_used: bool = False

    def __post_init__(self) -> None:
        self._answers = deque(self.persona.answers)

    # -- caller ---------------------------------------------------------------------------

    def _take_answer(self) -> None:
        if self._answers:
            a = self._answers.popleft()
            if a:
                self._buffer += a.lstrip("!")

    def _key(self) -> str | None:
        if not self._buffer:
            return None
        k, self._buffer = self._buffer[0], self._buffer[1:]
        return k

    # -- AGI --------------------------------------------------------------------------------

    def reply(self, line: str) -> bytes:
        self.commands.append(line)
        words = shlex.split(line)
        verb = " ".join(words[:2]).upper()
        if self.dead:
            if verb in ("GET VARIABLE",) or words[0].upper() == "VERBOSE":
                return b"200 result=0\n" if verb == "GET VARIABLE" else b"200 result=1\n"
            return DEAD
        ha = self.persona.hangup_after
        if ha is not None and len(self.commands) > ha:
            self.dead = True
            if self.persona.hangup_mode == "during" and verb in (
                "STREAM FILE",
                "WAIT FOR",
                "GET DATA",
            ):
                return b"200 result=-1 endpos=1200\nHANGUP\n"
            return b"HANGUP\n" + DEAD
        return self._alive(verb, words)

    def _alive(self, verb: str, words: list[str]) -> bytes:
        if verb == "STREAM FILE":
            if len(words) < 4:
                return USAGE
            prompt, escape = words[2], words[3]
            self.played.append(prompt)
            if prompt in self.persona.not_installed:
                return b"200 result=-1 endpos=0\n"  # recorded: missing file, channel alive
            if not escape:
                if self.persona.early and not self._early_used:
                    self._early_used = True
                    self.lost += self.persona.early
                self.lost += self._buffer  # typed-ahead keys are lost too
                self._buffer = ""
                return b"200 result=0 endpos=8000\n"
            if not self._buffer and self._answers and (self._answers[0] or "").startswith("!"):
                self._take_answer()
            k = self._key()
            if k is not None:
                return f"200 result={ord(k)} endpos=4000\n".encode()
            return b"200 result=0 endpos=8000\n"
        if verb == "WAIT FOR":
            if not self._buffer:
                self._take_answer()
            k = self._key()
            return f"200 result={ord(k) if k else 0}\n".encode()
        if verb == "GET DATA":
            n = int(words[4]) if len(words) > 4 else 1024
            got = ""
            while len(got) < n:
                k = self._key()
                if k is None:
                    return f"200 result={got} (timeout)\n".encode()
                if k == "#":
                    break
                got += k
            return f"200 result={got}\n".encode()
        if verb == "SET VARIABLE":
            self.variables[words[2]] = words[3] if len(words) > 3 else ""
            return b"200 result=1\n"
        if verb == "GET VARIABLE":
            v = self.variables.get(words[2])
            return f"200 result=1 ({v})\n".encode() if v is not None else b"200 result=0\n"
        if words[0].upper() in ("ANSWER",):
            return b"200 result=0\n"
        if words[0].upper() == "VERBOSE":
            return b"200 result=1\n"
        if words[0].upper() == "HANGUP":
            self.dead = True
            return b"200 result=1\nHANGUP\n"
        return b"510 Invalid or unknown command\n"


def memory_io(pbx: FakeAsterisk, head: bytes) -> tuple[object, object]:
    """read/write callables for ``BlockingAGI`` wired to ``pbx``."""
    out = bytearray(head)
    pending = bytearray()

    def write(data: bytes) -> None:
        pending.extend(data)
        while b"\n" in pending:
            i = pending.index(b"\n")
            line = pending[:i].decode()
            del pending[: i + 1]
            out.extend(pbx.reply(line))

    def read(n: int) -> bytes:
        chunk = bytes(out[:n])
        del out[:n]
        return chunk  # b"" = Asterisk closed

    return read, write


async def run_tcp(port: int, pbx: FakeAsterisk, head: bytes, *, timeout: float = 10.0) -> None:
    """Play ``pbx`` against a FastAGI server until it closes the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await play(reader, writer, pbx, timeout=timeout)


async def play(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pbx: FakeAsterisk,
    *,
    timeout: float = 10.0,
) -> None:
    """Answer the server's commands as ``pbx`` (the header already sent) until it closes."""
    try:
        await writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(pbx.reply(line.decode().rstrip("\n")))
                await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
