"""Time for the simulated PBX.

Why: every duration in the simulator (rings, prompts, waits, queue timeouts) is read from one
clock object, so tests can run a 30 s timeout in microseconds (``VirtualClock``) and the
command line can run in real time, or faster (``RealClock(speed=10)``).

The virtual clock keeps a heap of timers. Time only moves when a test (or the auto-runner)
asks it to, and before each jump it lets the asyncio loop *settle*: every task runs until it
waits on the clock, no simulated I/O (an AGI command in flight, a FastAGI connect) is
outstanding, no work handed to a thread of ``executor()`` is unfinished and every ``hold``
check is false (e.g. bytes written on a socket that the peer has not read yet). That keeps
event order deterministic while real sockets and threads are involved, and it makes CPU time
free in simulated time: a slow machine runs the same simulated seconds more slowly, it never
makes a simulated caller wait longer.

``start_auto(max_speed=N)`` paces the jumps so simulated time runs at most N times faster than
real time (a floor a person can watch), while still standing still whenever work is pending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

#: Epoch the virtual clock starts at (close to the recordings' timestamps).
DEFAULT_START_EPOCH = 1796009806.0
#: Longest real-time wait of the auto-runner before it looks at the timers again.
PACE_STEP_S = 0.05


class TimerHandle:
    __slots__ = ("when", "seq", "callback", "args", "cancelled", "_loop_handle")

    def __init__(self, when: float, seq: int, callback: Callable[..., Any], args: tuple[Any, ...]):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._loop_handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._loop_handle is not None:
            self._loop_handle.cancel()

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class Clock(Protocol):
    def now(self) -> float: ...
    def epoch(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...
    async def sleep(self, delay: float) -> None: ...
    async def wait(self, event: asyncio.Event, timeout: float) -> bool: ...
    async def advance(self, delta: float) -> None: ...
    @contextmanager
    def io(self) -> Iterator[None]: ...


class HeldExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose unfinished work holds a ``VirtualClock`` (``clock.executor()``).

    A job counts as pending from ``submit`` until its future's result is set *and* the
    callbacks that hand it to the event loop have run (``run_in_executor``'s bridge queues
    the result on the loop inside ``set_result``): once the count is zero, every result is
    on the loop's ready queue, where ``settle`` sees it.
    """

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers, thread_name_prefix)
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        outer: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def job() -> None:
            try:
                if outer.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # handed to the waiter, as the pool does
                        outer.set_exception(exc)
                    else:
                        outer.set_result(result)
            finally:
                with self._lock:
                    self._pending -= 1

        with self._lock:
            self._pending += 1
        try:
            super().submit(job)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        return outer


class VirtualClock:
    """Simulated time that only moves when asked (``advance``/``run_until``) or auto-runs.

    ``io()`` marks real I/O in flight (the engine wraps AGI connects and reads in it): the
    clock does not jump while it is open, up to ``io_grace`` seconds of real time per step.
    """

    def __init__(self, start_epoch: float = DEFAULT_START_EPOCH, io_grace: float = 2.0) -> None:
        self.start_epoch = start_epoch
        self.io_grace = io_grace
        self._now = 0.0
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        self._io = 0
        self._sleepers = 0
        self._holds: list[Callable[[], bool]] = []
        self._executors: list[HeldExecutor] = []
        self._auto: asyncio.Task[None] | None = None
        self.speed = 0.0  # the auto-runner's ``max_speed``, 0: as fast as the work allows
        #: jumps of the auto-runner, and how often ``io_grace`` ran out with work pending
        #: (time then moved anyway: a hold that never clears, or a very slow machine)
        self.jumps = 0
        self.grace_expired = 0

    def now(self) -> float:
        return self._now

    def epoch(self) -> float:
        return self.start_epoch + self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        h = TimerHandle(self._now + max(0.0, delay), next(self._seq), callback, args)
        heapq.heappush(self._heap, h)
        return h

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_later(when - self._now, callback, *args)

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        h = self.call_later(delay, _resolve, fut)
        try:
            await fut
        finally:
            h.cancel()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Until ``event`` is set (True) or ``timeout`` simulated seconds pass (False)."""
        if event.is_set():
            return True
        either: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        h = self.call_later(timeout, _resolve, either)
        waiter = asyncio.ensure_future(event.wait())
        waiter.add_done_callback(lambda _: _resolve(either))
        try:
            await either
        finally:
            h.cancel()
            waiter.cancel()
        return event.is_set()

    @contextmanager
    def io(self) -> Iterator[None]:
        self._io += 1
        try:
            yield
        finally:
            self._io -= 1

    def hold(self, check: Callable[[], bool]) -> Callable[[], None]:
        """Time does not move while ``check()`` is true (bytes in flight on a socket, ...);
        returns the function that removes the check."""
        self._holds.append(check)

        def release() -> None:
            if check in self._holds:
                self._holds.remove(check)

        return release

    def executor(self, max_workers: int | None = None, name: str = "held") -> HeldExecutor:
        """A thread pool whose unfinished work holds this clock (see ``HeldExecutor``)."""
        pool = HeldExecutor(max_workers, thread_name_prefix=name)
        self._executors.append(pool)
        return pool

    def busy(self) -> bool:
        """Work the clock waits for: I/O marked by ``io()``, threads, ``hold`` checks."""
        return (
            self._io > self._sleepers
            or any(p.pending for p in self._executors)
            or any(check() for check in self._holds)
        )

    @contextmanager
    def external_sleep(self) -> Iterator[None]:
        """A peer (e.g. a test FastAGI server) waits on simulated time, not on I/O."""
        self._sleepers += 1
        try:
            yield
        finally:
            self._sleepers -= 1

    async def peer_sleep(self, delay: float) -> None:
        """``sleep`` for code on the far side of a socket (test FastAGI servers)."""
        with self.external_sleep():
            await self.sleep(delay)

    async def _drain_ready(self) -> None:
        """Yield until no other callback is ready to run (the loop is quiescent)."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        if ready is None:  # pragma: no cover - another loop implementation
            for _ in range(8):
                await asyncio.sleep(0)
            return
        for _ in range(10_000):
            await asyncio.sleep(0)
            if not ready:
                # one more round: a callback may have scheduled another task step
                await asyncio.sleep(0)
                if not ready:
                    return

    async def settle(self) -> None:
        """Let every task run until all wait on the clock and no work is pending (``busy``),
        for at most ``io_grace`` seconds of real time."""
        await self._drain_ready()
        deadline = time.monotonic() + self.io_grace
        while self.busy():
            if time.monotonic() >= deadline:
                self.grace_expired += 1
                break
            await asyncio.sleep(0.0005)
            await self._drain_ready()
        await self._drain_ready()

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].when if self._heap else None

    def _fire(self, t: float) -> None:
        self._now = max(self._now, t)
        while self._heap and self._heap[0].when <= t:
            h = heapq.heappop(self._heap)
            if not h.cancelled:
                h.callback(*h.args)

    async def run_until(self, t: float) -> None:
        """Fire every timer due up to simulated time ``t``, settling in between."""
        await self.settle()
        while True:
            nxt = self.next_deadline()
            if nxt is None or nxt > t:
                break
            self._fire(nxt)  # every timer due at this instant, then let the tasks run
            await self.settle()
        self._now = max(self._now, t)
        await self.settle()

    async def advance(self, delta: float) -> None:
        await self.run_until(self._now + delta)

    async def run_until_idle(self, limit: float = 3600.0) -> None:
        """Fire timers until none is left (or ``limit`` simulated seconds passed)."""
        end = self._now + limit
        await self.settle()
        while True:
            nxt = self.next_deadline()
            if nxt is None or nxt > end:
                break
            await self.run_until(nxt)

    async def run_until_true(self, predicate: Callable[[], bool], limit: float = 600.0) -> bool:
        """Advance timer by timer until ``predicate()`` holds; False if ``limit`` passes first."""
        end = self._now + limit
        await self.settle()
        while not predicate():
            nxt = self.next_deadline()
            if nxt is None or nxt > end:
                await self.run_until(end)
                return predicate()
            await self.run_until(nxt)
        return True

    def start_auto(self, idle_real_s: float = 0.002, max_speed: float | None = None) -> None:
        """Jump to the next timer whenever the system has been quiet for ``idle_real_s``.

        With ``max_speed``, simulated time runs at most that many times faster than real time
        (it still stands still while work is pending, and does not rush to catch up after)."""
        if max_speed is not None and max_speed <= 0:
            raise ValueError("max_speed must be > 0")
        if self._auto is None:
            self.speed = max_speed or 0.0
            self._auto = asyncio.get_running_loop().create_task(
                self._autorun(idle_real_s, max_speed), name="virtual-clock"
            )

    def stop_auto(self) -> None:
        if self._auto is not None:
            self._auto.cancel()
            self._auto = None

    async def _autorun(self, idle_real_s: float, max_speed: float | None) -> None:
        anchor = (time.monotonic(), self._now)  # (real, simulated) the pace counts from
        while True:
            await self.settle()
            if idle_real_s > 0:
                await asyncio.sleep(idle_real_s)
                await self.settle()
            nxt = self.next_deadline()
            if nxt is None:  # nothing is due until something real happens
                await asyncio.sleep(PACE_STEP_S)
                continue
            if max_speed is not None:
                due = anchor[0] + (nxt - anchor[1]) / max_speed - time.monotonic()
                if due > 0:  # not yet: wait (an earlier timer may come meanwhile), look again
                    await asyncio.sleep(min(due, PACE_STEP_S))
                    continue
                if due < -PACE_STEP_S:
                    anchor = (time.monotonic(), nxt)  # held back by work: no rush after it
            self.jumps += 1
            self._fire(nxt)  # the loop's next turn settles what it set going


class RealClock:
    """Wall-clock time scaled by ``speed`` (speed 10 = every duration ten times shorter)."""

    def __init__(self, speed: float = 1.0, start_epoch: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._t0 = time.monotonic()
        self.start_epoch = time.time() if start_epoch is None else start_epoch
        self._seq = itertools.count()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def epoch(self) -> float:
        return self.start_epoch + self.now()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        h = TimerHandle(self.now() + delay, next(self._seq), callback, args)
        h._loop_handle = asyncio.get_running_loop().call_later(
            max(0.0, delay) / self.speed, callback, *args
        )
        return h

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_later(when - self.now(), callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay) / self.speed)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Until ``event`` is set (True) or ``timeout`` clock seconds pass (False)."""
        try:
            async with asyncio.timeout(max(0.0, timeout) / self.speed):
                await event.wait()
        except TimeoutError:
            return event.is_set()
        return True

    async def peer_sleep(self, delay: float) -> None:
        await self.sleep(delay)

    @contextmanager
    def io(self) -> Iterator[None]:
        yield

    @contextmanager
    def external_sleep(self) -> Iterator[None]:
        yield

    async def settle(self) -> None:
        await asyncio.sleep(0)

    async def advance(self, delta: float) -> None:
        await self.sleep(delta)

    async def run_until(self, t: float) -> None:
        await self.sleep(t - self.now())

    async def run_until_true(self, predicate: Callable[[], bool], limit: float = 600.0) -> bool:
        end = self.now() + limit
        while not predicate() and self.now() < end:
            await asyncio.sleep(0.005)
        return predicate()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


AnyClock = VirtualClock | RealClock
