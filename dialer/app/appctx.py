"""What every command is handed: the store URL, the settings, a lazily opened store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from dialer.settings import Settings, load_settings
from dialer.store import Store, open_store
from dialer.store.db import require_store


@dataclass
class AppContext:
    """What every command is handed: the store URL, settings, and a lazily opened store."""

    db_url: str
    settings_path: Path | None = None
    _store: Store | None = field(default=None, repr=False)
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            require_store(self.db_url)  # only `dialer db upgrade` creates a store
            self._store = open_store(self.db_url)
        return self._store

    def close(self) -> None:
        """Dispose of the store's connections (called when the command ends)."""
        if self._store is not None:
            self._store.dispose()
            self._store = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.settings_path)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)
