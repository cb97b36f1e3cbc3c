"""``dialer db upgrade|current``."""

from __future__ import annotations

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.store.db import open_store, redact_url


@click.group("db")
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@pass_app
def upgrade(app: AppContext) -> None:
    """Upgrade the schema to the newest revision (Alembic)."""
    store = open_store(app.db_url, upgrade=False)
    try:
        store.upgrade()
        click.echo(f"{redact_url(store.url)}: at revision {store.current_revision()}")
    finally:
        store.dispose()


@db.command("current")
@pass_app
def current(app: AppContext) -> None:
    """Print the schema revision of the store."""
    store = open_store(app.db_url, upgrade=False)
    try:
        click.echo(store.current_revision() or "(empty)")
    finally:
        store.dispose()


COMMANDS = [db]
