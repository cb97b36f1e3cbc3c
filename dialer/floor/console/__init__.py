"""The supervisor console: live page, JSON API, event stream, Prometheus metrics, hot reload.

Wiring it into the dialer is one call inside the running loop::

    runner, port = await start_console(floor, settings.http.host, settings.http.port,
                                       metrics=metrics, watch=config_paths(settings),
                                       sighup=True, store=store)
    ...
    await runner.cleanup()
"""

from dialer.floor.console.app import make_app, start_console
from dialer.floor.console.metrics import DialerMetrics, FloorCollector, outcome_recorder
from dialer.floor.console.reload import FileWatcher, ReloadLog, SighupReloader, config_paths

__all__ = [
    "DialerMetrics",
    "FileWatcher",
    "FloorCollector",
    "ReloadLog",
    "SighupReloader",
    "config_paths",
    "outcome_recorder",
    "make_app",
    "start_console",
]
