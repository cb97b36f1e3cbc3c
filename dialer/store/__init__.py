"""The durable store: SQLAlchemy 2 models and an Alembic-managed schema."""

from dialer.store.db import Store, default_db_url, open_store

__all__ = ["Store", "default_db_url", "open_store"]
