"""The ``dialer`` command line.

Each command module under ``dialer.app.commands`` (and the sub-packages that own a command)
exposes ``COMMANDS``, a list of click commands or groups added to the top-level group.
The group option ``--db URL`` chooses the store for every command.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from dialer.app.appctx import AppContext
from dialer.clirun import db_option, run_cli
from dialer.store import default_db_url

#: Modules whose ``COMMANDS`` make up the CLI. Each is owned by one part of the project.
COMMAND_MODULES = (
    "dialer.app.commands.db",
    "dialer.app.commands.campaign",
    "dialer.app.commands.contacts",
    "dialer.app.commands.dnc",
    "dialer.app.commands.hopper",
    "dialer.app.commands.run",
    "dialer.app.commands.demo",
    "dialer.app.commands.report",
    "dialer.app.commands.simulate",
    "dialer.app.commands.sim_pbx",
    "dialer.app.commands.messages",
    "dialer.app.commands.users",
)


def configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DIALER_SETTINGS",
    default=None,
    help="Settings YAML (default config/settings.yaml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="bank-dialer")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, settings_path: Path | None, verbose: int) -> None:
    """Outbound contact-centre server for banks: predictive dialer driving Asterisk."""
    configure_logging(verbose)
    ctx.obj = app = AppContext(db_url=db_url or default_db_url(), settings_path=settings_path)
    ctx.call_on_close(app.close)


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a part not built yet
                continue
            raise
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
