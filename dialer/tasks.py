"""Ending a background task for sure.

Why: on Python 3.11 ``asyncio.wait_for`` returns its result instead of raising when the task
around it is cancelled in the instant the awaited thing completes (a store ping finishing as
the floor stops), so one ``cancel()`` may be swallowed and a ``while True`` task runs on: the
``await`` that ended the floor then never returned (a real-switch test waited 25 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def end_task(task: asyncio.Task[Any], every_s: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again each ``every_s``
    while it runs on. Its own exception (or cancellation) is not raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


__all__ = ["end_task"]
