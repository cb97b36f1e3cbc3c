"""end_task ends a task that swallowed a cancellation (as 3.11's wait_for can)."""

from __future__ import annotations

import asyncio

from dialer.tasks import end_task


async def test_a_task_that_swallows_one_cancel_is_ended_anyway() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed == 0:  # like a wait_for whose inner future had just completed
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(end_task(task, every_s=0.05), 5)
    assert task.cancelled() and swallowed == 1


async def test_a_finished_task_is_left_as_it_is() -> None:
    async def fails() -> None:
        raise RuntimeError("its own error is not raised by end_task")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await end_task(task)
    assert isinstance(task.exception(), RuntimeError)
