"""What holds a ``VirtualClock`` (the demo's floor runs on it): work in its threads, bytes in
flight on an AMI link of ``SimPbx.local_opener()``, ``hold`` checks; its ``wait``; and the
auto-runner's ``max_speed`` pace. No upper bound on wall time anywhere (a loaded machine only
makes real time longer); the clock must never move while work is pending."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from dialer.sim import SimPbx, VirtualClock


async def test_wait_returns_on_the_event_or_after_simulated_time() -> None:
    clock = VirtualClock()
    event = asyncio.Event()
    waiting = asyncio.create_task(clock.wait(event, 30.0))
    await clock.advance(29.0)
    assert not waiting.done()
    await clock.advance(1.0)
    assert await waiting is False and clock.now() == 30.0

    waiting = asyncio.create_task(clock.wait(event, 30.0))
    await clock.advance(5.0)
    event.set()
    await clock.settle()
    assert await waiting is True
    assert clock.next_deadline() is None  # its timer went with it


async def test_work_in_a_held_thread_stops_time_until_its_result_is_back() -> None:
    clock = VirtualClock(io_grace=30.0)
    pool = clock.executor(2, "test")
    seen: list[tuple[str, float]] = []
    release = threading.Event()

    def slow_write() -> str:
        release.wait(10.0)  # as long as the test likes, in real time
        return "written"

    async def writer() -> None:
        result = await asyncio.get_running_loop().run_in_executor(pool, slow_write)
        seen.append((result, clock.now()))

    async def caller_on_hold() -> None:
        await clock.sleep(2.0)  # the hold limit
        seen.append(("abandoned?", clock.now()))

    tasks = [asyncio.create_task(writer()), asyncio.create_task(caller_on_hold())]
    clock.start_auto(idle_real_s=0.0)
    try:
        await asyncio.sleep(0.3)  # real time passes; simulated time must not
        assert clock.now() == 0.0 and seen == [] and pool.pending == 1
        release.set()
        await asyncio.gather(*tasks)
    finally:
        clock.stop_auto()
        pool.shutdown()
    assert seen == [("written", 0.0), ("abandoned?", 2.0)]
    assert clock.grace_expired == 0


async def test_a_hold_check_stops_time_and_grace_bounds_it() -> None:
    clock = VirtualClock(io_grace=0.05)
    held = [True]
    release = clock.hold(lambda: held[0])
    clock.call_later(1.0, lambda: None)
    clock.start_auto(idle_real_s=0.0)
    try:
        await asyncio.sleep(0.2)
        # a hold that never clears is waited for ``io_grace`` per step, then time moves
        assert clock.grace_expired >= 1
        held[0] = False
        await asyncio.sleep(0.05)
        assert clock.now() == 1.0
        release()
        assert not clock.busy()
    finally:
        clock.stop_auto()


async def test_bytes_in_flight_on_the_ami_link_hold_the_clock() -> None:
    clock = VirtualClock(io_grace=30.0)
    secret = os.environ.get("DIALER_AMI_SECRET", "test-only-ami-secret")
    pbx = SimPbx(clock=clock, secret=secret)
    await pbx.start()
    reader, writer = await pbx.local_opener()()
    try:
        banner = await reader.read(65536)
        assert banner.startswith(b"Asterisk Call Manager")
        writer.write(
            f"Action: Login\r\nUsername: dialer\r\nSecret: {secret}\r\nActionID: 1\r\n\r\n".encode()
        )
        assert clock.busy()  # written, not yet read by the switch
        seen = b""
        deadline = time.monotonic() + 30.0
        while b"Response: Success" not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            assert clock.busy()  # its answer is unread until we read it
            seen += await asyncio.wait_for(reader.read(65536), 30.0)
        while clock.busy() and time.monotonic() < deadline:  # events after the login, if any
            seen += await asyncio.wait_for(reader.read(65536), 30.0)
        assert b"Response: Success" in seen and not clock.busy()
    finally:
        writer.close()
        await pbx.stop()
    assert not clock.busy()  # a closed link holds nothing


async def test_max_speed_paces_simulated_time_against_real_time() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    for t in (1.0, 2.0, 3.0):
        clock.call_later(t, fired.append, t)
    t0 = time.monotonic()
    clock.start_auto(idle_real_s=0.0, max_speed=20.0)
    try:
        while len(fired) < 3:
            await asyncio.sleep(0.01)
    finally:
        clock.stop_auto()
    # 3 simulated seconds at most 20x faster than real time: at least 0.15 s of real time
    assert time.monotonic() - t0 >= 0.15 - 0.01
    assert fired == [1.0, 2.0, 3.0] and clock.speed == 20.0


def test_max_speed_must_be_positive() -> None:
    async def start() -> None:
        VirtualClock().start_auto(max_speed=0.0)

    with pytest.raises(ValueError, match="max_speed"):
        asyncio.run(start())
