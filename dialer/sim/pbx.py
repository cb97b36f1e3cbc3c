"""``SimPbx``: the simulated PBX assembled (engine, AMI server, queues, scenario).

In-process use (tests)::

    from dialer.sim import SimPbx, VirtualClock

    pbx = SimPbx(clock=VirtualClock(), secret="s3cret", record=True)
    # defaults: config/asterisk/extensions.conf (+ #include extensions_dialer.conf),
    # config/asterisk/sim/customer.conf, config/asterisk/queues.conf, sounds/;
    # secret defaults to $DIALER_AMI_SECRET, user "dialer"
    port = await pbx.start(ami_port=0)          # 127.0.0.1, returns the bound port
    ...                                         # an AMI client connects to 127.0.0.1:port
    await pbx.clock.advance(5)                  # move simulated time (fires due timers)
    await pbx.clock.run_until(t)                # ... to simulated time t (seconds)
    await pbx.clock.run_until_true(pred, 60)    # ... timer by timer until pred() holds
    pbx.clock.start_auto()                      # or: jump whenever nothing is pending
    AMIClient(..., opener=pbx.local_opener())   # a client in this process whose traffic
                                                # holds a virtual clock while in flight
    pbx.faults.drop_all() / drop(0) / refuse_for(10[, mode="unlisten"])
    pbx.events                                  # every AmiEvent emitted (record=True)
    await pbx.stop()

Time never moves by itself on a ``VirtualClock`` unless ``start_auto()`` runs; while an AGI
command is in flight to a FastAGI server the clock waits for the reply (up to
``io_grace`` seconds of real time). A test FastAGI server that wants to idle in simulated
time uses ``await pbx.clock.peer_sleep(s)``. ``RealClock(speed)`` runs in wall time.

Other entry points: ``pbx.engine.originate(OriginateRequest(...))`` (no AMI needed),
``pbx.engine.queues`` (``add_member``/``remove_member``/``pause_member``, per-interface
``behaviour[iface] = AgentBehaviour(...)``, ``default_behaviour``), ``pbx.engine.party_model``
(set by a scenario), ``pbx.engine.agi_port_map[(host, port)] = (host, real_port)``.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dialer import CONFIG_DIR, SOUNDS_DIR
from dialer.sim.ami_server import DEFAULT_READ, AmiServer, read_classes
from dialer.sim.clock import AnyClock, VirtualClock
from dialer.sim.dialplan import Dialplan
from dialer.sim.engine import Engine
from dialer.sim.events import AmiEvent
from dialer.sim.sounds import SoundLibrary

ASTERISK_DIR = CONFIG_DIR / "asterisk"
DEFAULT_DIALPLAN = ASTERISK_DIR / "extensions.conf"
DEFAULT_CUSTOMER = ASTERISK_DIR / "sim" / "customer.conf"
DEFAULT_QUEUES = ASTERISK_DIR / "queues.conf"
#: the least-privilege AMI user operators install; its read classes gate events as in Asterisk
DEFAULT_MANAGER_CONF = ASTERISK_DIR / "manager.conf"
DEFAULT_SOUNDS = SOUNDS_DIR


class Faults:
    """Faults on purpose, to exercise a client's reconnect logic."""

    def __init__(self, ami: AmiServer) -> None:
        self._ami = ami

    def drop_all(self) -> int:
        """Close every AMI connection now; returns how many were closed."""
        return self._ami.drop_all()

    def drop(self, which: int = 0) -> bool:
        """Close one AMI connection (index in connection order, oldest = 0)."""
        return self._ami.drop(which)

    def refuse_for(self, seconds: float, mode: str = "accept_close") -> None:
        """Refuse new AMI connections for ``seconds`` of PBX time: ``accept_close`` (EOF
        before the banner) or ``unlisten`` (connection refused, then listening again)."""
        self._ami.refuse_for(seconds, mode)

    def delay_events(self, seconds: float) -> None:
        """Deliver every AMI event ``seconds`` of PBX time after it is raised (its
        ``Timestamp`` stays the moment it was raised): a client that reads its events late.
        0 ends the fault (events already late still arrive in order)."""
        self._ami.event_delay_s = seconds


class SimPbx:
    def __init__(
        self,
        *,
        clock: AnyClock | None = None,
        dialplan: str | Path | Dialplan | None = None,
        customer: str | Path | None | bool = True,
        queues: str | Path | None | bool = True,
        scenario: str | Path | dict[str, Any] | None = None,
        secret: str | None = None,
        username: str = "dialer",
        sounds_roots: list[Path] | None = None,
        seed: int = 0,
        auth_timeout: float = 30.0,
        record: bool = False,
        manager_conf: Path | None = None,
    ) -> None:
        self.clock: AnyClock = clock or VirtualClock()
        if isinstance(dialplan, Dialplan):
            dp = dialplan
        else:
            files: list[str | Path] = [dialplan or DEFAULT_DIALPLAN]
            if customer is True:
                files.append(DEFAULT_CUSTOMER)
            elif customer:
                files.append(customer)
            dp = Dialplan.load(*files)
        self.dialplan = dp
        self.rng = random.Random(seed)
        self.engine = Engine(
            self.clock,
            dp,
            SoundLibrary(sounds_roots if sounds_roots is not None else [DEFAULT_SOUNDS]),
            self.rng,
        )
        if secret is None:
            secret = os.environ.get("DIALER_AMI_SECRET")
        # without ``manager_conf`` the user has every class, as the recorded transcripts' user
        read = read_classes(manager_conf, username) if manager_conf is not None else DEFAULT_READ
        self.ami = AmiServer(self.engine, username, secret, auth_timeout=auth_timeout, read=read)
        self.faults = Faults(self.ami)
        self.events: list[AmiEvent] = []
        if record:
            self.engine.listeners.append(self.events.append)
        self._queues_path = DEFAULT_QUEUES if queues is True else (queues or None)
        self.scenario: Any = None
        if self._queues_path:
            from dialer.sim.queues import QueueManager

            self.engine.queues = QueueManager.load(self.engine, Path(self._queues_path))
        if scenario is not None:
            from dialer.sim.scenario import apply_scenario

            self.scenario = apply_scenario(self, scenario)

    @property
    def port(self) -> int:
        return self.ami.port

    async def start(self, host: str = "127.0.0.1", ami_port: int = 0) -> int:
        """Listen for AMI on ``host:ami_port`` (0 = any free port); returns the bound port."""
        port = await self.ami.start(host, ami_port)
        if self.scenario is not None:
            self.scenario.start()
        return port

    def local_opener(self) -> Callable[[], Awaitable[tuple[_CountedReader, _CountedWriter]]]:
        """An AMI client's ``opener`` for a client in this process: TCP to this PBX, and, on a
        ``VirtualClock``, time stands still while bytes are in flight either way (written by
        one end, not yet read by the other), so no event or action is late in simulated time
        however long the process takes to read it."""

        async def open_link() -> tuple[_CountedReader, _CountedWriter]:
            reader, writer = await asyncio.open_connection(self.ami.host, self.port)
            link = _Link(writer.get_extra_info("sockname"))
            if isinstance(self.clock, VirtualClock):
                release = self.clock.hold(lambda: self._in_flight(link))
                link.on_close = release
            return _CountedReader(reader, link), _CountedWriter(writer, link)

        return open_link

    def _in_flight(self, link: _Link) -> bool:
        if link.closed:
            return False
        s = self.ami.session_of(link.local)
        if s is None or s.closing:
            return False  # not accepted yet (nothing sent), or gone
        return s.sent != link.received or link.sent != s.received

    async def stop(self) -> None:
        if self.scenario is not None:
            self.scenario.stop()
        await self.ami.stop()
        for ch in list(self.engine.channels.values()):
            if ch.task is not None:
                ch.task.cancel()
        for t in list(self.engine._tasks):
            t.cancel()


class _Link:
    """Bytes one AMI client connection has written and read (see ``SimPbx.local_opener``)."""

    def __init__(self, local: object) -> None:
        self.local = local
        self.sent = 0
        self.received = 0
        self.closed = False
        self.on_close: Callable[[], None] | None = None

    def close(self) -> None:
        self.closed = True
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


class _CountedReader:
    def __init__(self, reader: asyncio.StreamReader, link: _Link) -> None:
        self._reader = reader
        self._link = link

    async def read(self, n: int = -1, /) -> bytes:
        data = await self._reader.read(n)
        self._link.received += len(data)
        if not data:
            self._link.close()
        return data


class _CountedWriter:
    def __init__(self, writer: asyncio.StreamWriter, link: _Link) -> None:
        self._writer = writer
        self._link = link

    def write(self, data: bytes, /) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)
            self._link.sent += len(data)

    def close(self) -> None:
        self._link.close()
        self._writer.close()
