"""Opening the store: engine, session factory, and Alembic upgrades.

``open_store(url)`` upgrades an empty database to the current schema by itself; a database
at an older revision is upgraded too (``dialer db upgrade`` does it explicitly). The command
lines open only a store that exists (``require_store``): a mistyped ``--db`` is refused, never
created empty. The default store lives in the user's XDG data folder, not the current one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dialer.errors import StoreError, describe_db_error
from dialer.tasks import favour_io_threads

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/bank-dialer`` (default ``~/.local/share/bank-dialer``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bank-dialer"


def default_db_url() -> str:
    """``$DIALER_DB``, else the SQLite file ``dialer.db`` in the data folder (``data_dir``):
    the same store whatever folder a command runs from."""
    return os.environ.get("DIALER_DB") or f"sqlite:///{data_dir() / 'dialer.db'}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def require_store(url: str) -> None:
    """Refuse a SQLite store whose file does not exist (a typo in ``--db`` would otherwise
    create a new, empty store and report "no campaigns"). ``dialer db upgrade`` creates one.
    A server database that does not exist is refused by the server when it is opened."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StoreError(
            f"no store at {path} (a typo in --db / $DIALER_DB?); "
            f"create one with: dialer --db {url} db upgrade"
        )


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
    require_driver(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


#: The optional extra that brings a server database's driver.
DRIVER_EXTRAS = {"postgresql": "postgres"}


def require_driver(url: str, find: Callable[[str], object | None] = find_spec) -> None:
    """A server URL whose driver is not installed (``find`` looks a module up): say which
    extra installs it, instead of the driver's import error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            "--db / $DIALER_DB is not a database URL "
            "(sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME)"
        ) from exc
    extra = DRIVER_EXTRAS.get(parsed.get_backend_name())
    if extra is None:
        return
    driver = parsed.get_driver_name()
    if find(driver) is not None:
        return
    hint = f"install it with: pip install 'bank-dialer[{extra}]'"
    if driver == "psycopg2" and find("psycopg") is not None:
        hint = "write the URL as postgresql+psycopg://... (the driver installed)"
    raise StoreError(f"{redact_url(url)}: the database driver {driver} is not installed; {hint}")


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
        if store.engine.dialect.name != "sqlite":
            favour_io_threads()  # its statements wait on a socket, off the event loop's thread
        if upgrade and store.current_revision() != store.head_revision():
            store.upgrade()
    except Exception as exc:  # SQLAlchemy/driver errors become one clear error
        if store is not None:
            store.dispose()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot open store {redact_url(url)}: {_first_line(exc)}") from exc
    return store


def _first_line(exc: BaseException) -> str:
    """The cause in one line: the driver's first line (no rows quoted), else the message's."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return describe_db_error(exc)
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it is printed or logged."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"
