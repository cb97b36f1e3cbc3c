"""A throw-away PostgreSQL 15 cluster for the test session (Debian's ``postgresql`` package).

``PgCluster.start()`` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/15/bin`` (or
``$PG_BINDIR``) on a free loopback port with its unix socket in a temporary folder; as root it
runs them as the ``postgres`` user (PostgreSQL refuses to run as root). The cluster is built for
speed, not durability (no fsync): every test gets a fresh database copied from a migrated
template (``CREATE DATABASE ... TEMPLATE``), which takes a few milliseconds.

Outside CI a machine without PostgreSQL skips the PostgreSQL tests; with ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
#: The OS user the server runs as when the tests run as root.
SERVER_USER = "postgres"
#: The database role every test connects as (a superuser: it creates and drops databases).
ROLE = "dialer"


class PgUnavailable(RuntimeError):
    """This machine cannot run a PostgreSQL cluster (binaries or the server user missing)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@dataclass
class PgCluster:
    root: Path
    port: int
    bindir: Path
    run_as: str | None  # OS user for the server's commands, None: ourselves

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL over the unix socket (psycopg 3)."""
        return f"postgresql+psycopg://{ROLE}@/{database}?host={self.sockdir}&port={self.port}"

    def tcp_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"

    # --- life cycle ---------------------------------------------------------------------

    @classmethod
    def start(cls, bindir: Path | None = None) -> PgCluster:
        bindir = bindir or Path(os.environ.get("PG_BINDIR", DEFAULT_BINDIR))
        if not (bindir / "initdb").exists() or not (bindir / "pg_ctl").exists():
            raise PgUnavailable(f"no initdb/pg_ctl in {bindir} (apt-get install postgresql)")
        run_as = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PgUnavailable(f"running as root and no {SERVER_USER!r} user") from None
            run_as = SERVER_USER
        root = Path(tempfile.mkdtemp(prefix="dialer-pg-"))
        cluster = cls(root, free_port(), bindir, run_as)
        cluster.sockdir.mkdir()
        if run_as is not None:
            for p in (root, cluster.sockdir):
                os.chown(p, user.pw_uid, user.pw_gid)
        try:
            cluster._initdb()
            cluster._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(root / "server.log"),
                "-o",
                " ".join(
                    [
                        f"-p {cluster.port}",
                        f"-k {cluster.sockdir}",
                        "-c listen_addresses=127.0.0.1",
                        "-c fsync=off",
                        "-c synchronous_commit=off",
                        "-c full_page_writes=off",
                        "-c max_connections=300",
                        "-c shared_buffers=64MB",
                    ]
                ),
            )
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", timeout=120)
        if r.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgUnavailable(f"{' '.join(argv[:2])} failed: {r.stderr.strip()} {tail}")

    def _initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            ROLE,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args)

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            try:
                self._pg_ctl("stop", "-m", "immediate", "-w")
            except PgUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ----------------------------------------------------------------------

    def execute(self, *statements: str) -> None:
        """Run statements outside a transaction on the maintenance database."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                for sql in statements:
                    conn.execute(text(sql))
        finally:
            engine.dispose()

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """A new database (a copy of ``template`` if given); returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        tpl = f" TEMPLATE {template}" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{tpl}')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["ROLE", "PgCluster", "PgUnavailable", "free_port", "in_ci"]
