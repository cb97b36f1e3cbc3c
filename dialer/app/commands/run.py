"""``dialer run``: the service - dials every running campaign until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from dialer.app.appctx import AppContext, pass_app

log = logging.getLogger(__name__)


@click.command("run")
@click.option("--campaign", "campaigns", multiple=True, help="Only these campaigns (default: all).")
@click.option("--agi-url", default=None, help="FastAGI base URL for flows (default from settings).")
@click.option(
    "--grace", default=60.0, show_default=True, help="Seconds live calls get to finish on SIGTERM."
)
@click.option(
    "--max-channels",
    default=500,
    show_default=True,
    help="Live calls at most, all campaigns together.",
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
    agi_url: str | None,
    grace: float,
    max_channels: int,
    http_host: str | None,
    http_port: int | None,
    no_console: bool,
) -> None:
    """Dial every running campaign through Asterisk's AMI until stopped.

    SIGTERM (or Ctrl-C) stops dialling, lets live calls finish for --grace seconds, ends the
    rest as `interrupted`, and exits 0. SIGHUP re-applies the campaign files.
    """
    from dialer.app.compose import FloorRoot
    from dialer.telephony.ami.adapter import AMIClient

    settings = app.settings
    if not no_console:  # refuse a weak console token before anything starts
        from dialer.floor.console.auth import check_token_strength
        from dialer.settings import get_secret

        token = get_secret("api_token")
        assert token is not None
        check_token_strength(token.get_secret_value())
    store = app.store
    agi = agi_url or f"agi://{settings.fastagi.host}:{settings.fastagi.port}"

    async def main() -> None:
        root = FloorRoot(
            store,
            settings,
            AMIClient.from_settings(settings.ami),
            agi_url=agi,
            campaigns=campaigns or None,
            max_channels=max_channels,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, root.dialer.stop)
        host = http_host or settings.http.host
        port = await root.start(
            console_host=None if no_console else host,
            console_port=settings.http.port if http_port is None else http_port,
        )
        if port is not None:
            click.echo(f"dialer: console on http://{host}:{port}/", err=True)
        try:
            await root.dialer.run()
        finally:
            click.echo(f"dialer: stopping; live calls get {grace:g} s", err=True)
            await root.stop(grace_s=grace)

    asyncio.run(main())


COMMANDS = [run]
