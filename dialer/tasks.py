"""Ending a background task for sure.

Why: on Python 3.11 ``asyncio.wait_for`` returns its result instead of raising when the task
around it is cancelled in the instant the awaited thing completes (a store ping finishing as
the floor stops), so one ``cancel()`` may be swallowed and a ``while True`` task runs on: the
``await`` that ended the floor then never returned (a real-switch test waited 25 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

#: the interpreter's switch interval while a floor runs (Python's default is 5 ms). A store
#: call on a worker thread gives up the GIL while it waits on the network; with the event loop
#: busy it then waits up to one interval to get it back, so every PostgreSQL statement from the
#: floor's database thread cost ~6 ms instead of ~0.1 ms (``scripts/bench_gil.py``).
IO_SWITCH_INTERVAL_S = 0.0005


def favour_io_threads(interval_s: float = IO_SWITCH_INTERVAL_S) -> None:
    """Shorten the GIL's switch interval to ``interval_s`` (never lengthen it)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), interval_s))


async def end_task(task: asyncio.Task[Any], every_s: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again each ``every_s``
    while it runs on. Its own exception (or cancellation) is not raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


__all__ = ["IO_SWITCH_INTERVAL_S", "end_task", "favour_io_threads"]
