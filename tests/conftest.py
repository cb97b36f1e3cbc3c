"""Shared fixtures: a fresh store per test (SQLite, or PostgreSQL where a suite asks for both),
a fixed hashing key, and one throw-away PostgreSQL cluster per session (``tests/pgcluster.py``).

``db_url``/``store`` are SQLite unless a suite overrides ``db_url`` with ``store_url``, which
runs each of its tests on both engines. ``pg_url`` is a fresh, migrated PostgreSQL database.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from pgcluster import PgCluster, PgUnavailable, in_ci

from dialer.store import Store, open_store

os.environ.setdefault("DIALER_SECRET_KEY", "test-only-key-not-a-secret")
os.environ.setdefault("DIALER_AMI_SECRET", "test-only-ami-secret")
os.environ.setdefault("DIALER_API_TOKEN", "test-only-Zk4pW9qL2xV7nB3mR8tY")

#: Property tests check what holds, not how fast: hypothesis's 200-ms deadline per example and
#: its too-slow health check failed on a loaded CI machine (four workers on two cores), never on
#: a property. A test that cares about time says so itself.
settings.register_profile(
    "bank-dialer", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("bank-dialer")
#: pytest-timeout (the test extra): a test that hangs fails after 7 minutes with its stacks
#: instead of eating CI's time (the longest, the demo's shift and the real-switch tests, take
#: up to ~2 minutes on a loaded machine). Set here, not in setup.cfg: an older venv without
#: the plugin still runs.
os.environ.setdefault("PYTEST_TIMEOUT", "420")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: The migrated database every PostgreSQL test database is copied from.
PG_TEMPLATE = "dialer_template"
TESTS = Path(__file__).resolve().parent
ENGINES = ("sqlite", "postgresql")
#: Suites (paths under tests/) whose ``db_url``/``store`` run on SQLite and on PostgreSQL.
BOTH_ENGINE_SUITES = (
    "store/",
    "test_campaigns.py",
    "test_contacts.py",
    "test_contacts_stream.py",
    "test_dnc.py",
    "test_hopper.py",
    "test_take.py",
    "test_endings.py",
    "test_wrapup.py",
    "runner/",
    "ivr/",
    "console/",
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL 15 cluster for the session, with a migrated template database."""
    try:
        cluster = PgCluster.start()
    except PgUnavailable as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        cluster.create_database(PG_TEMPLATE)
        open_store(cluster.url(PG_TEMPLATE)).dispose()  # Alembic upgrade to head
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh PostgreSQL database at the current schema, dropped after the test."""
    name = pg_cluster.create_database(template=PG_TEMPLATE)
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store, made once per session (per xdist worker) and copied per test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    open_store(f"sqlite:///{path}").dispose()  # Alembic upgrade to head; WAL checkpointed
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh SQLite store at the current schema (the command lines refuse a missing one)."""
    path = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``store_url`` runs a test on both engines; so does ``db_url`` in the suites listed."""
    names = metafunc.fixturenames
    if "store_engine" not in names:
        return
    path = Path(metafunc.definition.path).relative_to(TESTS).as_posix()
    if "store_url" in names and (
        "db_url" not in names or any(path.startswith(s) for s in BOTH_ENGINE_SUITES)
    ):
        metafunc.parametrize("store_engine", ENGINES, indirect=True)


@pytest.fixture
def store_engine(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_engine: str) -> str:
    """A fresh store URL on ``store_engine``: a test that asks for it runs on both engines."""
    return str(request.getfixturevalue("pg_url" if store_engine == "postgresql" else "sqlite_url"))


@pytest.fixture
def db_url(store_url: str) -> str:
    """The store of the test: SQLite, or both engines in ``BOTH_ENGINE_SUITES``."""
    return store_url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first (the real switch, ``slow``): the workers of ``-n`` then share the
    short ones at the end instead of one worker finishing a minute-long test alone."""

    def long_first(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(TESTS).as_posix()
        return 0 if path.startswith("real/") or item.get_closest_marker("slow") else 1

    items.sort(key=long_first)
