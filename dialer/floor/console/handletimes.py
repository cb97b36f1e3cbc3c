"""Average handle time on the console: the supervisor page's figures and ``GET /api/handle-times``.

    GET /api/handle-times?from=&to=&tz=   supervisors: talk + wrap-up per agent, campaign and
                                          queue (their campaigns only); default: the shift so
                                          far (since local midnight of the floor's day, in tz)

The page's figures come with the snapshot (``handle_times``), read from the store by
``HandleBoard`` every ``every_s`` in a worker thread (the event loop paces calls), never on
the page's request. Everything is computed by ``dialer.lists.handling`` from the records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from dialer.floor.console.access import PRINCIPAL, scoped
from dialer.floor.console.keys import FLOOR, STORE
from dialer.floor.console.replies import error, reply
from dialer.lists.handling import handle_rows, handle_times
from dialer.lists.report import DEFAULT_TZ, parse_bound, zone_named

log = logging.getLogger(__name__)


def shift_start(now: dt.datetime, tz: str = DEFAULT_TZ) -> dt.datetime:
    """Local midnight of ``now``'s day in ``tz`` (the shift so far), as UTC."""
    local = now.astimezone(zone_named(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def read(store: Any, since: dt.datetime | None, until: dt.datetime | None = None) -> dict[str, Any]:
    """(In a thread.) The handle-time document for ``[since, until)``."""
    with store.session() as s:
        return handle_times(handle_rows(s, since=since, until=until), since)


class HandleBoard:
    """The shift's handle times, re-read from the store every ``every_s``."""

    def __init__(self, store: Any, now: Callable[[], dt.datetime], every_s: float = 5.0) -> None:
        self.store = store
        self.now = now
        self.every_s = every_s
        self.value: dict[str, Any] | None = None

    async def refresh(self) -> dict[str, Any]:
        self.value = await asyncio.to_thread(read, self.store, shift_start(self.now()))
        return self.value

    def extra(self) -> dict[str, Any]:
        return {"handle_times": self.value} if self.value is not None else {}

    async def _run(self, closing: asyncio.Event) -> None:
        while not closing.is_set():
            try:
                await self.refresh()
            except Exception:  # the store away a moment: the page keeps the last figures
                log.warning("handle times not refreshed", exc_info=True)
            try:
                await asyncio.wait_for(closing.wait(), self.every_s)
            except TimeoutError:
                pass

    def lifetime(self, closing: asyncio.Event) -> Callable[[web.Application], AsyncIterator[None]]:
        async def ctx(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(self._run(closing), name="handle-times")
            yield
            closing.set()
            await task

        return ctx


BOARD = web.AppKey("handle_board", HandleBoard)


async def get_handle_times(request: web.Request) -> web.Response:
    store = request.app.get(STORE)
    if store is None:
        return error(404, "handle times need the store (not given to this console)")
    tz = request.query.get("tz", DEFAULT_TZ)
    since = parse_bound(request.query.get("from"), tz)
    until = parse_bound(request.query.get("to"), tz)
    if since is None:
        since = shift_start(request.app[FLOOR].now(), tz)
    doc = await asyncio.to_thread(read, store, since, until)
    return reply(scoped(request[PRINCIPAL], {"handle_times": doc})["handle_times"])


__all__ = ["BOARD", "HandleBoard", "get_handle_times", "read", "shift_start"]
