"""``dialer run``: the service - dials every running campaign until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import click

from dialer.app.appctx import AppContext, pass_app

log = logging.getLogger(__name__)


def _check_console_token() -> None:
    """Refuse a weak console token before anything starts."""
    from dialer.floor.console.auth import check_token_strength
    from dialer.settings import get_secret

    token = get_secret("api_token")
    assert token is not None
    check_token_strength(token.get_secret_value())


@click.command("run")
@click.option("--campaign", "campaigns", multiple=True, help="Only these campaigns (default: all).")
@click.option(
    "--worker",
    "worker_id",
    envvar="DIALER_WORKER_ID",
    default=None,
    help="This worker's id, unique among the workers on one store (default: the host name).",
)
@click.option(
    "--server",
    "servers",
    multiple=True,
    envvar="DIALER_SERVERS",
    help="Serve these Asterisk servers of the settings first (default: every one it can claim).",
)
@click.option(
    "--standby",
    is_flag=True,
    help="Serve no server first: only take over those of a worker that dies (the console host).",
)
@click.option(
    "--no-takeover",
    is_flag=True,
    help="With --server: never take over the other servers when their worker dies.",
)
@click.option("--agi-url", default=None, help="FastAGI base URL for flows (default from settings).")
@click.option(
    "--grace", default=60.0, show_default=True, help="Seconds live calls get to finish on SIGTERM."
)
@click.option(
    "--max-channels",
    default=500,
    show_default=True,
    help="Live calls at most per switch, all campaigns together.",
)
@click.option(
    "--http-host", default=None, help="Console address (default from settings: 127.0.0.1)."
)
@click.option(
    "--http-port", type=int, default=None, help="Console port (default from settings: 8080)."
)
@click.option("--no-console", is_flag=True, help="Do not serve the supervisor console.")
@pass_app
def run(
    app: AppContext,
    campaigns: tuple[str, ...],
    worker_id: str | None,
    servers: tuple[str, ...],
    standby: bool,
    no_takeover: bool,
    agi_url: str | None,
    grace: float,
    max_channels: int,
    http_host: str | None,
    http_port: int | None,
    no_console: bool,
) -> None:
    """Dial every running campaign through Asterisk's AMI until stopped.

    One process is one worker: it serves each Asterisk server of the settings (``asterisk:``,
    else ``ami:``) that no live worker serves, one AMI connection each, and takes over the
    servers of a worker that stops beating. Several workers share one store (PostgreSQL);
    adding one is starting one more ``dialer run --worker NAME``.

    SIGTERM (or Ctrl-C) stops dialling, lets live calls finish for --grace seconds, ends the
    rest as `interrupted`, frees the servers and exits 0. SIGHUP re-applies the campaign files.
    """
    from dialer.app.alerting import alerts_of
    from dialer.app.compose import serve_console
    from dialer.app.worker import WorkerService
    from dialer.store.workers import WorkerIdentity

    settings = app.settings
    if not no_console:
        _check_console_token()
    store = app.store
    agi = agi_url or f"agi://{settings.fastagi.host}:{settings.fastagi.port}"
    me = WorkerIdentity.of(worker_id)
    alerts = alerts_of(settings)  # a broken alerts file stops the start, with its reason

    async def main() -> None:
        service = WorkerService(
            store,
            settings,
            me,
            agi_url=agi,
            servers=servers or None,
            standby=standby,
            takeover=not no_takeover,
            campaigns=campaigns or None,
            max_channels=max_channels,
            alerts=alerts,
        )
        await service.register()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, service.stop)
        console = None
        if not no_console:
            console = await serve_console(
                service.fleet,
                host=http_host or settings.http.host,
                port=settings.http.port if http_port is None else http_port,
                alerts=alerts,
            )
            click.echo(
                f"dialer: worker {me.id}: console on "
                f"http://{http_host or settings.http.host}:{console[1]}/",
                err=True,
            )
        await serve(service, console, grace)

    default_level_logs()
    asyncio.run(main())


async def serve(service: Any, console: tuple[Any, int] | None, grace: float) -> None:
    """Until the service stops; a switch that refused the login stops it with exit code 2."""
    try:
        await service.run()
    finally:
        if service.fatal is None:
            click.echo(f"dialer: stopping; live calls get {grace:g} s", err=True)
        await service.shutdown(grace)
        if console is not None:
            with contextlib.suppress(Exception):
                await console[0].cleanup()
    if service.fatal is not None:  # already said, in one line, by the AMI client
        raise SystemExit(2)


#: What ``dialer run`` says at the default level beside warnings: connection changes, the
#: floor's one-line summary each minute, the console's address.
RUN_INFO_LOGGERS = ("dialer.telephony.ami.adapter", "dialer.floor.health", "dialer.floor.alarms")


def default_level_logs() -> None:
    for name in RUN_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


COMMANDS = [run]
