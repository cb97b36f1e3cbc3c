"""The console's connections under ``dialer.netguard`` rules, on aiohttp.

``GuardedSite`` listens like ``web.TCPSite`` but hands every new connection to the guard
first: a connection the guard evicts or times out (no complete request head in time, or idle
too long between keep-alive requests) is closed; one it refuses (every connection busy with a
request) is answered ``503`` at once and closed, before descriptors run out. The middleware
``guard_middleware`` tells the guard when a connection's request starts and ends, and bounds
each request (``REQUEST_TIMEOUT_S``; the event stream excepted).

"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dialer.netguard import ConnectionGuard, GuardLimits, RateLimitedLog

log = logging.getLogger(__name__)

CONSOLE_LIMITS = GuardLimits(
    max_connections=256, max_per_address=128, header_timeout_s=10.0, header_timeout_min_s=1.0
)
REQUEST_TIMEOUT_S = 60.0
STREAM_PATHS = frozenset({"/api/events", "/api/desk/events"})
GUARD = web.AppKey("guard", ConnectionGuard)

_BUSY = json.dumps({"error": "the console is busy: try again in a moment"}).encode()
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _GuardedProtocol(asyncio.Protocol):
    """Stands in front of aiohttp's protocol for one connection."""

    def __init__(self, site: GuardedSite) -> None:
        self.site = site
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        guard = self.site.guard
        admission = guard.admit(transport, str(peer[0]) if peer else "?")
        for victim in admission.evict:
            self.site.close(victim)
        if not admission.accepted:
            self.site.warn.warning("busy", "console: every connection is busy; answered 503")
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.inner = self.site.factory()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.site.guard.closed(self.transport)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` with admission control and header/idle time-outs."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard[Any]
    ) -> None:
        super().__init__(runner, host, port, backlog=1024)
        self.guard = guard
        self.warn = RateLimitedLog(log)
        self._sweeper: asyncio.Task[None] | None = None

    def factory(self) -> Any:
        server = self._runner.server
        assert server is not None
        return server()

    def close(self, transport: asyncio.Transport) -> None:
        self.guard.closed(transport)
        transport.abort()

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _GuardedProtocol(self), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep(), name="console-header-timeouts")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
        await super().stop()

    async def _sweep(self) -> None:
        interval = min(0.5, self.guard.limits.header_timeout_min_s / 2)
        while True:
            await asyncio.sleep(interval)
            expired = self.guard.expired()
            for transport in expired:
                transport.abort()
            if expired:
                self.warn.warning(
                    "timeout", "console: closed %d idle or slow connections", len(expired)
                )


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app.get(GUARD)
    transport = request.transport
    if guard is None or transport is None:
        return await handler(request)
    guard.activated(transport)
    try:
        if request.path in STREAM_PATHS:
            return await handler(request)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await handler(request)
        except TimeoutError:
            return web.json_response({"error": "the request took too long"}, status=408)
    finally:
        if not transport.is_closing():
            guard.waiting(transport)  # keep-alive: idle again, under the header time-out
