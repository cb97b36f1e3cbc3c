"""Opening the store: engine, session factory, and Alembic upgrades.

``open_store(url)`` upgrades an empty database to the current schema by itself; a database
at an older revision is upgraded too (``dialer db upgrade`` does it explicitly).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dialer.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def default_db_url() -> str:
    """``$DIALER_DB``, else a SQLite file ``dialer.db`` in the working directory."""
    return os.environ.get("DIALER_DB") or f"sqlite:///{Path.cwd() / 'dialer.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """``hide_parameters``: a failed statement's message and traceback never show the bound
    values (customers' numbers and names)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Store:
    """An engine plus a session factory; what every command and service is handed."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as s:
            yield s

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def upgrade(self) -> None:
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str | None = None, *, upgrade: bool = True) -> Store:
    url = url or default_db_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
    store: Store | None = None
    try:
        store = Store(url, make_engine(url))
        if upgrade and store.current_revision() != store.head_revision():
            store.upgrade()
    except Exception as exc:  # SQLAlchemy/driver errors become one clear error
        if store is not None:
            store.dispose()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot open store {redact_url(url)}: {exc}") from exc
    return store


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it is printed or logged."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"
