"""Hot reload: a polling file watcher and a SIGHUP handler that call ``Floor.reload``.

Polling mtimes once a second needs no new dependency and works the same on every file
system (bind mounts and network shares included). A file whose mtime or size changed is
re-read and hashed; only a real content change triggers a reload. A refused reload (invalid
file) is logged with the reason, counted, and kept in a ``ReloadLog`` that the API and page
show; the floor keeps its running settings and reports the error in
``CampaignSnapshot.last_error``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dialer import CONFIG_DIR
from dialer.errors import ConfigError
from dialer.floor.console.metrics import DialerMetrics, ReloadResult
from dialer.floor.view import Floor
from dialer.privacy import scrub
from dialer.settings import Settings

log = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ReloadEvent:
    at: dt.datetime
    actor: str
    path: str | None
    ok: bool
    changed: tuple[str, ...] = ()
    error: str | None = None


class ReloadLog:
    """The most recent reloads, newest last."""

    def __init__(self, size: int = 50) -> None:
        self._events: collections.deque[ReloadEvent] = collections.deque(maxlen=size)

    def add(self, event: ReloadEvent) -> None:
        self._events.append(event)

    def recent(self, n: int = 10) -> list[ReloadEvent]:
        return list(self._events)[-n:]

    def last_error(self) -> ReloadEvent | None:
        for ev in reversed(self._events):
            return None if ev.ok else ev
        return None


async def reload_and_record(
    floor: Floor,
    path: str | None,
    *,
    actor: str,
    reload_log: ReloadLog,
    metrics: DialerMetrics | None = None,
) -> ReloadEvent:
    """Ask the floor to reload; a refusal is logged and recorded, never raised."""
    try:
        changed = await floor.reload(path, actor=actor)
    except ConfigError as exc:
        reason = scrub(str(exc))
        log.warning("reload refused (%s, by %s): %s", path or "all files", actor, reason)
        event = ReloadEvent(floor.now(), actor, path, ok=False, error=reason)
        if metrics is not None:
            metrics.count_reload(ReloadResult.REFUSED)
    else:
        event = ReloadEvent(floor.now(), actor, path, ok=True, changed=tuple(changed))
        if changed:
            log.info("reloaded %s (by %s): %s", path or "all files", actor, ", ".join(changed))
        if metrics is not None:
            metrics.count_reload(ReloadResult.APPLIED if changed else ReloadResult.UNCHANGED)
    reload_log.add(event)
    return event


@dataclass(frozen=True)
class _Fingerprint:
    mtime_ns: int
    size: int
    sha256: str


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.iterdir() if f.suffix in CONFIG_SUFFIXES and f.is_file())
            )
        elif p.is_file():
            out.append(p)
    return out


class FileWatcher:
    """Polls campaign and settings files (files, or folders of ``*.yaml``) for changes."""

    def __init__(
        self,
        floor: Floor,
        paths: Sequence[Path],
        *,
        reload_log: ReloadLog,
        metrics: DialerMetrics | None = None,
        interval_s: float = 1.0,
        actor: str = "file-watcher",
    ) -> None:
        self.floor = floor
        self.paths = [Path(p) for p in paths]
        self.reload_log = reload_log
        self.metrics = metrics
        self.interval_s = interval_s
        self.actor = actor
        self._seen: dict[Path, _Fingerprint] = {}
        self._task: asyncio.Task[None] | None = None

    def _fingerprint(self, path: Path) -> _Fingerprint | None:
        try:
            st = path.stat()
            old = self._seen.get(path)
            if old is not None and (old.mtime_ns, old.size) == (st.st_mtime_ns, st.st_size):
                return old
            return _Fingerprint(
                st.st_mtime_ns, st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()
            )
        except OSError:
            return None  # vanished between listing and reading: next poll decides

    def baseline(self) -> None:
        """Remember the files as they are now (no reload)."""
        self._seen = {}
        for f in _files(self.paths):
            fp = self._fingerprint(f)
            if fp is not None:
                self._seen[f] = fp

    def changed_files(self) -> list[Path]:
        changed = []
        current: dict[Path, _Fingerprint] = {}
        for f in _files(self.paths):
            fp = self._fingerprint(f)
            if fp is None:
                continue
            current[f] = fp
            old = self._seen.get(f)
            if old is None or old.sha256 != fp.sha256:
                changed.append(f)
        self._seen = current
        return changed

    async def check_once(self) -> list[ReloadEvent]:
        events = []
        # listing, stat and hashing touch the disk: off the event loop, like the parsing
        for f in await asyncio.to_thread(self.changed_files):
            events.append(
                await reload_and_record(
                    self.floor,
                    str(f),
                    actor=self.actor,
                    reload_log=self.reload_log,
                    metrics=self.metrics,
                )
            )
        return events

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_once()
            except Exception:  # a watcher that dies silently is worse than a logged error
                log.exception("file watcher: unexpected error")

    def start(self) -> None:
        if self._task is None:
            self.baseline()
            self._task = asyncio.get_running_loop().create_task(self.run(), name="config-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


class SighupReloader:
    """``kill -HUP <pid>`` reloads every changed file."""

    def __init__(
        self,
        floor: Floor,
        *,
        reload_log: ReloadLog,
        metrics: DialerMetrics | None = None,
        on_done: Callable[[ReloadEvent], None] | None = None,
    ) -> None:
        self.floor = floor
        self.reload_log = reload_log
        self.metrics = metrics
        self.on_done = on_done
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _reload(self) -> None:
        event = await reload_and_record(
            self.floor, None, actor="sighup", reload_log=self.reload_log, metrics=self.metrics
        )
        if self.on_done is not None:
            self.on_done(event)

    def _fire(self) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._reload(), name="sighup-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def install(self) -> bool:
        """Returns False where signals cannot be handled (not the main thread, no SIGHUP)."""
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_signal_handler(signal.SIGHUP, self._fire)
        except (RuntimeError, ValueError, NotImplementedError, AttributeError) as exc:
            log.warning("SIGHUP reload not available: %s", exc)
            return False
        return True

    async def uninstall(self) -> None:
        if self._loop is not None:
            try:
                self._loop.remove_signal_handler(signal.SIGHUP)
            except (RuntimeError, ValueError, NotImplementedError, AttributeError):
                pass
        for t in list(self._tasks):
            await asyncio.gather(t, return_exceptions=True)


def config_paths(settings: Settings, *, include_settings: bool = True) -> list[Path]:
    """What to watch for a running dialer: the campaigns folder and the settings file."""
    base = Path(settings.source).parent if settings.source else CONFIG_DIR
    paths = [base / settings.campaigns_dir]
    if settings.source and include_settings:
        paths.append(Path(settings.source))
    return [p for p in paths if p.exists()]
