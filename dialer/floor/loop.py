"""The campaign loop: campaigns on the floor, the agent pool, pacing, leasing and dialling.

Why it is shaped like this: the runner is the only place where the parts meet. It reads the
agent pool (queue events), the calls the tracker follows, the estimators and the abandon
counts; asks the campaign's pacing policy (pure: state and clock in, number of calls out) how
many calls to place *now*; leases that many contacts from the hopper (which re-checks every
compliance rule at lease time and again when the attempt row is written); and hands each
attempt to the dialer core, which originates it once and reports its one outcome.

Rules of this file:
- No pacing arithmetic here: modes are policies (``dialer.pacing``; power mode's fall-back to
  progressive over its abandon cap included). The runner only applies the limits that are not
  pacing: the channel cap and ``calls_per_second`` (a pacer at send time).
- Database work runs in threads (``asyncio.to_thread``) so AMI events never wait on it.
- Time comes from an injected ``Clock`` (wall time live; simulated time in the demo): every
  wait that means time on the floor (the tick, the calls-per-second pacer) is the clock's, so
  on a simulated clock that stands still while work is pending, work never costs callers time.
- Every task it starts is kept (``tasks``) until it ends. What supervisors read is
  ``reading.FloorView``; what they do is ``control.FloorControl``; ``service.Dialer`` joins them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import and_, or_, select

from dialer.errors import ConfigError, DialerError
from dialer.floor.alarms import IvrGuard
from dialer.floor.feeds import SwitchFeeds
from dialer.floor.guard import BreakerGuard
from dialer.floor.view import (
    AgentState,
    HistoryPoint,
)
from dialer.lists import hopper
from dialer.lists.alertspec import is_alert_campaign
from dialer.lists.campaigns import (
    CampaignSpec,
    State,
    spec_of,
    within_ceilings,
)
from dialer.lists.compliance import local_time, window_rule
from dialer.lists.stats import abandon_rate
from dialer.outcomes import AttemptState, Outcome
from dialer.pacing.breaker import AbandonBreaker
from dialer.pacing.estimators import PacingEstimator, cold_start
from dialer.pacing.policies import Policy, policy_for_campaign
from dialer.pacing.types import AbandonCounts, CallInFlight, PacingInput
from dialer.pacing.types import AgentState as PAgent
from dialer.pacing.windows import AbandonTracker
from dialer.settings import Settings
from dialer.store import Store, workers
from dialer.store.models import Attempt, Campaign
from dialer.telephony.agents import OFF_FLOOR, Agent, AgentPool
from dialer.telephony.core import DialerCore, FinishedAttempt, OriginateStatus
from dialer.telephony.originate import OriginateRequest
from dialer.telephony.rows import AttemptRows, NotDialled
from dialer.telephony.tracker import Call
from ivr.messages import dialplan_messages

log = logging.getLogger(__name__)

#: Floor agent states -> pacing agent codes (logged-out agents are not in the input).
_PACING_AGENT = {
    AgentState.IDLE: PAgent.IDLE,
    AgentState.RINGING: PAgent.RINGING,
    AgentState.TALKING: PAgent.TALKING,
    AgentState.WRAPUP: PAgent.WRAPUP,
    AgentState.PAUSED: PAgent.PAUSED,
}
_ANSWERED_WAITING = frozenset({AttemptState.ANSWERED, AttemptState.QUEUED})
#: states a call reaches only as a live answer (past AMD, in the IVR or with the agents)
_BUSY_AGENT = frozenset({AgentState.TALKING, AgentState.WRAPUP, AgentState.RINGING})


class Clock(Protocol):
    """Epoch time for the runner, and waits measured on it."""

    def time(self) -> float: ...  # epoch seconds
    async def sleep(self, seconds: float) -> None: ...
    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Until ``event`` is set (True) or ``timeout`` clock seconds pass (False)."""
        ...


class Preempting(Protocol):
    """Work dialled ahead of every campaign (the alert desk): its own task, woken with the
    loop, never waiting behind a campaign's pass; the campaigns leave it ``reserved``
    channels."""

    @property
    def reserved(self) -> int: ...
    @property
    def pending(self) -> int: ...
    async def serve(self) -> None: ...
    def wake(self) -> None: ...


class Personal(Protocol):
    """Personal callbacks dialled agent-first, each pass before pacing decides."""

    @property
    def attempts(self) -> set[int]: ...
    async def serve(self, run: CampaignRun, now: float) -> None: ...


class WallClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await wait_real(event, timeout)


async def wait_real(event: asyncio.Event, timeout_s: float) -> bool:
    """Until ``event`` is set (True) or ``timeout_s`` real seconds pass (False). With
    ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for`` can swallow a
    cancellation that lands together with the event."""
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def _dt(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class RateLimiter:
    """``calls_per_second`` as a pacer: Originates leave at least ``1/rate`` seconds apart, so
    no second ever holds more than ``rate`` of them (no bursts)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = float("-inf")

    def reserve(self, now: float) -> float:
        """The clock time at which one more call may be sent (``now`` or later)."""
        at = max(now, self.next_at)
        self.next_at = at + self.interval
        return at


@dataclass
class CampaignRun:
    """What the runner keeps about one campaign while it runs."""

    id: int
    spec: CampaignSpec
    policy: Policy | None
    estimator: PacingEstimator
    limiter: RateLimiter
    #: live answers and abandons over the cap window (and the short window), for pacing
    abandon_counts: AbandonTracker = field(default_factory=lambda: AbandonTracker(None))
    pending: int = 0  # leased and being originated, not yet followed by the tracker
    effective_mode: str = ""
    hopper: dict[str, Any] = field(default_factory=lambda: {"eligible": 0, "reasons": {}})
    hopper_at: float = float("-inf")  # monotonic time of ``hopper``
    snapshot_cache: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None  # the last dialling error
    reload_error: str | None = None  # the last refused reload of this campaign's file
    #: stops dialling when answered customers are abandoned while agents look free
    breaker: AbandonBreaker = field(default_factory=AbandonBreaker)
    probes: set[int] = field(default_factory=set)  # attempts placed while it is half open
    events_late: bool = False  # paced progressively: the switch's events are read late

    @property
    def uses_agents(self) -> bool:
        """The dialer sends its answered calls to agents (every mode but broadcast/IVR)."""
        return bool(self.spec.queue) and not self.spec.flow

    def abandons(self, now: float) -> AbandonCounts:
        return self.abandon_counts.counts(now)


class Occupancy:
    """Agents' busy and logged-in time since the start, and a history point every so often."""

    def __init__(self, pool: AgentPool, every_s: float) -> None:
        self.pool = pool
        self.every_s = every_s
        self.history: list[HistoryPoint] = []
        self._busy = 0.0  # agent-seconds talking/ringing/wrap-up since start
        self._logged = 0.0
        self._mark: tuple[float, float, float] | None = None  # (at, busy, logged) at last point
        self._at: float | None = None
        self._queues: dict[str, list[float]] = {}  # queue -> [busy, logged] agent-seconds

    @property
    def value(self) -> float:
        """(talk + ringing + wrap-up) / logged-in time, since the start of this run."""
        return self._busy / self._logged if self._logged else 0.0

    def of_queue(self, queue: str) -> tuple[float, float]:
        """(busy, logged-in) agent-seconds of ``queue``'s members since the start of this run
        (an agent in two queues counts in both): a team's occupancy is busy / logged-in."""
        busy, logged = self._queues.get(queue, (0.0, 0.0))
        return busy, logged

    def account(self, now: float, point: Callable[[float, float], HistoryPoint]) -> None:
        """Count the time since the last call; ``point(now, occupancy)`` makes a history point
        when one is due (occupancy over the time since the previous point)."""
        if self._at is not None:
            dt_s = max(0.0, now - self._at)
            queues = self._queues
            for a in self.pool.agents.values():
                st = a.effective_state
                if st in OFF_FLOOR:
                    continue
                busy = st in _BUSY_AGENT
                self._logged += dt_s
                if busy:
                    self._busy += dt_s
                for q in a.queues:
                    acc = queues.setdefault(q, [0.0, 0.0])
                    acc[1] += dt_s
                    if busy:
                        acc[0] += dt_s
        self._at = now
        mark = self._mark
        if mark is None:
            self._mark = (now, self._busy, self._logged)
        elif now - mark[0] >= self.every_s:
            logged = self._logged - mark[2]
            self.history.append(point(now, (self._busy - mark[1]) / logged if logged > 0 else 0.0))
            del self.history[:-2000]
            self._mark = (now, self._busy, self._logged)


def build_pacing_input(
    run: CampaignRun,
    queue_agents: Iterable[Agent],
    calls: Iterable[Call],
    now: float,
    event_lag_s: float = 0.0,
) -> PacingInput:
    """What the campaign's policy sees now: its queue's agents and its calls in flight, and
    how late the switch's events that told them were read."""
    agents = []
    ringing_agents = 0
    for a in queue_agents:
        state = a.effective_state
        if state in OFF_FLOOR:
            continue
        if state is AgentState.RINGING:
            ringing_agents += 1
        agents.append((_PACING_AGENT[state], now - a.since))
    ages: list[tuple[float, bool]] = []
    other_live = 0
    for c in sorted(calls, key=lambda c: c.originated_at):
        if c.state in (AttemptState.DIALING, AttemptState.RINGING):
            ages.append((now - c.originated_at, False))
        elif not run.spec.flow and c.state in _ANSWERED_WAITING:
            # a live answer waiting for an agent; also a caller who left the queue unanswered
            # and hears the safe-harbour message: counted until the call ends, so progressive
            # does not dial past an agent that never answers before the breaker sees it
            ages.append((now - c.originated_at, True))
        elif c.state is not AttemptState.WITH_AGENT:
            other_live += 1  # in the IVR, or a machine being dropped: a channel, no agent
    # an agent ringing already has its caller: drop that many waiting callers (oldest first)
    waiting = [i for i, (_, answered) in enumerate(ages) if answered]
    drop = set(waiting[:ringing_agents])
    in_flight = [
        CallInFlight(age, answered) for i, (age, answered) in enumerate(ages) if i not in drop
    ]
    in_flight += [CallInFlight(0.0, False)] * run.pending
    return PacingInput.build(
        now=now,
        agents=agents,
        calls=in_flight,
        estimates=run.estimator.snapshot(now),
        settings=run.spec.pacing,
        abandons=run.abandons(now),
        other_live_calls=other_live,
        dialable=None,
        event_lag_s=event_lag_s,
    )


def set_mode(run: CampaignRun, policy: Policy, inp: PacingInput) -> None:
    """The mode ``policy`` paces ``inp`` in (the console's); the fall-back to progressive
    for late events is logged once as it starts and once as it ends (no alarm: the floor
    keeps dialling, only less far ahead)."""
    run.effective_mode = policy.mode(inp)
    late = policy.late(inp)
    if late == run.events_late:
        return
    run.events_late = late
    lag, limit = inp.event_lag_s, inp.settings.max_event_lag_s
    if late:
        log.warning(
            "campaign %s: the switch's events are read %.1f s late (over %.1f s): dialling "
            "progressively until they are on time",
            run.spec.name,
            lag,
            limit,
        )
    else:
        log.warning(
            "campaign %s: the switch's events are on time again (%.1f s late at most): %s "
            "pacing resumes",
            run.spec.name,
            lag,
            policy.name,
        )


#: how often (wall seconds) the hopper's explanation for the console is refreshed
HOPPER_VIEW_S = 30.0
#: how often (clock seconds) a running loop looks for attempts a crashed dialer never sent
SWEEP_EVERY_S = 30.0
UNSENT_AFTER = dt.timedelta(minutes=2)


def sweep_unsent(
    store: Store,
    now: dt.datetime,
    older_than: dt.timedelta = UNSENT_AFTER,
    *,
    dead_after: dt.timedelta | None = None,
    me: str | None = None,
) -> int:
    """End attempts a crashed dialer wrote but never sent (no ``channel_id``) as ``failed``.

    An Originate only leaves after its ``channel_id`` is committed, so such a row was never
    dialled; left open it would block its number in every campaign. Rows younger than
    ``older_than`` may belong to another worker that is about to send them, unless that worker
    (the row's owner, not ``me``) has not beaten for ``dead_after``: those are ended at once.
    """
    stale = Attempt.created_at < now - older_than
    with store.session() as s:
        if dead_after is not None:
            alive = sorted(workers.alive_ids(s, now, dead_after) | ({me} if me else set()))
            dead_owner = and_(Attempt.owner.is_not(None), Attempt.owner.not_in(alive))
            stale = or_(stale, dead_owner)
        ended = 0
        rows = s.scalars(
            select(Attempt).where(Attempt.outcome.is_(None), Attempt.channel_id.is_(None), stale)
        ).all()
        for attempt in rows:
            hopper.finish_attempt(
                s,
                attempt,
                Outcome.FAILED,
                now,
                hopper.AttemptFacts(
                    ended_at=now,
                    detail={
                        **(attempt.detail or {}),
                        "end_reason": "never sent: its dialer stopped",
                    },
                ),
            )
            ended += 1
    if ended:
        log.warning("ended %d attempt(s) a previous run wrote but never sent, as failed", ended)
    return ended


def _log_sweep_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("unsent-attempt sweep failed (tried again later): %s", task.exception())


def history_point(
    runs: Iterable[CampaignRun], pool: AgentPool, calls_in_flight: int, now: float, occ: float
) -> HistoryPoint:
    """One point of the floor's history: occupancy, the campaigns' abandon rate, and counts."""
    ab = [r.abandons(now) for r in runs]
    live = sum(a.window_live for a in ab)
    abandoned = sum(a.window_abandoned for a in ab)
    return HistoryPoint(
        at=_dt(now),
        occupancy=occ,
        abandon_rate=abandoned / live if live else 0.0,
        agents_logged_in=pool.logged_in(),
        calls_in_flight=calls_in_flight,
    )


class UnsentSweep:
    """The unsent-attempt sweep, in a thread every ``SWEEP_EVERY_S`` clock seconds, not only at
    start-up: a row a crashed dialer wrote moments before it died is ended once it is
    ``UNSENT_AFTER`` old, so no number stays blocked for the rest of the run."""

    def __init__(self, sweep: Callable[[], int]) -> None:
        self.sweep = sweep
        self.next_at = 0.0
        self.task: asyncio.Task[int] | None = None

    def if_due(self, now: float) -> asyncio.Task[int] | None:
        if now < self.next_at or (self.task and not self.task.done()):
            return None
        self.next_at = now + SWEEP_EVERY_S
        self.task = asyncio.create_task(asyncio.to_thread(self.sweep), name="unsent-sweep")
        self.task.add_done_callback(_log_sweep_failure)
        return self.task

    async def finish(self) -> None:
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


#: An attempt's Originate prepared with its row (or why it is not dialled); None: not yet.
Prepared = OriginateRequest | NotDialled | None


class Leased(NamedTuple):
    """A call ``lease_and_start`` started: its attempt, number, Originate (None when not
    prepared) and the contact's zone and region (the window is checked again at send time)."""

    attempt_id: int
    phone: str
    prepared: Prepared
    timezone: str | None
    region: str | None


def lease_and_start(
    store: Store,
    rows: AttemptRows,
    campaign_id: int,
    when: dt.datetime,
    n: int,
    daily_cap: int,
    prepare: bool = True,
) -> list[Leased]:
    """Take up to ``n`` contacts and write their attempt rows (``hopper.take``), and with
    ``prepare`` their Originates (``AttemptRows.prepare_started``: the switch's fence first),
    all in one transaction, committed before any of them is sent."""
    with store.session() as s:
        if prepare and (served := rows.fenced(s)) is not None:
            log.debug("switch %s is served by worker %s: nothing dialled", rows.server, served)
            return []
        row = s.get(Campaign, campaign_id)
        if row is None:
            return []
        started = hopper.take(
            s, row, when, n, rows.owner, daily_cap=daily_cap, ceilings=rows.ceilings
        )
        reqs: Sequence[Prepared] = (
            rows.prepare_started(s, row, started) if prepare else [None] * len(started)
        )
    return [
        Leased(st.attempt_id, st.phone, req, st.timezone, st.region)
        for st, req in zip(started, reqs, strict=True)
    ]


def explain_hopper(
    store: Store, campaign_id: int, now: dt.datetime, daily_cap: int
) -> dict[str, Any]:
    """Why the campaign's contacts are (not) dialable now, for its snapshot."""
    with store.session() as s:
        row = s.get(Campaign, campaign_id)
        if row is None:
            return {"eligible": 0, "reasons": {}}
        return hopper.explain(s, row, now, daily_cap=daily_cap).to_json()


class CampaignLoop:
    """Dials every running campaign: one pass over the campaigns per tick (or sooner when an
    event wakes it), each asking its policy, leasing and spawning Originates."""

    def __init__(
        self,
        store: Store,
        core: DialerCore,
        settings: Settings,
        *,
        clock: Clock | None = None,
        owner: str = "dialer",
        tick_s: float = 0.5,
        campaigns: Sequence[str] | None = None,
        max_channels: int = 500,
        history_every_s: float = 30.0,
    ) -> None:
        self.store = store
        self.core = core
        self.settings = settings
        core.rows.messages = dialplan_messages(settings.bank)  # the bank's name and number
        core.rows.ceilings = settings.compliance  # the hold limit each Originate carries
        self.clock: Clock = clock or WallClock()
        self.owner = owner
        self.tick_s = tick_s
        self.only = set(campaigns) if campaigns else None
        self.max_channels = max_channels
        self.pool = AgentPool()
        self.occupancy = Occupancy(self.pool, history_every_s)
        self.runs: dict[int, CampaignRun] = {}
        self.attempt_campaign: dict[int, int] = {}
        self.attempt_phone: dict[int, str] = {}
        #: Originates prepared with their rows (``lease``), until ``spawn`` sends them
        self._prepared: dict[int, OriginateRequest | NotDialled] = {}
        #: the contacts' (zone, region) of leased calls, until sent: the window's last check
        self._zones: dict[int, tuple[str, str | None]] = {}
        #: the Originate tasks in flight (a reference is kept until each ends)
        self.tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.sweeper = UnsentSweep(self.sweep_unsent)
        self._last_activity = 0.0
        self._stop = asyncio.Event()
        self.on_outcome: list[Callable[[str, FinishedAttempt], None]] = []
        self.metrics: Any = None  # dialer.floor.console.DialerMetrics, when the console runs
        #: observers of every pacing decision: (campaign run, input, calls to place)
        self.on_decision: list[Callable[[CampaignRun, PacingInput, int], None]] = []
        self.guard = BreakerGuard(store, self.pool, owner)
        self.first: Preempting | None = None  # the alert desk, when alerts are configured
        #: personal callbacks dialled agent-first (``dialer.floor.personal``), when wired
        self.personal: Personal | None = None
        self.ivr_guard = IvrGuard(store, owner)
        self._held: dict[int, tuple[dt.datetime, str] | None] = {}  # breakers open in the store
        #: the queues the switch listed at its last login (QueueStatus), None before one
        self.queues_seen: set[str] | None = None
        self.feeds = SwitchFeeds(self)
        core.subscribe(self.feeds.on_ami_event)
        core.on_queue_status(self.feeds.on_queue_status)
        core.on_finished(self.feeds.on_finished)
        core.on_transition(self.feeds.on_transition)

    def now(self) -> dt.datetime:
        return _dt(self.clock.time())

    def _point(self, now: float, occ: float) -> HistoryPoint:
        return history_point(self.runs.values(), self.pool, self.core.live_calls(), now, occ)

    def wake(self) -> None:
        self._wake.set()
        if self.first is not None:
            self.first.wake()

    def run_named(self, name: str) -> CampaignRun:
        for run in self.runs.values():
            if run.spec.name == name:
                return run
        raise ConfigError(f"no running campaign named {name!r}")

    def switch_queues(self) -> set[str] | None:
        """The queues the switch knows, while it is connected (None: not checked)."""
        if self.queues_seen is None or not self.core.client.ready.is_set():
            return None
        return self.queues_seen

    def sweep_unsent(self, older_than: dt.timedelta = UNSENT_AFTER) -> int:
        dead_after = dt.timedelta(seconds=self.settings.worker.dead_after_s)
        return sweep_unsent(
            self.store, self.now(), older_than, dead_after=dead_after, me=self.owner
        )

    async def load_campaigns(self) -> None:
        rows = await asyncio.to_thread(self._load_rows)
        for cid, spec, live, abandoned in rows:
            run = self.runs.get(cid)
            if run is None:
                prior = cold_start(spec.pacing)
                run = CampaignRun(
                    id=cid,
                    spec=spec,
                    policy=policy_for_campaign(spec),
                    estimator=PacingEstimator(prior),
                    limiter=RateLimiter(spec.pacing.calls_per_second),
                    abandon_counts=AbandonTracker(spec.pacing.abandon_window.total_seconds()),
                )
                # what the store holds for the cap window before this run (never expires here)
                run.abandon_counts.rebase(live, abandoned)
                self.guard.restore(run, self.clock.time(), self._held.get(cid))
                self.runs[cid] = run
            else:
                self.respec(run, spec)
        self.pool.wrapup_s = {
            r.spec.queue: r.spec.pacing.wrapup_s for r in self.runs.values() if r.spec.queue
        }

    def _load_rows(self) -> list[tuple[int, CampaignSpec, int, int]]:
        out = []
        now = self.now()
        with self.store.session() as s:
            for row in s.scalars(select(Campaign).order_by(Campaign.id)):
                if self.only is not None and row.name not in self.only:
                    continue
                if is_alert_campaign(row.name):
                    continue  # the alert desk dials those, under the alerts' own rules
                spec = within_ceilings(spec_of(row), self.settings.compliance)
                rate = abandon_rate(s, row.id, since=now - spec.pacing.abandon_window)
                out.append((row.id, spec, rate.live_answers, rate.abandoned))
                self._held[row.id] = hopper.breaker_hold(s, row.id)
        return out

    def respec(self, run: CampaignRun, spec: CampaignSpec) -> None:
        spec = within_ceilings(spec, self.settings.compliance)
        if spec.mode != run.spec.mode:
            run.policy = policy_for_campaign(spec)
        if spec.pacing.calls_per_second != run.spec.pacing.calls_per_second:
            run.limiter = RateLimiter(spec.pacing.calls_per_second)
        run.spec = spec
        if spec.queue:
            self.pool.wrapup_s[spec.queue] = spec.pacing.wrapup_s

    async def run(self, *, until_idle: bool = False, quiet_s: float = 120.0) -> None:
        """Dial until stopped. With ``until_idle``, return once nothing has been in flight and
        nothing dialled for ``quiet_s`` clock seconds (every campaign done, or waiting for
        retry times, windows or agents); never while the switch is out of reach."""
        await self.load_campaigns()
        await asyncio.to_thread(self.sweep_unsent)
        self.sweeper.next_at = self.clock.time() + SWEEP_EVERY_S
        await self.core.wait_ready()
        self._last_activity = self.clock.time()
        first = asyncio.create_task(self.first.serve(), name="alerts") if self.first else None
        try:
            await self._loop(until_idle, quiet_s)
        finally:
            if first is not None:
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
            await self.sweeper.finish()

    async def _loop(self, until_idle: bool, quiet_s: float) -> None:
        while not self._stop.is_set():
            now = self.clock.time()
            self.sweeper.if_due(now)
            self.occupancy.account(now, self._point)
            self.pool.tick(now)
            for run in list(self.runs.values()):
                try:
                    await self._tick(run, now)
                except DialerError as exc:
                    run.last_error = str(exc)
                    log.warning("campaign %s: %s", run.spec.name, exc)
            first = self.first.pending if self.first is not None else 0
            busy = self.core.live_calls() or first or any(r.pending for r in self.runs.values())
            if busy or not self.core.ready:  # a switch out of reach is not a finished campaign
                self._last_activity = now
            elif until_idle and now - self._last_activity >= quiet_s:
                break
            self._wake.clear()
            await self.clock.wait(self._wake, self.tick_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def calls_of(self, cid: int) -> list[Call]:
        return [
            c
            for c in self.core.tracker.calls.values()
            if self.attempt_campaign.get(c.attempt_id) == cid
        ]

    def pacing_input(self, run: CampaignRun, now: float) -> PacingInput:
        queue = self.pool.in_queue(run.spec.queue) if run.spec.queue else []
        calls = self.calls_of(run.id)
        if self.personal is not None and self.personal.attempts:
            # a personal callback's call needs no agent from the queue: its agent is held
            # (and counted busy) for it
            mine = self.personal.attempts
            calls = [c for c in calls if c.attempt_id not in mine]
        return build_pacing_input(run, queue, calls, now, self.core.lag.lag_s(now))

    def decide(self, run: CampaignRun, now: float) -> int:
        spec = run.spec
        if spec.state is not State.RUNNING or run.policy is None:
            run.effective_mode = spec.mode.value if spec.state is State.RUNNING else "paused"
            return 0
        inp = self.pacing_input(run, now)
        # Each policy guards the abandon cap itself (power falls back to progressive, the
        # predictive policy has its feedback, brake and cap guard), exactly as in the rehearsal.
        set_mode(run, run.policy, inp)
        n = self.guard.limit(run, run.policy.decide(inp))
        room = (
            self.max_channels
            - self.core.live_calls()
            - sum(r.pending for r in self.runs.values())
            - (self.first.reserved if self.first is not None else 0)
        )
        n = max(0, min(n, room))
        for cb in self.on_decision:
            cb(run, inp, n)
        return n

    async def _tick(self, run: CampaignRun, now: float) -> None:
        if not self.core.ready:
            return
        await self.refresh_hopper(run)
        if self.personal is not None:
            await self.personal.serve(run, now)  # its agents are held before pacing looks
        n = self.decide(run, now)  # 0 for preview: agents ask through preview_next
        if n:
            self.spawn(run, await self.lease(run, now, n))

    async def lease(
        self, run: CampaignRun, now: float, n: int, *, prepare: bool = True
    ) -> list[int]:
        """Lease ``n`` contacts and write their attempt rows (and Originates, for ``spawn``):
        pending (in flight for pacing) from now until the tracker follows them."""
        run.pending += n
        try:
            # on the core's database thread: one writer, no lock waits between our threads
            cap = self.settings.max_calls_per_number_per_day
            args = (self.store, self.core.rows, run.id, _dt(now), n, cap, prepare)
            got = await self.core.in_db(lease_and_start, *args)
        except Exception:
            run.pending -= n
            raise
        run.pending -= n - len(got)
        self.attempt_phone.update((x.attempt_id, x.phone) for x in got)
        self._prepared.update((x.attempt_id, x.prepared) for x in got if x.prepared is not None)
        self._zones.update((x.attempt_id, (x.timezone, x.region)) for x in got if x.timezone)
        return [x.attempt_id for x in got]

    def spawn(self, run: CampaignRun, attempt_ids: list[int]) -> None:
        self.guard.placed(run, attempt_ids)
        for attempt_id in attempt_ids:
            self.attempt_campaign[attempt_id] = run.id
            task = asyncio.create_task(
                originate_one(
                    self,
                    run,
                    attempt_id,
                    self._prepared.pop(attempt_id, None),
                    self._zones.pop(attempt_id, None),
                ),
                name=f"originate-{attempt_id}",
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def refresh_hopper(self, run: CampaignRun, *, force: bool = False) -> None:
        """The hopper's explanation people read on the console, at most every
        ``HOPPER_VIEW_S`` of wall time (on a simulated clock, not once per simulated 30 s)."""
        now = time.monotonic()
        if not force and now - run.hopper_at < HOPPER_VIEW_S:
            return
        run.hopper_at = now
        run.hopper = await asyncio.to_thread(
            explain_hopper,
            self.store,
            run.id,
            self.now(),
            self.settings.max_calls_per_number_per_day,
        )

    # -- feeds -------------------------------------------------------------------------------


__all__ = [
    "CampaignLoop",
    "CampaignRun",
    "Clock",
    "Occupancy",
    "RateLimiter",
    "WallClock",
    "build_pacing_input",
    "sweep_unsent",
    "wait_real",
]


async def originate_one(
    loop: CampaignLoop,
    run: CampaignRun,
    attempt_id: int,
    prepared: Prepared,
    zone: tuple[str, str | None] | None,
) -> None:
    """One call of a campaign through the core: its pace, then the calendar's last check
    (``zone``: the contact's, when leased here), then its Originate."""
    pending = [True]  # counted in ``run.pending`` until the tracker follows the call

    async def pace() -> None:
        slot = run.limiter.reserve(loop.clock.time())
        while (wait := slot - loop.clock.time()) > 0:
            await loop.clock.sleep(wait)

    def followed() -> None:
        # pacing counts the call in the tracker from now on, not twice while Asterisk
        # answers the Originate
        pending[0] = False
        run.pending -= 1

    def in_window() -> str | None:
        # leased inside its window, a call may wait for its pace or the switch past the
        # window's end: the calendar's rules are checked again as it leaves
        if zone is None:
            return None
        local = local_time(_dt(loop.clock.time()), zone[0])
        broken = window_rule(run.spec.calling_window, zone[1], local)
        return None if broken is None else f"not dialled: {broken.value} when it was to leave"

    try:
        status = await loop.core.originate(
            attempt_id,
            before_send=pace,
            on_followed=followed,
            prepared=prepared,
            may_send=in_window,
        )
        if loop.metrics is not None and status is not OriginateStatus.REJECTED:
            loop.metrics.count_dial(run.spec.name)
        if status is OriginateStatus.REJECTED:
            log.info("attempt %s: Originate rejected", attempt_id)
    except DialerError as exc:
        run.last_error = str(exc)
        log.warning("attempt %s: %s", attempt_id, exc)
    finally:
        if pending[0]:
            run.pending -= 1
