"""Helpers for the simulated-PBX tests: a raw-socket AMI client, a tiny FastAGI server,
the dialer's Originate."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from dialer.sim.engine import OriginateRequest
from dialer.sim.events import AmiEvent

SECRET = os.environ.get("DIALER_AMI_SECRET", "test-only-ami-secret")


class RawAmi:
    """A bare-socket AMI client: send actions, read messages as dicts (no panoramisk)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = ""
        self._buf = b""
        self.messages: list[dict[str, str]] = []

    @classmethod
    async def connect(cls, port: int) -> RawAmi:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        c.banner = (await r.readline()).decode().strip()
        return c

    def send(self, *pairs: tuple[str, str], **kw: str) -> None:
        lines = [f"{k}: {v}" for k, v in pairs] + [f"{k}: {v}" for k, v in kw.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def pump(self, timeout: float = 0.05) -> list[dict[str, str]]:
        """Read whatever has arrived; returns the new messages (also kept in ``messages``)."""
        new: list[dict[str, str]] = []
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except TimeoutError:
                break
            if not data:
                self._buf += b"\r\n\r\n"
                break
            self._buf += data
        while b"\r\n\r\n" in self._buf:
            blk, self._buf = self._buf.split(b"\r\n\r\n", 1)
            if not blk.strip():
                continue
            msg: dict[str, str] = {}
            for line in blk.decode().split("\r\n"):
                if ": " in line:
                    k, v = line.split(": ", 1)
                elif line.endswith(":"):
                    k, v = line[:-1], ""
                else:
                    continue
                if k in msg:  # repeated keys (Variable:, Output:) are joined
                    msg[k] += "\n" + v
                else:
                    msg[k] = v
            new.append(msg)
        self.messages.extend(new)
        return new

    async def login(self, secret: str = SECRET, events: str = "on") -> dict[str, str]:
        self.send(
            Action="Login", ActionID="login-1", Username="dialer", Secret=secret, Events=events
        )
        msgs = await self.pump()
        return msgs[0] if msgs else {}

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        return [m for m in self.messages if "Event" in m and (name is None or m["Event"] == name)]

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


Script = Callable[[Callable[[str], Awaitable[str]]], Awaitable[None]]


class FastAgi:
    """A tiny FastAGI server for tests: runs ``script(cmd)`` for each session."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.replies: list[tuple[str, str]] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (await r.readline()).strip():
            pass

        async def cmd(line: str) -> str:
            w.write((line + "\n").encode())
            while True:
                reply = (await r.readline()).decode().strip()
                if reply != "HANGUP":
                    break
            self.replies.append((line, reply))
            return reply

        try:
            await self.script(cmd)
        finally:
            w.close()


def outbound(
    number: str, cid: str, agi_port: int = 0, flow: str = "", queue: str = "", hold: int = 2
) -> OriginateRequest:
    """The dialer's Originate (docs/contracts.md)."""
    return OriginateRequest(
        channel=f"Local/{number}@customer",
        context="dialer-outbound",
        exten="s",
        priority="1",
        timeout_ms=30000,
        callerid=("95588", "95588"),
        channel_id=cid,
        other_channel_id=cid + "-2",
        variables=(
            ("DIALER_ATTEMPT", "1"),
            ("DIALER_CAMPAIGN", "test"),
            ("DIALER_FLOW", flow),
            ("DIALER_QUEUE", queue),
            ("DIALER_HOLD", str(hold)),
            ("DIALER_AMD", "off"),
            ("DIALER_AGI", f"agi://127.0.0.1:{agi_port}"),
            ("DIALER_LANG", "zh"),
        ),
        action_id="a1",
        is_async=True,
    )


def names(events: list[AmiEvent], uid: str) -> list[str]:
    return [e.name for e in events if e.get("Uniqueid") == uid]


def varsets(events: list[AmiEvent], uid: str) -> dict[str, str]:
    return {
        str(e.get("Variable")): str(e.get("Value"))
        for e in events
        if e.name == "VarSet" and e.get("Uniqueid") == uid
    }
