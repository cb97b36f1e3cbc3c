"""A TCP proxy between the dialer and Asterisk's AMI that a test can cut, and that records every
``Originate`` passing through: the switch's own view of what was dialled.

With ``record`` set, it also writes what passed, both ways, as a transcript in the format of
``tests/fixtures/ami/`` (``dialer.telephony.ami.transcript`` reads it back): that is how the
``real-*.txt`` recordings there were made. The login secret is written as ``EXAMPLE-SECRET``.

``cut()`` drops every connection at once (both sides see a reset, as when a firewall or a
network link goes); while ``refusing`` is set, new connections are closed on accept, so the
dialer's reconnects fail until the test lets them through.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_SECRET = re.compile(rb"^(Secret:).*$", re.M | re.I)


@dataclass(frozen=True)
class Originate:
    action_id: str
    channel: str
    attempt: str  # the DIALER_ATTEMPT variable


def parse_originates(block: bytes) -> Originate | None:
    headers: dict[str, list[str]] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            headers.setdefault(key.strip().lower(), []).append(value.strip())
    if [a.lower() for a in headers.get("action", [])] != ["originate"]:
        return None
    attempt = ""
    for var in headers.get("variable", []):
        for part in var.split(","):
            name, _, value = part.partition("=")
            if name.strip() == "DIALER_ATTEMPT":
                attempt = value.strip()
    return Originate(
        action_id=headers.get("actionid", [""])[0],
        channel=headers.get("channel", [""])[0],
        attempt=attempt,
    )


@dataclass
class AmiTap:
    upstream_port: int
    host: str = "127.0.0.1"
    refusing: bool = False
    originates: list[Originate] = field(default_factory=list)
    connections: int = 0
    cuts: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    record: Path | None = None
    _out: TextIO | None = None
    _t0: float = 0.0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        if self.record is not None:
            self._out = self.record.open("w", encoding="utf-8", newline="\n")
            self._t0 = time.monotonic()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._out is not None:
            self._out.close()

    def note(self, text: str) -> None:
        """A scenario line in the recording (``### [t] ===== text``)."""
        self._mark(f"===== {text}")

    def _mark(self, what: str) -> None:
        if self._out is not None:
            self._out.write(f"### [{time.monotonic() - self._t0:8.3f}] {what}\n")

    def _write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))

    def cut(self) -> None:
        """Drop every connection now (RST, not a polite FIN)."""
        self.cuts += 1
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def attempts_dialled(self) -> list[str]:
        return [o.attempt for o in self.originates]

    async def wait_originates(self, n: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.originates) < n:
                await asyncio.sleep(0.05)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_w}
        await asyncio.gather(
            self._pipe(reader, up_w, sent=True),
            self._pipe(up_r, writer, sent=False),
            return_exceptions=True,
        )
        self._mark("EOF")
        for w in (writer, up_w):
            self._writers.discard(w)
            w.transport.abort()

    def _message(self, block: bytes, *, sent: bool) -> None:
        if not sent:
            self._write(block + b"\r\n\r\n")
            return
        if (o := parse_originates(block)) is not None:
            self.originates.append(o)
        self._mark("SEND")
        self._write(_SECRET.sub(rb"\1 EXAMPLE-SECRET", block) + b"\r\n\r\n")

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sent: bool
    ) -> None:
        buf = b""
        banner = not sent
        try:
            while data := await reader.read(65536):
                buf += data
                if banner and b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self._mark(f"BANNER '{line.decode('utf-8', 'replace')}'")
                    banner = False
                *blocks, buf = buf.split(b"\r\n\r\n")
                for block in blocks:
                    self._message(block, sent=sent)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
