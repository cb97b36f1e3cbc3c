"""Campaigns on the floor: one task per running campaign, the agent pool, and the ``Floor``.

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
- Time comes from an injected ``Clock`` (wall time live; a scaled clock in the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select

from dialer.errors import ComplianceError, ConfigError, DialerError
from dialer.floor.view import (
    AgentSnapshot,
    AgentState,
    CallSnapshot,
    CampaignSnapshot,
    HistoryPoint,
    RateWindow,
)
from dialer.lists import hopper
from dialer.lists.campaigns import (
    CampaignSpec,
    Mode,
    Pacing,
    State,
    apply_campaign,
    load_campaign_file,
    parse_campaign,
    spec_of,
)
from dialer.lists.stats import abandon_rate, abandon_rates, outcome_counts
from dialer.outcomes import AttemptState, Outcome
from dialer.pacing.estimators import PacingEstimator, cold_start
from dialer.pacing.policies import Policy, policy_for_campaign
from dialer.pacing.types import AbandonCounts, CallInFlight, PacingInput
from dialer.pacing.types import AgentState as PAgent
from dialer.pacing.windows import AbandonTracker
from dialer.privacy import mask_phone
from dialer.settings import Settings, load_settings
from dialer.store import Store
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact
from dialer.telephony.agents import AgentPool
from dialer.telephony.ami.messages import Event
from dialer.telephony.core import DialerCore, FinishedAttempt, OriginateStatus

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
_BUSY_AGENT = frozenset({AgentState.TALKING, AgentState.WRAPUP, AgentState.RINGING})


class Clock(Protocol):
    """Epoch time for the runner; ``speed`` clock seconds pass per real second."""

    speed: float

    def time(self) -> float: ...  # epoch seconds
    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    speed = 1.0

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


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
    hopper_at: float = float("-inf")
    snapshot_cache: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None  # the last dialling error
    reload_error: str | None = None  # the last refused reload of this campaign's file

    def abandons(self, now: float) -> AbandonCounts:
        return self.abandon_counts.counts(now)


class Dialer:
    """The service behind ``dialer run`` and ``dialer demo``; implements ``dialer.floor.view.Floor``."""

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
        self.clock: Clock = clock or WallClock()
        self.owner = owner
        self.tick_s = tick_s
        self.only = set(campaigns) if campaigns else None
        self.max_channels = max_channels
        self.history_every_s = history_every_s
        self.pool = AgentPool()
        self.runs: dict[int, CampaignRun] = {}
        self.attempt_campaign: dict[int, int] = {}
        self.attempt_phone: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._last_activity = 0.0
        self._stop = asyncio.Event()
        self._history: list[HistoryPoint] = []
        self._occ_busy = 0.0  # agent-seconds talking/ringing/wrap-up since start
        self._occ_logged = 0.0
        self._occ_mark: tuple[float, float, float] | None = None  # (at, busy, logged) at last point
        self._occ_at: float | None = None
        self.on_outcome: list[Callable[[str, FinishedAttempt], None]] = []
        self.metrics: Any = None  # dialer.floor.console.DialerMetrics, when the console runs
        #: observers of every pacing decision: (campaign run, input, calls to place)
        self.on_decision: list[Callable[[CampaignRun, PacingInput, int], None]] = []
        core.subscribe(self._on_ami_event)
        core.on_queue_status(self._on_queue_status)
        core.on_finished(self._on_finished)

    # -- lifecycle ---------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return _dt(self.clock.time())

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
                self.runs[cid] = run
            else:
                self._respec(run, spec)
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
                spec = spec_of(row)
                rate = abandon_rate(s, row.id, since=now - spec.pacing.abandon_window)
                out.append((row.id, spec, rate.live_answers, rate.abandoned))
        return out

    def sweep_unsent(self, older_than: dt.timedelta = dt.timedelta(minutes=2)) -> int:
        """End attempts a crashed dialer wrote but never sent (no ``channel_id``) as ``failed``.

        An Originate only leaves after its ``channel_id`` is committed, so such a row was never
        dialled; left open it would block its number in every campaign. Rows younger than
        ``older_than`` may belong to another worker that is about to send them.
        """
        now = self.now()
        ended = 0
        with self.store.session() as s:
            rows = s.scalars(
                select(Attempt).where(
                    Attempt.outcome.is_(None),
                    Attempt.channel_id.is_(None),
                    Attempt.created_at < now - older_than,
                )
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
                            "end_reason": "never sent: dialer restarted",
                        },
                    ),
                )
                ended += 1
        if ended:
            log.warning("ended %d attempt(s) a previous run wrote but never sent, as failed", ended)
        return ended

    def _respec(self, run: CampaignRun, spec: CampaignSpec) -> None:
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
        retry times, windows or agents)."""
        await self.load_campaigns()
        await asyncio.to_thread(self.sweep_unsent)
        await self.core.wait_ready()
        self._last_activity = self.clock.time()
        while not self._stop.is_set():
            now = self.clock.time()
            self._account(now)
            self.pool.tick(now)
            for run in list(self.runs.values()):
                try:
                    await self._tick(run, now)
                except DialerError as exc:
                    run.last_error = str(exc)
                    log.warning("campaign %s: %s", run.spec.name, exc)
            if self.core.live_calls() or any(r.pending for r in self.runs.values()):
                self._last_activity = now
            elif until_idle and now - self._last_activity >= quiet_s:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s / self.clock.speed)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- deciding and dialling ---------------------------------------------------------------

    def calls_of(self, cid: int) -> list[Any]:
        return [
            c
            for c in self.core.tracker.calls.values()
            if self.attempt_campaign.get(c.attempt_id) == cid
        ]

    def pacing_input(self, run: CampaignRun, now: float) -> PacingInput:
        agents = []
        ringing_agents = 0
        for a in self.pool.in_queue(run.spec.queue) if run.spec.queue else []:
            state = a.effective_state
            if state is AgentState.LOGGED_OUT:
                continue
            if state is AgentState.RINGING:
                ringing_agents += 1
            agents.append((_PACING_AGENT[state], now - a.since))
        calls = sorted(self.calls_of(run.id), key=lambda c: c.originated_at)
        ages: list[tuple[float, bool]] = []
        other_live = 0
        for c in calls:
            if c.state in (AttemptState.DIALING, AttemptState.RINGING):
                ages.append((now - c.originated_at, False))
            elif not run.spec.flow and c.state in _ANSWERED_WAITING:
                ages.append((now - c.originated_at, True))  # live answer waiting for an agent
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
        )

    def decide(self, run: CampaignRun, now: float) -> int:
        spec = run.spec
        if spec.state is not State.RUNNING or run.policy is None:
            run.effective_mode = spec.mode.value if spec.state is State.RUNNING else "paused"
            return 0
        inp = self.pacing_input(run, now)
        # Each policy guards the abandon cap itself (power falls back to progressive, the
        # predictive policy has its feedback, brake and cap guard), exactly as in the rehearsal.
        run.effective_mode = run.policy.mode(inp)
        n = run.policy.decide(inp)
        room = (
            self.max_channels - self.core.live_calls() - sum(r.pending for r in self.runs.values())
        )
        n = max(0, min(n, room))
        for cb in self.on_decision:
            cb(run, inp, n)
        return n

    async def _tick(self, run: CampaignRun, now: float) -> None:
        if not self.core.ready:
            return
        await self._refresh_hopper(run)
        n = self.decide(run, now)  # 0 for preview: agents ask through preview_next
        if n:
            self._spawn(run, await self._lease(run, now, n))

    async def _lease(self, run: CampaignRun, now: float, n: int) -> list[int]:
        """Lease ``n`` contacts and write their attempt rows; they count as pending (in flight
        for pacing) from now until the tracker follows them."""
        run.pending += n
        try:
            ids = await asyncio.to_thread(self._lease_and_start, run, now, n)
        except Exception:
            run.pending -= n
            raise
        run.pending -= n - len(ids)
        return ids

    def _spawn(self, run: CampaignRun, attempt_ids: list[int]) -> None:
        for attempt_id in attempt_ids:
            self.attempt_campaign[attempt_id] = run.id
            asyncio.create_task(self._originate(run, attempt_id), name=f"originate-{attempt_id}")

    def _lease_and_start(self, run: CampaignRun, now: float, n: int) -> list[int]:
        when = _dt(now)
        ids: list[int] = []
        phones: dict[int, str] = {}
        with self.store.session() as s:
            row = s.get(Campaign, run.id)
            if row is None:
                return []
            contacts = hopper.lease(
                s, row, when, n, self.owner, daily_cap=self.settings.max_calls_per_number_per_day
            )
            for contact in contacts:
                try:
                    attempt = hopper.start_attempt(
                        s, contact, row, when, daily_cap=self.settings.max_calls_per_number_per_day
                    )
                except ComplianceError as exc:  # changed between lease and start: skip it
                    log.info("campaign %s: %s", row.name, exc)
                    continue
                s.flush()
                ids.append(attempt.id)
                phones[attempt.id] = attempt.phone
            hopper.release(s, [c for c in contacts if c.lease_owner == self.owner])
        self.attempt_phone.update(phones)
        return ids

    async def _originate(self, run: CampaignRun, attempt_id: int) -> None:
        async def pace() -> None:
            slot = run.limiter.reserve(self.clock.time())
            while (wait := slot - self.clock.time()) > 0:
                await self.clock.sleep(wait)

        try:
            status = await self.core.originate(attempt_id, before_send=pace)
            if self.metrics is not None and status is not OriginateStatus.REJECTED:
                self.metrics.count_dial(run.spec.name)
            if status is OriginateStatus.REJECTED:
                log.info("attempt %s: Originate rejected", attempt_id)
        except DialerError as exc:
            run.last_error = str(exc)
            log.warning("attempt %s: %s", attempt_id, exc)
        finally:
            run.pending -= 1

    async def _refresh_hopper(self, run: CampaignRun, *, force: bool = False) -> None:
        now = self.clock.time()
        if not force and now - run.hopper_at < 30.0:
            return
        run.hopper_at = now
        run.hopper = await asyncio.to_thread(self._explain, run.id)

    def _explain(self, cid: int) -> dict[str, Any]:
        with self.store.session() as s:
            row = s.get(Campaign, cid)
            if row is None:
                return {"eligible": 0, "reasons": {}}
            return hopper.explain(
                s, row, self.now(), daily_cap=self.settings.max_calls_per_number_per_day
            ).to_json()

    # -- feeds -------------------------------------------------------------------------------

    def _on_ami_event(self, event: Event) -> None:
        name = event.name
        if name.startswith(("Agent", "QueueMember")):
            fields = event.headers
            self.pool.on_event(name, fields, self.clock.time())
            if name in ("AgentComplete", "AgentConnect"):
                queue = fields.get("Queue")
                with contextlib.suppress(ValueError):
                    if name == "AgentComplete":
                        talk = float(fields.get("TalkTime") or 0)
                    else:  # RingTime: whole seconds the agent took to pick up
                        ring = float(fields.get("RingTime") or 0)
                    for run in self.runs.values():
                        if run.spec.queue == queue:
                            if name == "AgentComplete":
                                run.estimator.observe_talk(talk)
                            else:
                                run.estimator.observe_agent_answer(ring)
            self._wake.set()

    def _on_queue_status(self, events: Sequence[Event]) -> None:
        members = [e.headers for e in events if e.name == "QueueMember"]
        self.pool.load_status(members, self.clock.time())
        self._wake.set()

    def _on_finished(self, item: FinishedAttempt) -> None:
        cid = self.attempt_campaign.pop(item.attempt_id, None)
        self.attempt_phone.pop(item.attempt_id, None)
        run = self.runs.get(cid) if cid is not None else None
        if run is None:
            return
        f = item.facts
        live = f.live_answer
        abandoned = item.outcome is Outcome.ABANDONED
        if live:
            run.abandon_counts.live_answer(f.ended_at)
        if abandoned:
            run.abandon_counts.abandon(f.ended_at)
        ring_end = f.answered_at if f.answered_at is not None else f.ended_at
        if item.outcome not in (Outcome.INTERRUPTED, Outcome.UNKNOWN, Outcome.FAILED):
            run.estimator.observe_ring(
                f.ended_at,
                ring_end - f.originated_at,
                live=live,
                machine=item.outcome is Outcome.MACHINE,
            )
        for cb in self.on_outcome:
            cb(run.spec.name, item)
        self._wake.set()

    # -- occupancy ---------------------------------------------------------------------------

    def _account(self, now: float) -> None:
        if self._occ_at is not None:
            dt_s = max(0.0, now - self._occ_at)
            for a in self.pool.agents.values():
                st = a.effective_state
                if st is AgentState.LOGGED_OUT:
                    continue
                self._occ_logged += dt_s
                if st in _BUSY_AGENT:
                    self._occ_busy += dt_s
        self._occ_at = now
        mark = self._occ_mark
        if mark is None:
            self._occ_mark = (now, self._occ_busy, self._occ_logged)
        elif now - mark[0] >= self.history_every_s:
            logged = self._occ_logged - mark[2]
            occ = (self._occ_busy - mark[1]) / logged if logged > 0 else 0.0
            ab = [r.abandons(now) for r in self.runs.values()]
            live = sum(a.window_live for a in ab)
            abandoned = sum(a.window_abandoned for a in ab)
            self._history.append(
                HistoryPoint(
                    at=_dt(now),
                    occupancy=occ,
                    abandon_rate=abandoned / live if live else 0.0,
                    agents_logged_in=self.pool.logged_in(),
                    calls_in_flight=self.core.live_calls(),
                )
            )
            del self._history[:-2000]
            self._occ_mark = (now, self._occ_busy, self._occ_logged)

    @property
    def occupancy(self) -> float:
        """(talk + ringing + wrap-up) / logged-in time, since the start of this run."""
        return self._occ_busy / self._occ_logged if self._occ_logged else 0.0

    # -- Floor -------------------------------------------------------------------------------

    def campaigns(self) -> list[CampaignSnapshot]:
        now = self.clock.time()
        out = []
        for run in self.runs.values():
            cache = run.snapshot_cache
            if now - cache.get("at", float("-inf")) >= 5.0:
                cache.update(self._db_snapshot(run))
                cache["at"] = now
            queue = run.spec.queue
            available = self.pool.count(AgentState.IDLE, queue) if queue else 0
            logged = self.pool.logged_in(queue) if queue else 0
            in_flight = len(self.calls_of(run.id)) + run.pending
            est = run.estimator.answer_prob(now)[0]
            out.append(
                CampaignSnapshot(
                    name=run.spec.name,
                    state=run.spec.state.value,
                    mode=run.spec.mode.value,
                    effective_mode=run.effective_mode or run.spec.mode.value,
                    purpose=run.spec.purpose.value,
                    contacts=cache["contacts"],
                    contacts_done=cache["done"],
                    attempts=cache["attempts"],
                    calls_in_flight=in_flight,
                    dial_level=in_flight / available if available else float(in_flight),
                    lines_per_agent=in_flight / logged if logged else 0.0,
                    answer_rate=est,
                    abandon=cache["abandon"],
                    abandon_cap=run.spec.pacing.abandon_cap,
                    hopper_eligible=int(run.hopper.get("eligible", 0)),
                    hopper_reasons=dict(run.hopper.get("reasons", {})),
                    pacing=run.spec.to_document()["pacing"],
                    outcomes=cache["outcomes"],
                    last_error=run.reload_error or run.last_error,
                )
            )
        return out

    def _db_snapshot(self, run: CampaignRun) -> dict[str, Any]:
        now = self.now()
        with self.store.session() as s:
            contacts = (
                s.scalar(
                    select(func.count()).select_from(Contact).where(Contact.campaign_id == run.id)
                )
                or 0
            )
            done = (
                s.scalar(
                    select(func.count())
                    .select_from(Contact)
                    .where(Contact.campaign_id == run.id, Contact.status == "done")
                )
                or 0
            )
            attempts = (
                s.scalar(
                    select(func.count()).select_from(Attempt).where(Attempt.campaign_id == run.id)
                )
                or 0
            )
            rates = abandon_rates(s, run.id, now, cap_window=run.spec.pacing.abandon_window)
            outcomes = outcome_counts(s, run.id)
        return {
            "contacts": int(contacts),
            "done": int(done),
            "attempts": int(attempts),
            "abandon": {
                k: RateWindow(v.live_answers, v.abandoned, v.rate) for k, v in rates.items()
            },
            "outcomes": outcomes,
        }

    def agents(self) -> list[AgentSnapshot]:
        return [
            AgentSnapshot(
                name=a.name,
                queues=tuple(sorted(a.queues)),
                state=a.effective_state,
                since=_dt(a.since),
                calls_handled=a.calls_handled,
                pause_reason=a.pause_reason,
            )
            for a in sorted(self.pool.agents.values(), key=lambda a: a.name)
        ]

    def calls(self) -> list[CallSnapshot]:
        names = {r.id: r.spec.name for r in self.runs.values()}
        phones = self.attempt_phone
        out = []
        for c in self.core.tracker.calls.values():
            cid = self.attempt_campaign.get(c.attempt_id)
            out.append(
                CallSnapshot(
                    attempt_id=c.attempt_id,
                    campaign=names.get(cid, "") if cid is not None else "",
                    state=c.state.value,
                    since=_dt(c.last_event_at or c.originated_at),
                    phone_masked=mask_phone(phones[c.attempt_id]) if c.attempt_id in phones else "",
                    agent=c.agent,
                )
            )
        return out

    def history(self) -> list[HistoryPoint]:
        return list(self._history)

    def _run_named(self, name: str) -> CampaignRun:
        for run in self.runs.values():
            if run.spec.name == name:
                return run
        raise ConfigError(f"no running campaign named {name!r}")

    async def _set_state(self, name: str, state: State, actor: str) -> None:
        run = self._run_named(name)

        def write() -> CampaignSpec:
            with self.store.session() as s:
                row = s.get(Campaign, run.id)
                assert row is not None
                row.state = state.value
                s.add(
                    AuditEntry(
                        actor=actor,
                        action=f"campaign.{'pause' if state is State.PAUSED else 'resume'}",
                        campaign_id=row.id,
                        detail={},
                    )
                )
                return spec_of(row)

        self._respec(run, await asyncio.to_thread(write))
        self._wake.set()

    async def pause(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, State.PAUSED, actor)

    async def resume(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, State.RUNNING, actor)

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        run = self._run_named(campaign)
        if not isinstance(changes, Mapping) or not changes:
            raise ConfigError("pacing changes must be a non-empty mapping of pacing keys")
        doc = run.spec.to_document()
        unknown = set(changes) - set(Pacing.model_fields)
        if unknown:
            raise ConfigError(f"unknown pacing keys: {', '.join(sorted(unknown))}", key="pacing")
        doc["pacing"] = {**doc["pacing"], **changes}
        new = parse_campaign(doc, f"campaign {campaign}")  # ConfigError: nothing changes

        def write() -> None:
            with self.store.session() as s:
                row = s.get(Campaign, run.id)
                assert row is not None
                before = row.spec.get("pacing", {})
                row.spec = {**new.to_document(), "state": row.state}
                s.add(
                    AuditEntry(
                        actor=actor,
                        action="campaign.pacing",
                        campaign_id=row.id,
                        detail={
                            "before": before,
                            "after": new.to_document()["pacing"],
                            "changes": dict(changes),
                        },
                    )
                )

        await asyncio.to_thread(write)
        self._respec(run, new.model_copy(update={"state": run.spec.state}))
        self._wake.set()
        return new.to_document()["pacing"]

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        run = self._run_named(campaign)
        if run.spec.mode is not Mode.PREVIEW:
            raise ConfigError(f"campaign {campaign} is not in preview mode")
        ids = await self._lease(run, self.clock.time(), 1)
        if not ids:
            return None
        view = await asyncio.to_thread(self._preview_view, ids[0], agent, actor)
        self._spawn(run, ids)  # after the view's write: the core then owns the row
        return view

    def _preview_view(self, attempt_id: int, agent: str, actor: str) -> dict[str, Any]:
        with self.store.session() as s:
            attempt = s.get(Attempt, attempt_id)
            assert attempt is not None
            attempt.agent = agent
            attempt.detail = {**(attempt.detail or {}), "preview_by": actor}
            contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
            return {
                "attempt_id": attempt_id,
                "phone": mask_phone(attempt.phone),
                "name": contact.name if contact else None,
                "language": contact.language if contact else None,
            }

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        """Re-apply campaign files (one, or every campaign's recorded source), or swap the
        settings when ``path`` is the settings file. Invalid input changes nothing."""
        from pathlib import Path

        if path is not None and self.settings.source is not None:
            if Path(path).resolve() == Path(self.settings.source).resolve():
                new = await asyncio.to_thread(load_settings, Path(path))
                changed = ["settings"] if new != self.settings else []
                self.settings = new
                return changed

        def work() -> tuple[list[str], dict[str, str]]:
            """Returns (campaigns changed, campaign name -> refusal). All files valid, or none
            is applied."""
            with self.store.session() as s:
                rows = list(s.scalars(select(Campaign)))
            by_source = {str(Path(r.source).resolve()): r.name for r in rows if r.source}
            sources = (
                [Path(path)]
                if path
                else [Path(r.source) for r in rows if r.source and Path(r.source).exists()]
            )
            specs, refused = [], {}
            for p in sources:
                try:
                    specs.append((p, load_campaign_file(p)))
                except ConfigError as exc:
                    refused[by_source.get(str(p.resolve()), str(p))] = str(exc)
            if refused:
                return [], refused
            changed = []
            with self.store.session() as s:
                for p, spec in specs:
                    row = s.scalars(
                        select(Campaign).where(Campaign.name == spec.name)
                    ).one_or_none()
                    before = None if row is None else (row.spec, row.state)
                    row, _ = apply_campaign(s, spec, source=str(p.resolve()), actor=actor)
                    if before != (row.spec, row.state):
                        changed.append(spec.name)
            return changed, {}

        changed, refused = await asyncio.to_thread(work)
        if refused:
            for run in self.runs.values():
                if run.spec.name in refused:
                    run.reload_error = f"reload refused: {refused[run.spec.name]}"
            raise ConfigError("; ".join(refused.values()))
        for run in self.runs.values():
            run.reload_error = None
        await self.load_campaigns()
        self._wake.set()
        return changed


async def serve_console(
    dialer: Dialer,
    *,
    host: str,
    port: int,
    watch_config: bool = True,
    sighup: bool = True,
) -> tuple[Any, int]:
    """Start the supervisor console in this loop, with metrics and hot reload wired in."""
    from prometheus_client import CollectorRegistry

    from dialer.floor.console import DialerMetrics, config_paths, outcome_recorder, start_console

    metrics = DialerMetrics(CollectorRegistry())
    dialer.metrics = metrics
    dialer.on_outcome.append(outcome_recorder(metrics))
    watch = (
        config_paths(dialer.settings, include_settings=dialer.settings.source is not None)
        if watch_config
        else ()
    )
    return await start_console(
        dialer,
        host=host,
        port=port,
        metrics=metrics,
        watch=watch,
        sighup=sighup,
        store=dialer.store,
    )


__all__ = ["Clock", "Dialer", "WallClock", "serve_console"]
