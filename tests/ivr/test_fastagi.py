"""The FastAGI server on port 0, driven over loopback by a client that speaks like Asterisk,
and by hostile peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ivr_fakepbx import FakeAsterisk, Persona, header, run_tcp
from ivr_testkit import ID_LAST6, seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import IvrSession
from ivr.engine import Services, SessionStatus
from ivr.fastagi import FastAGIServer


@pytest.fixture
async def server(services: Services) -> AsyncIterator[FastAGIServer]:
    srv = FastAGIServer(services, port=0, header_timeout=0.5)
    await srv.start()
    yield srv
    await srv.close(grace=1)


async def session(srv: FastAGIServer, script: str, persona: Persona, **kw: object) -> FakeAsterisk:
    pbx = FakeAsterisk(persona)
    await run_tcp(srv.port, pbx, header(script, port=srv.port, **kw))  # type: ignore[arg-type]
    return pbx


async def wait_idle(srv: FastAGIServer, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.active and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert srv.active == 0


def sessions(store: Store) -> list[IvrSession]:
    with store.session() as s:
        return list(s.scalars(select(IvrSession).order_by(IvrSession.id)))


async def test_binds_loopback_port_zero(server: FastAGIServer) -> None:
    assert server.port > 0 and server.host == "127.0.0.1"


async def test_full_session_over_tcp(server: FastAGIServer, store: Store) -> None:
    aid = seed_attempt(store, "card_activation")
    pbx = await session(server, f"card_activation?attempt={aid}", Persona(answers=[ID_LAST6, "1"]))
    assert pbx.variables == {"IVR_RESULT": "activated", "IVR_NEXT": "hangup"}
    await wait_idle(server)
    (row,) = sessions(store)
    assert (row.attempt_id, row.status, row.result) == (aid, "completed", "activated")
    assert server.stats.completed == 1


async def test_attempt_as_agi_arg(server: FastAGIServer, store: Store) -> None:
    aid = seed_attempt(store, "satisfaction_survey")
    pbx = await session(server, "satisfaction_survey", Persona(answers=["5"]), args=(str(aid),))
    assert pbx.variables["IVR_RESULT"] == "rated_5"
    await wait_idle(server)
    assert sessions(store)[0].attempt_id == aid


async def test_hangup_over_tcp_records_partial(server: FastAGIServer, store: Store) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    await session(
        server, f"repayment_reminder?attempt={aid}", Persona(answers=["1"], hangup_after=6)
    )
    await wait_idle(server)
    (row,) = sessions(store)
    assert row.status == "hangup" and row.ended_at is not None
    assert server.stats.hangup == 1


async def test_asterisk_closing_socket_mid_command_is_a_hangup(
    server: FastAGIServer, store: Store
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(header("notice"))
    await reader.readline()  # ANSWER
    writer.write(b"200 result=0\n")
    await reader.readline()  # STREAM FILE
    writer.close()
    await wait_idle(server)
    assert sessions(store)[0].status == "hangup"


async def test_many_concurrent_sessions(server: FastAGIServer, store: Store) -> None:
    pbxs = await asyncio.gather(
        *(
            session(server, "satisfaction_survey", Persona(answers=[str(i % 5 + 1)]))
            for i in range(40)
        )
    )
    assert sorted(p.variables["IVR_RESULT"] for p in pbxs) == sorted(
        f"rated_{i % 5 + 1}" for i in range(40)
    )
    await wait_idle(server)
    assert server.stats.completed == 40


async def test_unknown_flow_is_closed(server: FastAGIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(header("no_such_flow"))
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    assert server.stats.unknown_flow == 1


# --- hostile peers ----------------------------------------------------------------------


async def good_session_is_prompt(srv: FastAGIServer) -> float:
    """A whole good session still runs after the bad one. A server wedged or throttled by the bad
    connection would not answer at all or only after its own timeouts; the bound leaves room for
    a loaded CI machine (a session took 1.3 s there with four test workers on two cores)."""
    t = time.monotonic()
    pbx = await asyncio.wait_for(session(srv, "satisfaction_survey", Persona(answers=["3"])), 10)
    assert pbx.variables["IVR_RESULT"] == "rated_3"
    return time.monotonic() - t


async def test_closed_before_header_end(server: FastAGIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(header("notice")[:40])
    writer.close()
    await wait_idle(server)
    assert server.stats.bad_header == 1
    assert await good_session_is_prompt(server) < 5.0


async def test_a_health_probe_is_counted_not_warned(
    server: FastAGIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The dialer's health check connects and closes: no bad header, no warning."""
    caplog.set_level(logging.WARNING, logger="ivr.fastagi")
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    for _ in range(200):
        if server.stats.probes:
            break
        await asyncio.sleep(0.01)
    await wait_idle(server)
    assert (server.stats.probes, server.stats.bad_header) == (1, 0)
    assert not [r for r in caplog.records if r.name.startswith("ivr")]
    assert await good_session_is_prompt(server) < 5.0


async def test_header_that_never_ends_is_cut(server: FastAGIServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\n")
    t = time.monotonic()
    for _ in range(20):  # keep trickling header lines: the limit is on the whole header
        writer.write(b"agi_x: y\n")
        await asyncio.sleep(0.05)
        if reader.at_eof():
            break
    try:
        got = await asyncio.wait_for(reader.read(), 2)
    except ConnectionResetError:  # cut while a trickled line was in flight: the kernel resets
        got = b""
    assert got == b""
    assert 0.4 < time.monotonic() - t < 2.0
    writer.close()
    assert server.stats.header_timeout == 1
    assert await good_session_is_prompt(server) < 5.0


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 4, b"\n\n\n", b"x" * 100_000],
)
async def test_garbage_is_dropped(server: FastAGIServer, garbage: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(garbage)
    try:
        assert await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        pass
    writer.close()
    await wait_idle(server)
    assert server.stats.bad_header == 1
    assert await good_session_is_prompt(server) < 5.0


async def test_thousand_connections_opened_and_dropped(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ivr.fastagi")
    srv = FastAGIServer(services, port=0, header_timeout=2.0, max_sessions=1000)
    await srv.start()
    try:
        baseline_tasks = len(asyncio.all_tasks())
        baseline_fds = len(os.listdir("/proc/self/fd"))
        socks: list[socket.socket] = []
        for i in range(1000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", srv.port))
            except BlockingIOError:
                pass
            socks.append(s)
            if i % 3 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        for i, s in enumerate(socks):
            if i % 2:
                try:
                    s.send(b"agi_network: yes\nagi_network_scr")  # half a header
                except OSError:
                    pass
            s.close()
        await wait_idle(srv, timeout=10)
        assert srv.stats.accepted == 1000
        assert srv.stats.sessions == 0
        # no spin: an idle server burns (almost) no CPU
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.15
        # no leak: tasks back to baseline; a good session is served at once
        assert len(asyncio.all_tasks()) <= baseline_tasks
        assert len(os.listdir("/proc/self/fd")) <= baseline_fds + 2
        assert await good_session_is_prompt(srv) < 1.0
    finally:
        await srv.close(grace=1)


async def test_at_the_limit_waiting_connections_make_way_and_live_sessions_stay(
    services: Services, store: Store
) -> None:
    srv = FastAGIServer(services, port=0, max_sessions=2, header_timeout=5)
    await srv.start()
    opened: list[asyncio.StreamWriter] = []
    try:
        # two connections that send nothing: a real session takes the oldest one's place
        for _ in range(2):
            opened.append((await asyncio.open_connection("127.0.0.1", srv.port))[1])
        await asyncio.sleep(0.05)
        assert await good_session_is_prompt(srv) < 1.0
        assert srv.stats.evicted == 1
        # two live sessions (Asterisk silent after ANSWER): a new connection is closed at once
        for flow in ("notice", "card_activation"):
            aid = seed_attempt(store, flow)
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            opened.append(w)
            w.write(header(f"{flow}?attempt={aid}"))
            assert (await r.readline()).startswith(b"ANSWER")
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        opened.append(writer)
        t = time.monotonic()
        try:
            data = await asyncio.wait_for(reader.read(), 2)
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - t < 0.5
        assert srv.stats.rejected_busy == 1 and srv.stats.sessions == 3
    finally:
        for w in opened:
            w.close()
        await srv.close(grace=0.2)
        for w in opened:
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()


async def test_graceful_shutdown_interrupts_stuck_session(services: Services, store: Store) -> None:
    srv = FastAGIServer(services, port=0)
    await srv.start()
    aid = seed_attempt(store, "notice")
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(header(f"notice?attempt={aid}"))
    await reader.readline()  # ANSWER - and then Asterisk "hangs" without replying
    t = time.monotonic()
    await srv.close(grace=0.2)
    assert time.monotonic() - t < 3
    (row,) = sessions(store)
    assert row.status == SessionStatus.ERROR.value and "SessionInterrupted" in row.data["error"]
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", srv.port)


async def test_session_log_masks_personal_data(
    server: FastAGIServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, at every level
    aid = seed_attempt(store, "card_activation")
    await session(server, f"card_activation?attempt={aid}", Persona(answers=[ID_LAST6, "1"]))
    await wait_idle(server)
    text = caplog.text
    assert "status=completed result=activated" in text
    assert "8613800000486" not in text and ID_LAST6 not in text
    assert "0486" in text  # the masked channel keeps the last four


async def test_start_in_process_for_other_programs(store: Store) -> None:
    from ivr.fastagi import start_in_process

    srv = await start_in_process(store, header_timeout=1.0)
    try:
        aid = seed_attempt(store, "opt_out")
        pbx = await session(srv, f"opt_out?attempt={aid}", Persona(answers=["9"]))
        assert pbx.variables["IVR_RESULT"] == "opted_out"
    finally:
        await srv.close(grace=1)
    assert sessions(store)[0].result == "opted_out"


async def test_reload_flows_swaps_whole_library_or_refuses(
    services: Services, tmp_path: Path
) -> None:
    from ivr.errors import FlowDefinitionError
    from ivr.flow import default_flows_dir

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "notice.yaml").write_text(
        (default_flows_dir() / "notice.yaml").read_text(encoding="utf-8")
    )
    srv = FastAGIServer(services, port=0)
    await srv.start()
    try:
        assert srv.reload_flows(flows) == ["notice"]
        pbx = await session(srv, "satisfaction_survey", Persona())
        assert pbx.commands == []  # no longer served
        (flows / "broken.yaml").write_text("name: broken\nstart: nowhere\nnodes: {}\n")
        with pytest.raises(FlowDefinitionError):
            srv.reload_flows(flows)
        pbx = await session(srv, "notice", Persona())
        assert pbx.variables["IVR_RESULT"] == "notified"  # old library still serving
    finally:
        await srv.close(grace=1)


async def test_a_reply_that_never_comes_ends_the_session_as_a_hangup(
    services: Services, store: Store
) -> None:
    """Past ``reply_timeout`` Asterisk is presumed gone: the session ends ``hangup`` and its
    connection is closed (not held until Asterisk closes it)."""
    srv = FastAGIServer(services, port=0, reply_timeout=0.3)
    await srv.start()
    try:
        aid = seed_attempt(store, "notice")
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(header(f"notice?attempt={aid}"))
        assert (await reader.readline()).startswith(b"ANSWER")  # and no reply, ever
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await wait_idle(srv)
        (row,) = sessions(store)
        assert row.status == SessionStatus.HANGUP.value and srv.stats.hangup == 1
        writer.close()
    finally:
        await srv.close(grace=1)
