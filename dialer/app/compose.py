"""The composition root of the floor: ``dialer run`` and ``dialer demo`` build it here.

It makes the dialer core on an AMI client, the floor (``dialer.floor.service.Dialer``) on the
core, and, when asked, the supervisor console with its metrics and hot reload wired to the
floor. Nothing below the application layer imports the console.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from dialer.app.alerting import alert_api, attach_desk
from dialer.floor.alerts import AlertDesk
from dialer.floor.console import DialerMetrics, config_paths, outcome_recorder, start_console
from dialer.floor.console.metrics import AlertsCollector
from dialer.floor.fleet import Fleet
from dialer.floor.loop import Clock
from dialer.floor.references import load_library
from dialer.floor.service import Dialer
from dialer.lists.alerts import AlertCounts
from dialer.lists.alertspec import AlertsConfig
from dialer.settings import Settings
from dialer.store import Store
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.core import WRITE_BATCH_S, DialerCore


async def serve_console(
    dialer: Dialer | Fleet,
    *,
    host: str,
    port: int,
    watch_config: bool = True,
    sighup: bool = True,
    alerts: AlertsConfig | None = None,
) -> tuple[Any, int]:
    """Start the supervisor console in this loop, with metrics and hot reload wired in: on one
    floor (``dialer demo``) or on a worker's ``Fleet`` of switches (``dialer run``)."""
    metrics = DialerMetrics(CollectorRegistry())
    metrics.registry.register(AlertsCollector(lambda: _desk_counts(dialer)))
    dialer.metrics = metrics
    dialer.on_outcome.append(outcome_recorder(metrics))
    watch = (
        config_paths(dialer.settings, include_settings=dialer.settings.source is not None)
        if watch_config
        else ()
    )
    return await start_console(
        dialer,
        host=host,
        port=port,
        metrics=metrics,
        watch=watch,
        sighup=sighup,
        store=dialer.store,
        alerts=alert_api(
            alerts,
            dialer.store,
            lambda: _floors(dialer),
            dialer.now,
            load_library(dialer.settings),
        ),
    )


def _floors(dialer: Dialer | Fleet) -> list[Dialer]:
    return dialer.floors() if isinstance(dialer, Fleet) else [dialer]


def _desk_counts(dialer: Dialer | Fleet) -> list[dict[str, AlertCounts]]:
    desks = [d.loop.first for d in _floors(dialer)]
    return [desk.counts for desk in desks if isinstance(desk, AlertDesk)]


class FloorRoot:
    """The core, the floor and (optionally) the console, started and stopped in order."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        client: AMIClient,
        *,
        agi_url: str,
        core_clock: Callable[[], float] = time.time,
        clock: Clock | None = None,
        tick_s: float = 0.5,
        campaigns: Sequence[str] | None = None,
        max_channels: int = 500,
        alerts: AlertsConfig | None = None,
        core_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        db_executor: concurrent.futures.ThreadPoolExecutor | None = None,
        core_flush_s: float = WRITE_BATCH_S,
    ) -> None:
        """``core_clock``/``core_sleep``: the core's time and waits (see ``DialerCore``);
        ``clock``: the floor's (``dialer.floor.loop.Clock``); all wall time by default."""
        self.core = DialerCore(
            store,
            client,
            agi_url=agi_url,
            clock=core_clock,
            sleep=core_sleep,
            executor=db_executor,
            flush_s=core_flush_s,
        )
        self.dialer = Dialer(
            store,
            self.core,
            settings,
            clock=clock,
            tick_s=tick_s,
            campaigns=campaigns,
            max_channels=max_channels,
        )
        self.alerts = alerts
        self.desk = attach_desk(self.dialer, alerts)
        self.console: tuple[Any, int] | None = None

    async def start(
        self, *, console_host: str | None = None, console_port: int | None = None, **console: Any
    ) -> int | None:
        """Connect the core; with ``console_port``, serve the console (returns its port)."""
        await self.core.start()
        if console_port is None or console_host is None:
            return None
        self.console = await serve_console(
            self.dialer, host=console_host, port=console_port, alerts=self.alerts, **console
        )
        return self.console[1]

    async def stop(self, *, grace_s: float) -> None:
        """Stop dialling (live calls get ``grace_s``), then the console."""
        await self.core.stop(grace_s=grace_s)
        if self.console is not None:
            with contextlib.suppress(Exception):
                await self.console[0].cleanup()
            self.console = None
