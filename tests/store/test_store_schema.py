"""The schema on both engines: Alembic from empty, down and up again, and models == migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgcluster import PgCluster
from sqlalchemy import inspect, text

from dialer.store import open_store
from dialer.store.db import alembic_config
from dialer.store.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)


def test_upgrade_from_empty_down_to_base_and_up_again(empty_url: str) -> None:
    store = open_store(empty_url)
    try:
        head = store.head_revision()
        assert head is not None and store.current_revision() == head
        tables = set(inspect(store.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables

        cfg = alembic_config(store.url)
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert store.current_revision() is None
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}

        store.upgrade()
        assert store.current_revision() == head
        assert set(Base.metadata.tables) <= set(inspect(store.engine).get_table_names())
    finally:
        store.dispose()


def test_migrations_build_exactly_the_models(empty_url: str) -> None:
    """Every table, column and index of the models exists as the migrations create it."""
    store = open_store(empty_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if conn.dialect.name == "postgresql":
                # Alembic reads ``NULLS FIRST`` back as an expression, never equal to the
                # model's ``postgresql_ops``: compare that index's definition directly.
                diff = [d for d in diff if d[1].name != "ix_contact_lease"]
                ddl = conn.scalar(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_contact_lease'")
                )
                assert ddl is not None and ddl.endswith(
                    "(campaign_id, status, priority, next_attempt_at NULLS FIRST, id)"
                )
    finally:
        store.dispose()
    assert diff == []
