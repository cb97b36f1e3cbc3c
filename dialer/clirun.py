"""What the ``dialer`` and ``ivr`` console scripts share: the ``--db`` option, the type of an
output file, and the runner that turns every error a user can cause into one line (exit code 2;
a usage error keeps click's code 2 too) instead of a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from dialer.errors import DialerError, describe_db_error


def db_option(f):
    return click.option(
        "--db",
        "db_url",
        envvar="DIALER_DB",
        default=None,
        metavar="URL",
        help="Store URL (default $DIALER_DB, else dialer.db in ~/.local/share/bank-dialer).",
    )(f)


class OutputFile(click.ParamType):
    """A file a command will write (a chart, a plot): its folder must exist and be writable,
    checked when the command line is read, before any work is done."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        folder = path.parent
        if path.is_dir():
            self.fail(f"{path} is a folder; name a file", param, ctx)
        if not folder.is_dir():
            self.fail(f"folder {folder} does not exist", param, ctx)
        if not os.access(folder, os.W_OK | os.X_OK):
            self.fail(f"folder {folder} is not writable", param, ctx)
        return path


def _usage_line(exc: click.UsageError) -> str:
    hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
    return f"error: {exc.format_message()}{hint}"


def run_cli(group: click.Group, args: Sequence[str] | None = None) -> None:
    """Run a click group as a console script: our errors become one line and exit code 2."""
    try:
        group.main(args=list(args) if args is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        click.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except DialerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except DBAPIError as exc:  # one line, no customer's data (no traceback quoting rows)
        click.echo(f"error: the store refused: {describe_db_error(exc)}", err=True)
        sys.exit(2)
