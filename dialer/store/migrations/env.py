"""Alembic environment: runs on the connection the store hands in, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import dialer.store.alerts  # noqa: F401  (the alert tables, same metadata)
import dialer.store.messages  # noqa: F401  (the messaging tables, same metadata)
import dialer.store.people  # noqa: F401  (users, dispositions, callbacks)
from dialer.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run()
