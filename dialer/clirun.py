"""What the ``dialer`` and ``ivr`` console scripts share: the ``--db`` option and the runner
that turns our errors into one line and exit code 2."""

from __future__ import annotations

import sys

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
        help="Store URL (default $DIALER_DB, else sqlite:///./dialer.db).",
    )(f)


def run_cli(group: click.Group) -> None:
    """Run a click group as a console script: our errors become one line and exit code 2."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
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
