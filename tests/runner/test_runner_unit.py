"""The runner's own rules, without a PBX: the cap fall-back, the pacer, abandon windows."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from dialer.floor.loop import CampaignRun, RateLimiter, wait_real
from dialer.floor.service import Dialer
from dialer.floor.view import AgentState
from dialer.lists.campaigns import parse_campaign
from dialer.lists.stats import abandon_rates
from dialer.pacing.estimators import PacingEstimator, cold_start
from dialer.pacing.policies import policy_for_campaign
from dialer.settings import Settings
from dialer.store import Store, workers
from dialer.store.models import Attempt, Campaign
from dialer.store.workers import WorkerIdentity
from dialer.telephony.lag import EventLag


class _Core:
    """Just enough of DialerCore for the runner to decide (no calls in flight)."""

    def __init__(self) -> None:
        self.tracker = SimpleNamespace(calls={})
        self.ready = True
        self.rows = SimpleNamespace(messages={}, agi_url="agi://127.0.0.1:4573", server="default")
        self.lag = EventLag()  # no event read: on time

    def subscribe(self, _cb: Any) -> None: ...
    def on_queue_status(self, _cb: Any) -> None: ...
    def on_finished(self, _cb: Any) -> None: ...

    def on_transition(self, _cb: Any) -> None: ...

    def live_calls(self) -> int:
        return 0


def make_run(mode: str, **pacing: Any) -> CampaignRun:
    spec = parse_campaign({"name": "c", "mode": mode, "queue": "q", "pacing": pacing})
    return CampaignRun(
        id=1,
        spec=spec,
        policy=policy_for_campaign(spec),
        estimator=PacingEstimator(cold_start(spec.pacing)),
        limiter=RateLimiter(spec.pacing.calls_per_second),
    )


def dialer_with_idle_agents(store: Store, n: int) -> Dialer:
    d = Dialer(store, _Core(), Settings())  # type: ignore[arg-type]
    d.pool.load_status(
        [
            {
                "Queue": "q",
                "Name": f"a{i}",
                "StateInterface": f"PJSIP/a{i}",
                "Status": "1",
                "Paused": "0",
            }
            for i in range(n)
        ],
        now=0.0,
    )
    return d


def test_power_falls_back_to_progressive_over_the_cap(store: Store) -> None:
    d = dialer_with_idle_agents(store, 4)
    assert d.pool.count(AgentState.IDLE, "q") == 4
    run = make_run("power", power_ratio=3.0, abandon_cap=0.03, calls_per_second=50)
    assert d.decide(run, now=10.0) == 12 and run.effective_mode == "power"
    run.abandon_counts.rebase(100, 3)  # at the cap over its window
    assert d.decide(run, now=11.0) == 4 and run.effective_mode == "progressive"
    run.abandon_counts.rebase(200, 3)  # under again
    assert d.decide(run, now=12.0) == 12 and run.effective_mode == "power"


def test_paused_campaign_dials_nothing(store: Store) -> None:
    d = dialer_with_idle_agents(store, 4)
    run = make_run("progressive")
    run.spec = run.spec.model_copy(update={"state": "paused"})
    assert d.decide(run, now=1.0) == 0


def test_rate_limiter_paces_calls() -> None:
    lim = RateLimiter(2.0)
    slots = [lim.reserve(10.0) for _ in range(5)]
    assert slots == [10.0, 10.5, 11.0, 11.5, 12.0]
    assert lim.reserve(20.0) == 20.0  # idle time is not banked into a burst


def test_abandon_windows_from_attempt_rows(store: Store) -> None:
    now = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)  # 12:00 in Beijing
    with store.session() as s:
        c = Campaign(name="c", state="running", purpose="service", mode="power", spec={})
        s.add(c)
        s.flush()
        rows = [
            # (ended minutes ago, live, outcome)
            (0.5, True, "abandoned"),
            (0.5, True, "agent_handled"),
            (30, True, "agent_handled"),
            (30, False, "machine"),
            (300, True, "abandoned"),  # 07:00 Beijing: today, not in the last hour
            (60 * 24 * 3, True, "agent_handled"),
            (60 * 24 * 40, True, "abandoned"),  # outside 30 days
        ]
        for ago, live, outcome in rows:
            s.add(
                Attempt(
                    campaign_id=c.id,
                    phone="+8613800000000",
                    outcome=outcome,
                    live_answer=live,
                    ended_at=now - dt.timedelta(minutes=ago),
                )
            )
        s.flush()
        w = abandon_rates(s, c.id, now, cap_window=dt.timedelta(days=30))
    assert (w["1m"].live_answers, w["1m"].abandoned) == (2, 1)
    assert (w["1h"].live_answers, w["1h"].abandoned) == (3, 1)
    assert (w["today"].live_answers, w["today"].abandoned) == (4, 2)
    assert (w["30d"].live_answers, w["30d"].abandoned) == (5, 2)
    assert w["cap_window"] == w["30d"]
    assert (w["to_date"].live_answers, w["to_date"].abandoned) == (6, 3)
    assert w["to_date"].rate == 0.5


def test_sweep_ends_rows_a_crashed_dialer_never_sent(store: Store) -> None:
    import datetime as dt

    from dialer.outcomes import Outcome
    from dialer.store.models import Contact

    d = dialer_with_idle_agents(store, 0)
    now = d.now()
    with store.session() as s:
        c = Campaign(
            name="c",
            state="running",
            purpose="service",
            mode="progressive",
            spec=parse_campaign(
                {"name": "c", "queue": "q", "retry": {"failed": "30m"}}
            ).to_document(),
        )
        s.add(c)
        s.flush()
        contact = Contact(
            campaign_id=c.id, phone="+8613800001234", timezone="Asia/Shanghai", attempts=1
        )
        s.add(contact)
        s.flush()
        old = now - dt.timedelta(minutes=10)
        s.add_all(
            [
                Attempt(
                    campaign_id=c.id, contact_id=contact.id, phone=contact.phone, created_at=old
                ),
                Attempt(
                    campaign_id=c.id, phone="+8613800001235", created_at=now
                ),  # another worker's
                Attempt(campaign_id=c.id, phone="+8613800001236", created_at=old, channel_id="x"),
                # written just now by a worker that is dead (killed between row and Originate):
                # ended at once, not two minutes later
                Attempt(campaign_id=c.id, phone="+8613800001237", created_at=now, owner="gone"),
                # ...but not one of a live worker, nor one of this dialer's own
                Attempt(campaign_id=c.id, phone="+8613800001238", created_at=now, owner="w2"),
                Attempt(
                    campaign_id=c.id, phone="+8613800001239", created_at=now, owner=d.loop.owner
                ),
            ]
        )
        workers.register(s, WorkerIdentity("w2"), now)
        workers.register(s, WorkerIdentity("gone"), now - dt.timedelta(minutes=5))
    assert d.sweep_unsent() == 2
    with store.session() as s:
        rows = s.scalars(select(Attempt).order_by(Attempt.id)).all()
        assert [r.outcome for r in rows] == [Outcome.FAILED, None, None, Outcome.FAILED, None, None]
        contact = s.scalars(select(Contact)).one()
        assert contact.next_attempt_at is not None and contact.status == "active"


async def test_refused_reload_is_shown_on_the_campaign_whose_file_it_is(
    store: Store, tmp_path: Path
) -> None:
    from dialer.errors import ConfigError
    from dialer.lists.campaigns import apply_campaign, load_campaign_file
    from dialer.store.models import AuditEntry

    f = tmp_path / "renamed.yaml"  # the file name does not name the campaign
    f.write_text("name: probe\nmode: power\nqueue: q\npacing: {power_ratio: 1.0}\n")
    other = tmp_path / "power.yaml"
    other.write_text("name: power\nmode: power\nqueue: q\n")
    with store.session() as s:
        apply_campaign(s, load_campaign_file(f), source=str(f), actor="test")
        apply_campaign(s, load_campaign_file(other), source=str(other), actor="test")
    d = dialer_with_idle_agents(store, 1)
    await d.load_campaigns()
    await d.pause("probe", actor="api")
    f.write_text("name: probe\nmode: power\nqueue: q\npacing: {power_ratio: 0.5}\n")
    with pytest.raises(ConfigError, match="power_ratio"):
        await d.reload(str(f), actor="watcher")
    snaps = {c.name: c for c in d.campaigns()}
    assert snaps["probe"].last_error and "power_ratio" in snaps["probe"].last_error
    assert snaps["power"].last_error is None
    assert snaps["probe"].pacing["power_ratio"] == 1.0 and snaps["probe"].state == "paused"
    # a valid edit applies what the file changed (the file is the source of definitions) and
    # says so; the supervisor's pause holds (the file's own state did not change)
    f.write_text("name: probe\nmode: power\nqueue: q\npacing: {power_ratio: 2.0}\n")
    assert await d.reload(str(f), actor="watcher") == ["probe"]
    snaps = {c.name: c for c in d.campaigns()}
    assert snaps["probe"].last_error is None and snaps["probe"].pacing["power_ratio"] == 2.0
    assert snaps["probe"].state == "paused"
    with store.session() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.actor == "watcher")).one()
        assert audit.detail["changed"] == {"pacing.power_ratio": [1.0, 2.0]}


class _StepClock:
    """A clock the test moves; the loop wakes every ``tick_s`` real seconds."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await wait_real(event, timeout)


class _ReadyCore(_Core):
    async def wait_ready(self, timeout: float | None = None) -> None:
        return None


async def test_the_unsent_sweep_keeps_running_after_start_up(store: Store) -> None:
    """Issue 17, item 2: a row written moments before a crash (younger than the sweep's
    two-minute guard at start-up) is ended while the next run goes on: no number stays
    blocked for the rest of the run."""
    from dialer.floor.loop import SWEEP_EVERY_S, UNSENT_AFTER
    from dialer.outcomes import Outcome

    clock = _StepClock(dt.datetime(2026, 12, 1, 2, tzinfo=dt.UTC).timestamp())
    d = Dialer(store, _ReadyCore(), Settings(), clock=clock, tick_s=0.01)  # type: ignore[arg-type]
    written = dt.datetime.fromtimestamp(clock.t, dt.UTC) - dt.timedelta(seconds=30)
    with store.session() as s:
        c = Campaign(
            name="c",
            state="paused",
            purpose="service",
            mode="progressive",
            spec=parse_campaign({"name": "c", "queue": "q"}).to_document(),
        )
        s.add(c)
        s.flush()
        s.add(Attempt(campaign_id=c.id, phone="+8613800001234", created_at=written))
    task = asyncio.create_task(d.run())
    try:
        await asyncio.sleep(0.2)
        with store.session() as s:
            assert s.scalars(select(Attempt)).one().outcome is None  # too young at start-up
        steps = int((UNSENT_AFTER.total_seconds() + SWEEP_EVERY_S) / SWEEP_EVERY_S) + 1
        for _ in range(steps):
            clock.t += SWEEP_EVERY_S
            await asyncio.sleep(0.2)
        with store.session() as s:
            row = s.scalars(select(Attempt)).one()
        assert row.outcome == Outcome.FAILED
        assert row.detail["end_reason"].startswith("never sent")
    finally:
        d.stop()
        await asyncio.wait_for(task, 5)


def test_a_live_answer_is_learnt_when_it_happens_not_when_the_call_ends(store: Store) -> None:
    """Issue 17, item 10: on a long-call floor the answered calls of the first wave end
    minutes after the unanswered ones; learnt at the end, the answer rate read ~0.1 for a
    true 0.3 and the loop over-dialled. Learnt at the answer (as the rehearsal does), both
    the answer rate and the live-answer count are current, and nothing is counted twice."""
    from dialer.outcomes import AttemptState as S
    from dialer.outcomes import Outcome
    from dialer.telephony.rows import FinishedAttempt
    from dialer.telephony.tracker import Finished, Signal, Transition

    d = dialer_with_idle_agents(store, 0)
    run = make_run("predictive")
    d.loop.runs[run.id] = run
    t0 = 1_000_000.0
    calls = {}
    for aid in range(1, 11):
        d.loop.attempt_campaign[aid] = run.id
        calls[aid] = SimpleNamespace(originated_at=t0, answered_at=t0 + 8.0)
    d.core.tracker.calls.update(calls)
    p0 = run.estimator.snapshot(t0).answer_prob
    # three are answered and queued at t0+9; seven ring out and end at t0+25
    for aid in (1, 2, 3):
        d.loop.feeds.on_transition(Transition(aid, S.ANSWERED, S.QUEUED, Signal.QUEUE_JOIN, t0 + 9))
        d.loop.feeds.on_transition(
            Transition(aid, S.QUEUED, S.WITH_AGENT, Signal.AGENT_CONNECT, t0 + 10)
        )

    def finished(aid: int, outcome: Outcome, live: bool, end: float) -> FinishedAttempt:
        f = Finished(
            attempt_id=aid, outcome=outcome, end_reason="", originated_at=t0, ringing_at=t0,
            answered_at=t0 + 8.0 if live else None, greeting_end_at=None, queued_at=None,
            bridged_at=None, message_played_at=None, ended_at=end, originate_reason=None,
            hangup_cause=None, amd_status=None, queue="q", agent=None, result=None,
            live_answer=live, resynced=False, detail={},
        )  # fmt: skip
        return FinishedAttempt(aid, outcome, f, None)

    for aid in range(4, 11):
        d.loop.feeds.on_finished(finished(aid, Outcome.NO_ANSWER, False, t0 + 25))
    now = t0 + 26
    assert run.abandons(now).window_live == 3  # counted while the three still talk
    learnt = run.estimator.snapshot(now).answer_prob
    assert learnt > p0 * 0.8, (p0, learnt)  # 3 of 10, not 0 of 7
    for aid in (1, 2, 3):  # the long calls end minutes later: not counted again
        d.loop.feeds.on_finished(finished(aid, Outcome.AGENT_HANDLED, True, t0 + 400))
    assert run.abandons(t0 + 401).window_live == 3


def test_an_abandon_is_learnt_when_the_caller_leaves_the_queue(store: Store) -> None:
    """As in the rehearsal, an abandon counts when the hold limit runs out (QueueCallerAbandon),
    not once the safe-harbour message has played and the outcome is committed. Counted once;
    a queue the IVR transferred to is not an abandon."""
    from dialer.outcomes import AttemptState as S
    from dialer.outcomes import Outcome
    from dialer.telephony.ami.messages import Event, Headers
    from dialer.telephony.rows import FinishedAttempt
    from dialer.telephony.tracker import Finished, Signal, Transition

    d = dialer_with_idle_agents(store, 0)
    run = make_run("predictive")
    d.loop.runs[run.id] = run
    t0 = 1_000_000.0
    for aid, via_ivr in ((1, False), (2, True)):
        d.loop.attempt_campaign[aid] = run.id
        d.core.tracker.calls[aid] = SimpleNamespace(
            attempt_id=aid, originated_at=t0, answered_at=t0 + 8.0, state=S.QUEUED,
            queue_abandoned=False,
            via_ivr=via_ivr,
        )  # fmt: skip
        d.loop.feeds.on_transition(Transition(aid, S.ANSWERED, S.QUEUED, Signal.QUEUE_JOIN, t0 + 9))
    assert d.loop.pacing_input(run, t0 + 10).callers_waiting == 2
    for call in d.core.tracker.calls.values():  # the tracker has seen the hold limit run out
        call.queue_abandoned = True
    abandon = Event("QueueCallerAbandon", Headers([("Queue", "q"), ("HoldTime", "2")]))
    d.loop.feeds.on_ami_event(abandon)
    d.loop.feeds.on_ami_event(abandon)  # a second event counts nothing twice
    ab = run.abandons(t0 + 11)
    assert (ab.window_live, ab.window_abandoned) == (2, 1)
    f = Finished(
        attempt_id=1, outcome=Outcome.ABANDONED, end_reason="", originated_at=t0, ringing_at=t0,
        answered_at=t0 + 8.0, greeting_end_at=t0 + 8.0, queued_at=t0 + 9, bridged_at=None,
        message_played_at=t0 + 16, ended_at=t0 + 17, originate_reason=None, hangup_cause=None,
        amd_status=None, queue="q", agent=None, result=None, live_answer=True, resynced=False,
        detail={},
    )  # fmt: skip
    d.loop.feeds.on_finished(FinishedAttempt(1, Outcome.ABANDONED, f, None))
    ab = run.abandons(t0 + 18)
    assert (ab.window_live, ab.window_abandoned) == (2, 1)


async def test_the_breaker_hears_of_an_abandon_or_a_bridge_when_it_happens(store: Store) -> None:
    """The abandon breaker is fed when the switch shows the verdict - the caller leaving the
    queue, the agent connecting - not when the call ends (a long call's bridge came minutes
    late, and an abandon after its safe-harbour message); each call is judged once."""
    from dialer.outcomes import AttemptState as S
    from dialer.outcomes import Outcome
    from dialer.pacing.breaker import BreakerEvent, BreakerState
    from dialer.telephony.ami.messages import Event, Headers
    from dialer.telephony.rows import FinishedAttempt
    from dialer.telephony.tracker import Finished, Signal, Transition

    d = dialer_with_idle_agents(store, 3)
    run = make_run("predictive")
    with store.session() as s:  # the breaker's audit rows name the campaign
        row = Campaign(name="c", state="running", purpose="service", mode="predictive", spec={})
        s.add(row)
        s.flush()
        run.id = row.id
    d.loop.runs[run.id] = run
    feeds, t0 = d.loop.feeds, 1_000_000.0

    def queued(aid: int) -> None:
        d.loop.attempt_campaign[aid] = run.id
        d.core.tracker.calls[aid] = SimpleNamespace(
            attempt_id=aid, originated_at=t0, answered_at=t0 + 8.0, state=S.QUEUED,
            queue_abandoned=False, via_ivr=False,
        )  # fmt: skip
        feeds.on_transition(Transition(aid, S.ANSWERED, S.QUEUED, Signal.QUEUE_JOIN, t0 + 9))

    def ended(aid: int, outcome: Outcome, bridged: float | None, end: float) -> None:
        f = Finished(
            attempt_id=aid, outcome=outcome, end_reason="", originated_at=t0, ringing_at=t0,
            answered_at=t0 + 8.0, greeting_end_at=t0 + 8.0, queued_at=t0 + 9,
            bridged_at=bridged, message_played_at=None, ended_at=end, originate_reason=None,
            hangup_cause=None, amd_status=None, queue="q", agent=None, result=None,
            live_answer=True, resynced=False, detail={},
        )  # fmt: skip
        feeds.on_finished(FinishedAttempt(aid, outcome, f, None))
        d.core.tracker.calls.pop(aid, None)

    for aid in (1, 2, 3):
        queued(aid)
    for aid in (1, 2, 3):  # the hold limit runs out for each while 3 agents look idle
        d.core.tracker.calls[aid].queue_abandoned = True
        feeds.on_ami_event(Event("QueueCallerAbandon", Headers([("Queue", "q")])))
    assert run.breaker.state is BreakerState.OPEN  # before any of the calls has ended
    strikes = run.breaker.strikes
    for aid in (1, 2, 3):  # their ends (after the safe-harbour message) count nothing again
        ended(aid, Outcome.ABANDONED, None, t0 + 17)
    assert (run.breaker.state, run.breaker.strikes) == (BreakerState.OPEN, strikes)

    run.breaker.on_floor(t0 + 20, BreakerEvent.FLOOR_CHANGED)  # a member was added
    assert run.breaker.state is BreakerState.HALF_OPEN
    assert d.loop.guard.limit(run, 5) == 1
    d.loop.guard.placed(run, [4])
    queued(4)
    feeds.on_transition(Transition(4, S.QUEUED, S.WITH_AGENT, Signal.AGENT_CONNECT, t0 + 30))
    assert run.breaker.state is BreakerState.CLOSED  # the probe reached an agent: at once
    assert (run.breaker.strikes, run.breaker.probes_in_flight) == (0, 0)
    ended(4, Outcome.AGENT_HANDLED, t0 + 30, t0 + 400)  # four minutes of talk later
    assert (run.breaker.state, run.breaker.probes_in_flight) == (BreakerState.CLOSED, 0)
    await asyncio.gather(*d.loop.guard._writes)  # the open and the close are audited
