"""The AMI adapter over real loopback sockets against a scripted peer that speaks recorded bytes.

The peer is deliberately dumb (it replays Asterisk's recorded replies); the full simulated PBX
is exercised in ``test_ami_e2e_sim.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator

import pytest
from ami_replay import fixture

from dialer.errors import AMIAuthFailed, AMIDisconnected, AMIError
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Event, Unrecognised
from dialer.telephony.ami.transcript import read_transcript

SECRET = "peer-secret"
CHINESE = "张伟明"


class Peer:
    """Greets, checks the login, answers Ping/CoreShowChannels/QueueStatus; can misbehave."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        self.sessions: list[asyncio.StreamWriter] = []
        self.swallow: set[str] = set()  # actions never answered
        self.on_login: bytes = b""  # raw bytes pushed right after a successful login
        self.chunk: int | None = None  # write in pieces of this many bytes
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for w in self.sessions:
            w.close()
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def drop_all(self) -> None:
        for w in self.sessions:
            w.transport.abort()
        self.sessions.clear()

    async def _write(self, w: asyncio.StreamWriter, data: bytes) -> None:
        if self.chunk is None:
            w.write(data)
        else:
            for i in range(0, len(data), self.chunk):
                w.write(data[i : i + self.chunk])
                await w.drain()
                await asyncio.sleep(0)
        await w.drain()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.sessions.append(w)
        framing = AMIFraming(expect_banner=False)
        try:
            await self._write(w, b"Asterisk Call Manager/11.0.0\r\n")
            while True:
                data = await r.read(4096)
                for msg in framing.receive_data(data):
                    if not isinstance(msg, Unrecognised):
                        continue
                    act = dict(msg.headers.pairs)
                    self.actions.append(act)
                    await self._answer(w, act)
                if not data:
                    return
        except (ConnectionError, OSError):
            return

    async def _answer(self, w: asyncio.StreamWriter, act: dict[str, str]) -> None:
        name, aid = act.get("Action", ""), act.get("ActionID", "")
        if name in self.swallow:
            return
        if name == "Login":
            ok = act.get("Secret") == SECRET
            status = "Success" if ok else "Error"
            msg = "Authentication accepted" if ok else "Authentication failed"
            await self._write(
                w, f"Response: {status}\r\nActionID: {aid}\r\nMessage: {msg}\r\n\r\n".encode()
            )
            if ok and self.on_login:
                await self._write(w, self.on_login)
            if not ok:
                w.close()
        elif name in ("CoreShowChannels", "QueueStatus"):
            await self._write(
                w,
                f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\n"
                f"Event: {name}Complete\r\nActionID: {aid}\r\nEventList: Complete\r\n"
                f"ListItems: 0\r\n\r\n".encode(),
            )
        else:
            await self._write(w, f"Response: Success\r\nActionID: {aid}\r\n\r\n".encode())


_CLIENTS: list[AMIClient] = []


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    while _CLIENTS:  # a failed test never reached its own close()
        await asyncio.wait_for(_CLIENTS.pop().close(), 5)
    await p.stop()


def client(port: int, **kw: object) -> AMIClient:
    opts: dict[str, object] = {
        "reconnect_min_s": 0.01,
        "reconnect_max_s": 0.05,
        "action_timeout_s": 1.0,
        "ping_interval_s": 3600,
    }
    opts.update(kw)
    c = AMIClient("127.0.0.1", port, "dialer", SECRET, **opts)  # type: ignore[arg-type]
    _CLIENTS.append(c)
    return c


def recorded_events_with_chinese() -> bytes:
    raw = read_transcript(fixture("ami-originate.txt"))[0].received_bytes()
    body = raw.split(b"\r\n", 1)[1]
    return body.replace(b"CallerIDName: Dialer", f"CallerIDName: {CHINESE}".encode())


@pytest.mark.parametrize("chunk", [1, 2, 7])
async def test_chinese_name_intact_over_tcp_in_tiny_writes(peer: Peer, chunk: int) -> None:
    peer.chunk = chunk
    peer.on_login = recorded_events_with_chinese()
    c = client(peer.server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    names: list[str] = []
    seen: list[str] = []
    done = asyncio.Event()

    def listener(e: Event) -> None:
        seen.append(e.name)
        if e.get("CallerIDName"):
            names.append(e.headers["CallerIDName"])
        if e.name == "Hangup" and e.get("Uniqueid", "").endswith("-2"):
            done.set()

    c.add_listener(listener)
    await c.start()
    await asyncio.wait_for(done.wait(), 10)
    await c.close()
    assert CHINESE in names and all("\ufffd" not in n for n in names)
    # and the async OriginateResponse reached the listeners (panoramisk swallows it)
    assert "OriginateResponse" in seen


async def test_ready_gate_waits_for_the_resync_hook(peer: Peer) -> None:
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    order: list[str] = []
    release = asyncio.Event()

    async def hook(c: AMIClient) -> None:
        res = await c.action("CoreShowChannels")
        order.append(f"resync {len(res.events)} {res.response.status}")
        await release.wait()

    c = client(port, on_connect=hook)
    await c.start()
    await asyncio.sleep(0.1)
    assert order == ["resync 0 Success"] and not c.ready.is_set()
    release.set()
    await c.wait_ready(2)
    await c.close()


async def test_pending_originate_fails_and_is_never_resent(peer: Peer) -> None:
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.swallow = {"Originate"}
    c = client(port, action_timeout_s=5.0)
    await c.start()
    await c.wait_ready(2)
    task = asyncio.create_task(c.action("Originate", [("Channel", "Local/+861@customer")]))
    await asyncio.sleep(0.05)
    peer.drop_all()
    with pytest.raises(AMIDisconnected):
        await task
    await c.wait_ready(2)  # reconnected (and logged in again)
    await asyncio.sleep(0.1)
    assert c.connections == 2
    assert [a["Action"] for a in peer.actions].count("Originate") == 1
    assert [a["Action"] for a in peer.actions].count("Login") == 2
    await c.close()


async def test_every_action_has_a_timeout(peer: Peer) -> None:
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.swallow = {"Ping"}
    c = client(port)
    await c.start()
    await c.wait_ready(2)
    with pytest.raises(AMIError, match="no response in time"):
        await c.action("Ping", timeout=0.1)
    await c.close()


async def test_wrong_secret_is_tried_once_and_stops_with_one_clear_line(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login is never retried (a switch with fail2ban would ban the dialer's
    address): the client gives up, and waiting for it raises ``AMIAuthFailed`` at once."""
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    c = AMIClient(
        "127.0.0.1",
        port,
        "dialer",
        "wrong",
        reconnect_min_s=0.01,
        reconnect_max_s=0.08,
        rng=random.Random(1),
    )
    _CLIENTS.append(c)
    caplog.set_level(logging.WARNING, logger="dialer.telephony.ami")
    await c.start()
    t0 = time.monotonic()
    with pytest.raises(AMIAuthFailed, match="login refused for user 'dialer'") as err:
        await c.wait_ready(5)
    assert time.monotonic() - t0 < 1.0  # not the timeout: the refusal itself
    assert "DIALER_AMI_SECRET" in str(err.value) and "\n" not in str(err.value)
    await asyncio.sleep(0.3)  # well past the back-off: still one login
    logins = [a for a in peer.actions if a["Action"] == "Login"]
    assert len(logins) == 1 and not c.ready.is_set()
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "not retrying" in line.getMessage()
    with pytest.raises(AMIAuthFailed):  # later waits too
        await c.wait_ready(0.1)
    await c.close()


async def test_not_connected_is_refused_at_once() -> None:
    c = AMIClient("127.0.0.1", 9, "dialer", SECRET)
    with pytest.raises(AMIDisconnected):
        await c.action("Ping")


async def test_half_open_connection_is_dropped_by_the_ping(peer: Peer) -> None:
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.swallow = {"Ping"}
    c = client(port, ping_interval_s=0.05, action_timeout_s=0.05)
    await c.start()
    await c.wait_ready(2)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if c.connections >= 2:
            break
    assert c.connections >= 2
    await c.close()


async def test_from_settings_reads_the_secret_from_the_environment() -> None:
    from dialer.settings import AMISettings

    c = AMIClient.from_settings(AMISettings(port=1234, username="u"), {"DIALER_AMI_SECRET": "s"})
    assert (c.port, c.username) == (1234, "u")
    assert "s" not in repr(c._secret)


async def test_connection_changes_are_logged_at_the_default_level(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)  # the CLI's default level
    port = peer.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    c = client(port)
    await c.start()
    await c.wait_ready(2)
    peer.drop_all()
    await asyncio.sleep(0.05)
    await c.wait_ready(2)
    await c.close()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("dialer.telephony.ami")]
    assert any("connection" in m and "reconnecting" in m for m in lines), lines
    assert any("reconnected after" in m for m in lines), lines
    assert all(r.levelno >= logging.WARNING for r in caplog.records)


async def test_actions_sent_in_one_pass_leave_in_one_write(peer: Peer) -> None:
    """A batch of Originates sent together is one socket write, not one system call each."""
    assert peer.server is not None
    port = peer.server.sockets[0].getsockname()[1]
    writes: list[bytes] = []

    class CountingWriter:
        def __init__(self, inner: asyncio.StreamWriter) -> None:
            self.inner = inner

        def write(self, data: bytes) -> None:
            writes.append(data)
            self.inner.write(data)

        def close(self) -> None:
            self.inner.close()

    async def opener() -> tuple[asyncio.StreamReader, CountingWriter]:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return r, CountingWriter(w)

    c = client(port, opener=opener)
    await c.start()
    await c.wait_ready(5)
    writes.clear()
    results = await asyncio.gather(*(c.action("Ping") for _ in range(20)))
    assert all(r.response.ok for r in results)
    assert len(writes) == 1 and writes[0].count(b"Action: Ping") == 20
    await c.close()
