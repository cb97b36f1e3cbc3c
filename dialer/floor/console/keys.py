"""The console app's shared keys, for the modules that serve routes beside ``app``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dialer.floor.view import Floor

FLOOR = web.AppKey("floor", Floor)
STORE = web.AppKey("store", object)
CLOSING = web.AppKey("closing", asyncio.Event)  # set at shutdown: every event stream ends

__all__ = ["CLOSING", "FLOOR", "STORE"]
