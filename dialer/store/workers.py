"""Several dialer workers over one store: who is alive, who serves which switch.

Why it is shaped like this: the store (PostgreSQL in production) is the only thing the workers
share, so coordination is a few rows and conditional ``UPDATE``s, never a protocol of our own:

- each ``dialer run`` has a stable id (``--worker``, else the host name) and a fresh
  ``instance`` per start. Its ``worker`` row carries a heartbeat; a worker is *alive* while its
  heartbeat is younger than ``dead_after``. Starting a second process under the id of a live
  one is refused (``WorkerConflict``); a restart after a crash takes its own row over at once.
- a switch (one Asterisk server, one AMI connection) is served by one worker at a time: its
  ``switch`` row names the owner. A worker claims the switches its settings name that are free
  or whose owner is dead (one conditional ``UPDATE``: two claimants cannot both win), so adding
  a standby worker is starting one more ``dialer run`` with the same servers.
- a worker that claims a switch adopts the attempts left open there by dead workers (again one
  conditional ``UPDATE``); its AMI resync then follows the calls still live and ends the
  others ``unknown``.

Contacts need nothing here: leases (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL) expire
by themselves, and an open attempt blocks its number until it is reconciled.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dialer.errors import WorkerConflict
from dialer.store.models import Attempt, Switch, Worker

DEFAULT_HEARTBEAT = dt.timedelta(seconds=5)
DEFAULT_DEAD_AFTER = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class WorkerIdentity:
    """Who this process is: a stable id and this start's instance token."""

    id: str
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def of(cls, worker_id: str | None = None) -> WorkerIdentity:
        """``worker_id``, else ``$DIALER_WORKER_ID``, else the host name."""
        wid = worker_id or os.environ.get("DIALER_WORKER_ID") or socket.gethostname()
        if not wid or len(wid) > 64:
            raise WorkerConflict(f"worker id must be 1-64 characters, got {wid!r}")
        return cls(wid)


@dataclass(frozen=True)
class WorkerHealth:
    """One worker as the console shows it."""

    id: str
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    alive: bool
    stopped: bool
    switches: tuple[str, ...]
    info: Mapping[str, Any]

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "heartbeat_age_s": round((now - self.heartbeat_at).total_seconds(), 1),
            "state": "stopped" if self.stopped else ("alive" if self.alive else "dead"),
            "switches": list(self.switches),
            "info": dict(self.info),
        }


def _alive_cond(now: dt.datetime, dead_after: dt.timedelta) -> Any:
    return and_(Worker.stopped_at.is_(None), Worker.heartbeat_at > now - dead_after)


def register(
    session: Session,
    me: WorkerIdentity,
    now: dt.datetime,
    *,
    dead_after: dt.timedelta = DEFAULT_DEAD_AFTER,
) -> None:
    """Write (or take over) this worker's row. Raises ``WorkerConflict`` while another
    instance of the same id is alive."""
    row = session.get(Worker, me.id, with_for_update=True)
    if row is None:
        session.add(
            Worker(
                id=me.id,
                instance=me.instance,
                host=me.host,
                pid=me.pid,
                started_at=now,
                heartbeat_at=now,
                info={},
            )
        )
        try:
            session.flush()
        except IntegrityError:  # another start of the same id won the race
            raise WorkerConflict(f"worker {me.id!r} is starting elsewhere") from None
        return
    if (
        row.instance != me.instance
        and row.stopped_at is None
        and row.heartbeat_at > now - dead_after
        and not _gone_from_this_host(row, me)
    ):
        raise WorkerConflict(
            f"worker {me.id!r} is alive on {row.host} (pid {row.pid}, heartbeat "
            f"{(now - row.heartbeat_at).total_seconds():.0f} s ago): give this one "
            "another --worker id"
        )
    row.instance, row.host, row.pid = me.instance, me.host, me.pid
    row.started_at = row.heartbeat_at = now
    row.stopped_at = None
    row.info = {}
    session.flush()


def _gone_from_this_host(row: Worker, me: WorkerIdentity) -> bool:
    """The row's process ran on this host and no longer exists (killed with ``kill -9``: no
    need to wait out its last heartbeat). A pid reused since errs on the side of alive."""
    if row.host != me.host or not row.pid or row.pid == me.pid:
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process now: alive as far as we can tell
        return False
    return False


def heartbeat(
    session: Session, me: WorkerIdentity, now: dt.datetime, info: Mapping[str, Any]
) -> bool:
    """Refresh this worker's heartbeat; False when another instance has taken the id over
    (this process must then stop dialling)."""
    res = session.execute(
        update(Worker)
        .where(Worker.id == me.id, Worker.instance == me.instance)
        .values(heartbeat_at=now, info=dict(info), stopped_at=None)
    )
    return bool(getattr(res, "rowcount", 0))


def stopped(session: Session, me: WorkerIdentity, now: dt.datetime) -> None:
    """A clean stop: the switches are free at once for another worker."""
    session.execute(
        update(Worker)
        .where(Worker.id == me.id, Worker.instance == me.instance)
        .values(stopped_at=now, heartbeat_at=now)
    )
    session.execute(update(Switch).where(Switch.owner == me.id).values(owner=None))


def alive_ids(
    session: Session, now: dt.datetime, dead_after: dt.timedelta = DEFAULT_DEAD_AFTER
) -> set[str]:
    return set(session.scalars(select(Worker.id).where(_alive_cond(now, dead_after))))


def claim_switch(
    session: Session,
    name: str,
    me: WorkerIdentity,
    now: dt.datetime,
    *,
    dead_after: dt.timedelta = DEFAULT_DEAD_AFTER,
    takeover_only: bool = False,
) -> bool:
    """Become the switch's owner if it is free, ours, or its owner is dead; True if ours.
    ``takeover_only``: only from a dead owner (a standby worker's failover; a switch nobody
    serves yet, or one freed by a clean stop, is left to the workers that name it first).

    The switch row is locked first (``FOR UPDATE``), so the owner's liveness is read after any
    other claimant's transaction has ended: two workers never both win."""
    row = session.get(Switch, name, with_for_update=True, populate_existing=True)
    if takeover_only and (row is None or row.owner is None or row.owner == me.id):
        return row is not None and row.owner == me.id
    if row is None:
        try:
            with session.begin_nested():
                session.add(Switch(name=name, owner=me.id, claimed_at=now))
            return True
        except IntegrityError:  # another worker created it first: claim as usual
            row = session.get(Switch, name, with_for_update=True, populate_existing=True)
            if row is None:
                return False
    if row.owner is not None and row.owner != me.id:
        if row.owner in alive_ids(session, now, dead_after):
            return False
    if row.owner != me.id:
        row.owner = me.id
        row.claimed_at = now
    session.flush()
    return True


def owns_switch(session: Session, name: str, me: WorkerIdentity) -> bool:
    return session.scalar(select(Switch.owner).where(Switch.name == name)) == me.id


_SWITCHES = cast(Table, Switch.__table__)
#: The switch's owner, its row locked FOR SHARE (built once: it runs before every dial batch).
_SWITCH_OWNER_FOR_SHARE = (
    select(_SWITCHES.c.owner)
    .where(_SWITCHES.c.name == bindparam("name"))
    .with_for_update(read=True)
)


def served_by_another(session: Session, name: str, worker_id: str) -> str | None:
    """The worker serving switch ``name`` if that is not ``worker_id`` (None: ours, free, or
    a switch no worker has claimed - a single ``dialer run``).

    The fence of every Originate: a worker judged dead while it was only slow (a stall longer
    than ``dead_after``) keeps dialling until its next round learns that another worker took
    its switch over. The switch row is locked ``FOR SHARE`` until the caller's transaction
    ends; ``claim_switch`` locks it ``FOR UPDATE`` and adopts in the same transaction. So an
    attempt prepared on the switch was either written before the takeover (and is adopted
    with the others) or sees the new owner here and is never sent: none is left open that
    no worker follows."""
    owner = session.execute(_SWITCH_OWNER_FOR_SHARE, {"name": name}).scalar()
    return owner if owner is not None and owner != worker_id else None


def release_switch(session: Session, name: str, me: WorkerIdentity) -> None:
    session.execute(
        update(Switch).where(Switch.name == name, Switch.owner == me.id).values(owner=None)
    )


def adopt_open_attempts(
    session: Session,
    server: str,
    me: WorkerIdentity,
    now: dt.datetime,
    *,
    dead_after: dt.timedelta = DEFAULT_DEAD_AFTER,
) -> int:
    """Take over the attempts left open on ``server`` by workers that are not alive (and by
    no one: rows from before workers had ids). Returns how many were adopted."""
    others_alive = alive_ids(session, now, dead_after) - {me.id}
    cond = [
        Attempt.outcome.is_(None),
        Attempt.server == server,
        or_(Attempt.owner.is_(None), Attempt.owner != me.id),
    ]
    if others_alive:
        cond.append(or_(Attempt.owner.is_(None), Attempt.owner.not_in(sorted(others_alive))))
    res = session.execute(
        update(Attempt)
        .where(*cond)
        .values(owner=me.id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(res, "rowcount", 0) or 0)


def health(
    session: Session, now: dt.datetime, dead_after: dt.timedelta = DEFAULT_DEAD_AFTER
) -> list[WorkerHealth]:
    """Every worker the store knows, with the switches it serves."""
    owners: dict[str, list[str]] = {}
    for name, owner in session.execute(select(Switch.name, Switch.owner).order_by(Switch.name)):
        if owner is not None:
            owners.setdefault(owner, []).append(name)
    out = []
    for w in session.scalars(select(Worker).order_by(Worker.id)):
        alive = w.stopped_at is None and w.heartbeat_at > now - dead_after
        out.append(
            WorkerHealth(
                id=w.id,
                host=w.host,
                pid=w.pid,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                alive=alive,
                stopped=w.stopped_at is not None,
                switches=tuple(owners.get(w.id, ()) if alive else ()),
                info=w.info or {},
            )
        )
    return out


def switch_owners(session: Session, names: Iterable[str]) -> dict[str, str | None]:
    wanted = list(names)
    q = select(Switch.name, Switch.owner).where(Switch.name.in_(wanted))
    rows: dict[str, str | None] = {n: o for n, o in session.execute(q)}
    return {n: rows.get(n) for n in wanted}


__all__ = [
    "DEFAULT_DEAD_AFTER",
    "DEFAULT_HEARTBEAT",
    "WorkerConflict",
    "WorkerHealth",
    "WorkerIdentity",
    "adopt_open_attempts",
    "alive_ids",
    "claim_switch",
    "health",
    "heartbeat",
    "owns_switch",
    "register",
    "release_switch",
    "served_by_another",
    "stopped",
    "switch_owners",
]
