"""Helpers for the simulated-PBX tests: a raw-socket AMI client."""

from __future__ import annotations

import asyncio
import os

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
