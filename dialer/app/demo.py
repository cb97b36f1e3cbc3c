"""``dialer demo``: the whole product on one machine, on a simulated floor.

Starts the simulated PBX (with its simulated agents and called parties), the IVR's FastAGI
server and the dialer, each on a free port, over SQLite in a temporary folder with a generated
hashing key; applies the sample campaigns shipped in ``config/campaigns/``, imports generated
contacts for them, and runs them to completion on a clock that starts inside their calling
window on a working day, whatever the wall clock says.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import logging
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.app.shift import Progress, ShiftMeter, progress_line, write_chart
from dialer.lists.campaigns import apply_campaign, load_campaign_file, spec_of
from dialer.lists.contacts import import_contacts
from dialer.settings import Settings
from dialer.store import Store, open_store
from dialer.store.models import Campaign

log = logging.getLogger(__name__)

DEMO_TZ = ZoneInfo("Asia/Shanghai")
DEMO_FLOOR = CONFIG_DIR / "demo" / "floor.yaml"
DEMO_QUEUES = CONFIG_DIR / "demo" / "queues.conf"
#: real seconds a simulated floor waits for pending work before its time moves anyway
VIRTUAL_GRACE_S = 10.0
#: how long the dialer gathers a batch of call updates before writing it, in simulated
#: seconds (live: 50 ms of wall time; at x60 that was 3 simulated seconds): one write per
#: simulated second, not one per event
VIRTUAL_FLUSH_S = 1.0
#: the shift's wall-clock limit is checked at least this often (real seconds, about)
WALL_CHECK_S = 5.0
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
#: Deterministic test numbers of the simulated PBX (last three digits), and their share.
SPECIAL = [("486", 0.06), ("503", 0.04), ("480", 0.06), ("404", 0.03)]


def demo_start(today: dt.date, hour: int = 10) -> dt.datetime:
    """The next working day (Mon-Fri, not a CN public holiday) at ``hour`` Beijing time."""
    cn = holidays.country_holidays("CN", years=range(today.year, today.year + 2))
    day = today
    while day.weekday() >= 5 or day in cn:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour), DEMO_TZ)


def generate_contacts(
    path: Path, fields: dict[str, Any], n: int, rng: random.Random, base: int
) -> None:
    """A CSV of ``n`` Chinese mobile customers with the campaign's fields."""
    cols = ["phone", "name", "language", *fields]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(n):
            tail = f"{i:04d}"
            r = rng.random()
            acc = 0.0
            for suffix, share in SPECIAL:
                acc += share
                if r < acc:
                    tail = tail[0] + suffix
                    break
            else:
                if tail[-3:] in {s for s, _ in SPECIAL}:
                    tail = tail[:-1] + "7"
            phone = f"+86 138 {base // 10000 % 10000:04d} {tail}"
            name = (
                rng.choice(SURNAMES)
                + rng.choice(GIVEN)
                + (rng.choice(GIVEN) if rng.random() < 0.5 else "")
            )
            row: list[str] = [phone, name, "zh" if rng.random() < 0.85 else "en"]
            for fspec in fields.values():
                kind = fspec["type"] if isinstance(fspec, dict) else fspec
                if kind == "decimal":
                    row.append(f"{rng.randint(100, 2_000_000) / 100:.2f}")
                elif kind == "date":
                    row.append(
                        (dt.date(2026, 12, 15) + dt.timedelta(days=rng.randint(0, 20))).isoformat()
                    )
                elif kind == "digits":
                    length = fspec.get("length", 4) if isinstance(fspec, dict) else 4
                    row.append("".join(str(rng.randint(0, 9)) for _ in range(length)))
                else:
                    row.append("x")
            w.writerow(row)


@dataclass
class DemoResult:
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0
    live_answers: int = 0
    abandoned: int = 0
    occupancy: float = 0.0
    per_campaign: dict[str, dict[str, Any]] = field(default_factory=dict)
    simulated_s: float = 0.0
    wall_s: float = 0.0
    clock: str = ""  # which clock ran the floor (``SimFloor.describe_clock``)
    shift_wall_s: float = 0.0  # real time of the shift alone (without set-up and summary)
    #: the predictive campaign's team: its occupancy and the campaign's abandon rate
    team: dict[str, Any] = field(default_factory=dict)

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.live_answers if self.live_answers else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "outcomes": dict(sorted(self.outcomes.items())),
            "unfinished": self.unfinished,
            "abandon_rate": round(self.abandon_rate, 4),
            "occupancy": round(self.occupancy, 4),
            "live_answers": self.live_answers,
            "abandoned": self.abandoned,
            "campaigns": self.per_campaign,
            "simulated_s": round(self.simulated_s, 1),
            "wall_s": round(self.wall_s, 1),
            "shift_wall_s": round(self.shift_wall_s, 1),
            "clock": self.clock,
            "team": self.team,
        }


def summarise(store: Store) -> DemoResult:
    from dialer.lists.stats import abandon_rate, outcome_counts

    res = DemoResult()
    with store.session() as s:
        for row in s.scalars(select(Campaign).order_by(Campaign.name)):
            per = dict(sorted(outcome_counts(s, row.id).items()))
            rate = abandon_rate(s, row.id, since=None)
            res.per_campaign[row.name] = {
                "mode": row.mode,
                "attempts": sum(per.values()),
                "outcomes": per,
                "live_answers": rate.live_answers,
                "abandon_rate": round(rate.rate, 4),
            }
            res.attempts += sum(per.values())
            res.unfinished += per.get("unfinished", 0)
            res.live_answers += rate.live_answers
            res.abandoned += rate.abandoned
            for k, v in per.items():
                if k != "unfinished":
                    res.outcomes[k] = res.outcomes.get(k, 0) + v
    return res


class SimFloor:
    """The simulated PBX, the IVR's FastAGI server and the dialer, wired on free ports.

    Used by ``dialer demo`` and by the end-to-end tests: ``async with SimFloor(...) as f:``
    then ``await f.dialer.run(until_idle=True)``. One clock serves all three:

    - ``speed=None`` (default): simulated time (``VirtualClock``) that jumps to the next thing
      due whenever nothing is pending - no task ready to run, no store work in a thread, no
      AMI bytes unread, no AGI reply awaited. Work of any length costs no simulated time, so
      the floor's figures do not depend on the machine; ``max_speed`` caps it at that many
      simulated seconds per real second (a floor a person can watch).
    - ``speed=N``: wall-clock time N times faster (``RealClock``): the floor runs against
      real time, and an event-loop stall delays everything, as it would live.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        start: dt.datetime,
        speed: float | None = None,
        max_speed: float | None = None,
        scenario: Path | dict[str, Any] | None = None,
        queues: Path | None = None,
        seed: int = 7,
        tick_s: float = 1.0,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        max_channels: int = 500,
        record: bool = False,
        alerts: Any = None,
    ) -> None:
        self.record = record
        self.alerts = alerts  # an AlertsConfig: the floor gets an alert desk
        self.store = store
        self.settings = settings
        self.start_at = start
        self.speed = speed
        self.max_speed = max_speed
        self.scenario = scenario
        self.queues = queues
        self.seed = seed
        self.tick_s = tick_s
        self.http_port = http_port
        self.http_host = http_host
        self.max_channels = max_channels
        self.console: tuple[Any, int] | None = None
        self._virtual: Any = None  # the VirtualClock, when time is simulated
        self.wall_started = time.monotonic()

    @property
    def virtual(self) -> bool:
        return self.speed is None

    def describe_clock(self) -> str:
        """Which clock runs the floor, in words (the demo's progress line and summary)."""
        if self.speed is not None:
            return f"wall clock x{self.speed:g}"
        if self.max_speed is not None:
            return f"simulated clock, at most x{self.max_speed:g}"
        return "simulated clock, as fast as the machine allows"

    async def __aenter__(self) -> SimFloor:
        from dialer.app.compose import FloorRoot
        from dialer.sim.clock import AnyClock, RealClock, VirtualClock
        from dialer.sim.pbx import DEFAULT_MANAGER_CONF, SimPbx
        from dialer.telephony.ami.adapter import AMIClient
        from dialer.telephony.core import WRITE_BATCH_S

        os.environ.setdefault("DIALER_AMI_SECRET", secrets.token_hex(16))
        epoch = self.start_at.timestamp()
        self.clock: AnyClock
        if self.speed is None:
            # a slow store write or a busy CPU holds time instead of a caller
            self.clock = VirtualClock(start_epoch=epoch, io_grace=VIRTUAL_GRACE_S)
            asyncio.get_running_loop().set_default_executor(self.clock.executor(name="floor"))
        else:
            self.clock = RealClock(speed=self.speed, start_epoch=epoch)
        self.pbx = SimPbx(
            clock=self.clock,
            scenario=self.scenario,
            queues=self.queues or True,
            seed=self.seed,
            record=self.record,
            manager_conf=DEFAULT_MANAGER_CONF,  # the dialer gets only the shipped read classes
        )
        self.ami_port = await self.pbx.start("127.0.0.1", 0)
        if isinstance(self.clock, VirtualClock):
            await self.clock.advance(0.0)  # what is due at 0 s (the agents log in)
        clock = self.clock
        await self._start_ivr()
        client = AMIClient(
            "127.0.0.1",
            self.ami_port,
            self.settings.ami.username,
            os.environ["DIALER_AMI_SECRET"],
            opener=self.pbx.local_opener(),  # its bytes in flight hold a simulated clock
        )
        virtual = self._virtual = self.clock if isinstance(self.clock, VirtualClock) else None
        self.root = FloorRoot(
            self.store,
            self.settings,
            client,
            agi_url=f"agi://127.0.0.1:{self.ivr.port}",
            core_clock=clock.epoch,
            clock=_SimClockAdapter(clock),
            tick_s=self.tick_s,
            max_channels=self.max_channels,
            alerts=self.alerts,
            # on a wall clock the core keeps its own wall-time tick and write batches
            core_sleep=virtual.sleep if virtual is not None else asyncio.sleep,
            db_executor=virtual.executor(1, "dialer-db") if virtual is not None else None,
            core_flush_s=VIRTUAL_FLUSH_S if virtual is not None else WRITE_BATCH_S,
        )
        self.core, self.dialer = self.root.core, self.root.dialer
        await self.root.start(
            console_host=self.http_host if self.http_port is not None else None,
            console_port=self.http_port,
            sighup=False,
        )
        self.console = self.root.console
        if virtual is not None:
            # time starts once the dialer is on the switch (the agents log in at 0 s)
            await self.core.wait_ready()
            self.wall_started = time.monotonic()
            virtual.start_auto(idle_real_s=0.0, max_speed=self.max_speed)
        return self

    async def _start_ivr(self) -> None:
        """The IVR's FastAGI server on the floor's clock."""
        from ivr.engine import Services
        from ivr.fastagi import FastAGIServer
        from ivr.flow import FlowLibrary
        from ivr.record import GroupCommitRecorder

        clock = self.clock

        def now_dt() -> dt.datetime:
            return dt.datetime.fromtimestamp(clock.epoch(), dt.UTC)

        services = Services(
            library=FlowLibrary.load(None),
            # in simulated time nothing else moves while a session's row is written: no group
            # to gather (a window would be wall time spent with the clock held)
            recorder=GroupCommitRecorder(
                self.store, now_dt, **({"window_s": 0.0} if self.virtual else {})
            ),
            store=self.store,
            clock=now_dt,
        )
        self.ivr = FastAGIServer(services, host="127.0.0.1", port=0)
        await self.ivr.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.root.stop(grace_s=5.0)
        await self.ivr.close(grace=1.0)
        await self.pbx.stop()
        if self._virtual is not None:
            self._virtual.stop_auto()

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Until ``event`` is set or ``timeout_s`` seconds of the floor's time pass."""
        return await self.clock.wait(event, timeout_s)

    def ready(self) -> dict[str, Any]:
        return {"console": self.console}

    @property
    def elapsed_s(self) -> float:
        return float(self.clock.epoch()) - self.start_at.timestamp()


def prepare_store(
    store: Store,
    settings: Settings,
    campaign_files: list[Path],
    *,
    contacts_per_campaign: int,
    start: dt.datetime,
    seed: int,
    workdir: Path,
) -> None:
    """Apply the campaign files and import generated contacts for each."""
    rng = random.Random(seed)
    with store.session() as s:
        for i, f in enumerate(campaign_files):
            spec = load_campaign_file(f)
            row, _ = apply_campaign(s, spec, source=str(f), actor="demo")
            csv_path = workdir / f"{spec.name}.csv"
            generate_contacts(
                csv_path,
                spec_of(row).to_document().get("fields", {}),
                contacts_per_campaign,
                rng,
                base=10_000 * (i + 1),
            )
            report = import_contacts(
                s,
                row,
                csv_path,
                default_region=settings.default_region,
                now=start.astimezone(dt.UTC),
            )
            log.info("demo: %s: imported %d contacts", spec.name, report.imported)


@dataclass(frozen=True)
class ShiftPlan:
    """How long the demo's shift lasts and what it leaves behind."""

    minutes: float = 60.0
    keep_running: bool = False  # dial on past the shift until SIGTERM / Ctrl-C
    chart: Path | None = None  # PNG of occupancy and abandon rate over the shift
    progress: TextIO | None = None  # the live progress line (stderr), None: quiet
    timeout_s: float = 450.0  # wall-clock limit of a shift (not of --keep-running)


async def run_demo(
    *,
    speed: float | None = None,
    max_speed: float | None = None,
    contacts_per_campaign: int = 40,
    seed: int = 7,
    workdir: Path | None = None,
    scenario: Path | None = None,
    plan: ShiftPlan | None = None,
    keep_running: bool = False,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> DemoResult:
    """Run the demo's shift and return its figures (the caller prints them). The floor's
    clock: simulated time as fast as the machine allows (default), at most ``max_speed``
    times real time, or the wall clock ``speed`` times faster (see ``SimFloor``)."""
    from dialer.app.alerting import alerts_of

    plan = plan or ShiftPlan(keep_running=keep_running)
    wall0 = time.monotonic()
    tmp_ctx = (
        tempfile.TemporaryDirectory(prefix="dialer-demo-")
        if workdir is None
        else contextlib.nullcontext(str(workdir))
    )
    with tmp_ctx as tmp:
        tmpdir = Path(tmp)
        os.environ.setdefault("DIALER_SECRET_KEY", secrets.token_hex(32))
        os.environ.setdefault("DIALER_API_TOKEN", secrets.token_urlsafe(24))
        store = open_store(f"sqlite:///{tmpdir / 'demo.db'}")
        settings = Settings()
        start = demo_start(dt.datetime.now(DEMO_TZ).date())
        prepare_store(
            store,
            settings,
            sorted((CONFIG_DIR / "campaigns").glob("*.yaml")),
            contacts_per_campaign=contacts_per_campaign,
            start=start,
            seed=seed,
            workdir=tmpdir,
        )
        floor = SimFloor(
            store,
            settings,
            start=start,
            speed=speed,
            max_speed=max_speed,
            scenario=scenario or DEMO_FLOOR,
            queues=DEMO_QUEUES,
            seed=seed,
            http_port=http_port,
            http_host=http_host,
            # an alert can only come in through the console's API: without one the alert
            # desk would look at an empty table every tick
            alerts=alerts_of(settings) if http_port is not None else None,
        )
        async with floor:
            if on_ready is not None:
                on_ready({"ami_port": floor.ami_port, "agi_port": floor.ivr.port} | floor.ready())
            team = paced_team(store)
            meter = ShiftMeter(store, team.campaign_id) if team else None
            await run_shift(floor, plan, meter, team)
            simulated = floor.elapsed_s
            shift_wall = time.monotonic() - floor.wall_started
        result = summarise(store)
        result.occupancy = floor.dialer.occupancy
        result.simulated_s = simulated
        result.clock = floor.describe_clock()
        result.shift_wall_s = shift_wall
        if team is not None and meter is not None:
            result.team = team_figures(team, meter, floor)
            _chart(plan, meter, team)
        result.wall_s = time.monotonic() - wall0
        store.dispose()
        return result


def _chart(plan: ShiftPlan, meter: ShiftMeter, team: Team) -> None:
    if plan.chart is not None and meter.points:
        write_chart(
            meter.points,
            plan.chart,
            title=f"{team.campaign} ({team.queue}): a simulated shift",
            abandon_cap=team.abandon_cap,
        )


@dataclass(frozen=True)
class Team:
    """The predictive campaign of the demo and the agents it paces."""

    campaign_id: int
    campaign: str
    queue: str
    abandon_cap: float


def paced_team(store: Store) -> Team | None:
    """The first predictive campaign (with its queue), else the first with agents."""
    with store.session() as s:
        rows = list(s.scalars(select(Campaign).order_by(Campaign.name)))
        specs = [(row, spec_of(row)) for row in rows]
    ordered = sorted(specs, key=lambda rs: rs[1].mode.value != "predictive")
    for row, spec in ordered:
        if spec.queue and not spec.flow:
            return Team(row.id, row.name, spec.queue, spec.pacing.abandon_cap)
    return None


def team_figures(team: Team, meter: ShiftMeter, floor: SimFloor) -> dict[str, Any]:
    busy, logged = floor.dialer.loop.occupancy.of_queue(team.queue)
    last = meter.points[-1] if meter.points else None
    return {
        "campaign": team.campaign,
        "queue": team.queue,
        "agents": sum(1 for a in floor.dialer.agents() if team.queue in a.queues),
        "occupancy": round(busy / logged, 4) if logged else 0.0,
        "abandon_rate": round(last.abandon_rate, 4) if last else 0.0,
        "live_answers": last.live_answers if last else 0,
        "abandoned": last.abandoned if last else 0,
        "abandon_cap": team.abandon_cap,
    }


async def run_shift(
    floor: SimFloor, plan: ShiftPlan, meter: ShiftMeter | None, team: Team | None
) -> None:
    """Dial until the shift ends (or, with ``keep_running``, until SIGTERM / SIGINT), showing
    the progress line; a signal stops the floor cleanly, so the temporary folder goes too."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(floor.dialer.run(until_idle=not plan.keep_running))
    task.add_done_callback(lambda _: stop.set())  # the campaigns ran out: the shift ends
    show = Progress(plan.progress) if plan.progress is not None else None
    wall_end = loop.time() + plan.timeout_s
    end_s = plan.minutes * 60.0
    try:
        while not stop.is_set():
            elapsed = floor.elapsed_s
            if not plan.keep_running:
                if elapsed >= end_s:
                    break
                if loop.time() > wall_end:
                    log.warning("demo: time limit of %s s reached; stopping", plan.timeout_s)
                    break
            if meter is not None and team is not None and meter.due(elapsed):
                _sample(floor, plan, meter, team, show)
            # on the floor's clock: a point each simulated minute, the end of the shift on time
            step = meter.every_s if meter is not None else 60.0
            until = min(step - elapsed % step, WALL_CHECK_S * _rate(floor))
            if not plan.keep_running:
                until = min(until, end_s - elapsed)
            await floor.wait(stop, max(until, 0.0))
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if meter is not None and team is not None:
            _sample(floor, plan, meter, team, show)
        if show is not None:
            show.end()
        floor.dialer.stop()
        await task


def _rate(floor: SimFloor) -> float:
    """Simulated seconds per real second so far (at least 1)."""
    wall = time.monotonic() - floor.wall_started
    return max(1.0, floor.elapsed_s / wall) if wall > 0 else 1.0


def _sample(
    floor: SimFloor, plan: ShiftPlan, meter: ShiftMeter, team: Team, show: Progress | None
) -> None:
    busy, logged = floor.dialer.loop.occupancy.of_queue(team.queue)
    in_flight = floor.core.live_calls()
    point = meter.sample(floor.elapsed_s, busy, logged, in_flight)
    if show is not None:
        clock = dt.datetime.fromtimestamp(floor.clock.epoch(), DEMO_TZ)
        line = progress_line(point, clock, plan.minutes, team.queue)
        show.show(f"{line}  [{floor.describe_clock()}: x{_rate(floor):.0f}]", point.minute)


class _SimClockAdapter:
    """The dialer's ``Clock`` on the simulated PBX's clock (one time for both)."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock

    def time(self) -> float:
        return float(self._clock.epoch())

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(max(seconds, 0.0))

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return bool(await self._clock.wait(event, timeout))
