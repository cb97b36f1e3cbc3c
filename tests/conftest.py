"""Shared fixtures: a fresh SQLite store per test, a fixed hashing key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialer.store import Store, open_store

os.environ.setdefault("DIALER_SECRET_KEY", "test-only-key-not-a-secret")
os.environ.setdefault("DIALER_AMI_SECRET", "test-only-ami-secret")
os.environ.setdefault("DIALER_API_TOKEN", "test-only-api-token")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()
