"""Rehearsal: policies run in virtual time against a scenario, with common random numbers.

Why it is built this way:
- Discrete-event, one heap, virtual clock (class ``Rehearsal``: named ``EventKind``s, one
  handler each, call slots with ``SlotState``s): a two-hour shift of 20 agents takes about a
  second.
- Common random numbers: replication ``r`` draws its called parties from one generator seeded
  with ``(seed, r)``, in fixed-size blocks, always in the same order. The n-th call a policy
  places reaches the n-th party - same answer draw, ring time, talk and wrap-up time - whatever
  the policy. Differences between policies are the policies, not the dice.
- The policy under test is called exactly as the live runner calls it: a frozen
  :class:`PacingInput` at every event and at least every ``tick_s``; it learns from a
  :class:`PacingEstimator` that starts cold (the campaign's settings) and is fed the outcomes
  the run produces.
- Measured from a cold start (every agent idle at t=0) over the whole duration. A live answer that
  finds no agent within ``hold_s`` is abandoned; its wait counts as ``hold_s``.
"""

from __future__ import annotations

import enum
import heapq
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dialer.pacing.dists import DistKind, FloatArray
from dialer.pacing.estimators import PacingEstimator, cold_start
from dialer.pacing.policies import Policy, make_policy
from dialer.pacing.scenario import Scenario
from dialer.pacing.types import AgentState, PacingInput
from dialer.pacing.windows import AbandonTracker

#: Parties drawn per block (the block layout is part of the common-random-numbers contract).
BLOCK = 4096

_IDLE = int(AgentState.IDLE)
_TALKING = int(AgentState.TALKING)
_WRAPUP = int(AgentState.WRAPUP)
_RINGING = int(AgentState.RINGING)


class EventKind(enum.IntEnum):
    """What a heap entry ``(time, seq, kind, arg)`` is; ``arg`` is named beside each kind."""

    ANSWER = 0  # slot: the called party answered live
    RELEASE = 1  # slot: the call ended without a live answer (no answer, machine)
    ABANDON = 2  # call id * ABANDON_KEY + slot: a waiting caller reached the hold limit
    TALK_END = 3  # agent
    WRAP_END = 4  # agent
    TICK = 5  # 0: the periodic decision
    SHIFT = 6  # index of the agent step that starts now
    BRIDGE = 7  # agent: the agent picked up the caller ringing them
    RING_FAIL = 8  # agent: the hold limit ran out while the agent's phone rang


class SlotState(enum.IntEnum):
    """A call slot's status (non-zero: the call is in flight)."""

    FREE = 0
    RINGING = 1  # dialled, not answered yet
    WAITING = 2  # answered live, waiting for an agent
    ASSIGNED = 3  # an agent's phone rings with it


#: ``EventKind.ABANDON``'s argument packs the call id above the slot number.
ABANDON_KEY = 1_000_000


class PartyStream:
    """The called parties of one replication, in dialling order (common random numbers)."""

    def __init__(self, scenario: Scenario, seed: int, rep: int) -> None:
        self.scenario = scenario
        self._rng = np.random.default_rng([seed, rep])
        self.u_answer: FloatArray = np.zeros(0)
        self.ring: FloatArray = np.zeros(0)
        self.talk: FloatArray = np.zeros(0)
        self.wrap: FloatArray = np.zeros(0)
        self.u_machine: FloatArray = np.zeros(0)
        self.release: FloatArray = np.zeros(0)

    def ensure(self, n: int) -> None:
        """Make parties ``0..n-1`` available (draws whole blocks, always in the same order)."""
        while len(self.u_answer) < n:
            s, rng = self.scenario, self._rng
            self.u_answer = np.concatenate((self.u_answer, rng.random(BLOCK)))
            self.ring = np.concatenate((self.ring, s.ring_answered_s.sample(rng, BLOCK)))
            self.talk = np.concatenate((self.talk, s.talk_s.sample(rng, BLOCK)))
            self.wrap = np.concatenate((self.wrap, s.wrap_s.sample(rng, BLOCK)))
            self.u_machine = np.concatenate((self.u_machine, rng.random(BLOCK)))
            self.release = np.concatenate((self.release, s.no_answer_release_s.sample(rng, BLOCK)))


@dataclass
class RunResult:
    """One replication of one policy."""

    policy: str
    rep: int
    busy_s: float = 0.0  # agents' talk + wrap-up time
    logged_s: float = 0.0  # agents' logged-in time
    live: int = 0  # live answers
    abandoned: int = 0
    connects: int = 0  # live answers bridged to an agent
    dials: int = 0
    decisions: int = 0
    waits: FloatArray = field(default_factory=lambda: np.zeros(0))
    live_parties: list[int] | None = None  # party indices answered live (``trace=True``)

    @property
    def occupancy(self) -> float:
        return self.busy_s / self.logged_s if self.logged_s else 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.live if self.live else 0.0


class Rehearsal:
    """One replication of one policy on one scenario, as a discrete-event run.

    State: agents (numpy arrays indexed by agent), call slots (numpy arrays indexed by slot,
    grown by doubling), one heap of ``(time, seq, EventKind, arg)``. Every event is handled by
    its method in ``self._handlers``; after each one the policy decides (a tick decides only if
    nothing else did within ``tick_s``).
    """

    def __init__(
        self,
        scenario: Scenario,
        policy: Policy | str,
        *,
        rep: int = 0,
        seed: int = 0,
        observer: Callable[[PacingInput, int], None] | None = None,
        trace: bool = False,
    ) -> None:
        self.pol = make_policy(policy) if isinstance(policy, str) else policy
        self.sc = sc = scenario
        self.end_s = sc.duration_s
        self.hold = sc.hold_s
        self.settings = sc.pacing()
        self.estimator = PacingEstimator(cold_start(self.settings))
        self.parties = PartyStream(sc, seed, rep)
        self.parties.ensure(BLOCK)
        self.res = RunResult(policy=self.pol.name, rep=rep)
        self.traced: list[int] | None = [] if trace else None
        self.observer = observer
        self._init_agents(seed, rep)
        self._init_slots()
        self.tracker = AbandonTracker(
            None
            if sc.abandon_window_s is None or sc.abandon_window_s >= self.end_s
            else sc.abandon_window_s
        )
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.last_decision = 0.0
        self._handlers: dict[int, Callable[[float, int], bool]] = {
            EventKind.ANSWER: self._on_answer,
            EventKind.RELEASE: self._on_release,
            EventKind.ABANDON: self._on_abandon,
            EventKind.TALK_END: self._on_talk_end,
            EventKind.WRAP_END: self._on_wrap_end,
            EventKind.BRIDGE: self._on_bridge,
            EventKind.RING_FAIL: self._on_ring_fail,
            EventKind.TICK: self._on_tick,
            EventKind.SHIFT: self._on_shift,
        }

    def _init_agents(self, seed: int, rep: int) -> None:
        n_max = max(self.sc.max_agents, 1)
        self.a_state = np.full(n_max, _IDLE, dtype=np.int8)
        self.a_since = np.zeros(n_max)
        self.a_busy_from = np.zeros(n_max)
        self.a_logged = np.zeros(n_max, dtype=bool)
        self.a_leaving = np.zeros(n_max, dtype=bool)
        self.a_talk = np.zeros(n_max)
        self.a_wrap = np.zeros(n_max)
        self.a_slot = np.full(n_max, -1, dtype=np.int64)  # the caller an agent's phone rings with
        self.idle: list[int] = []  # idle agents, most recently freed last
        # Agents' answer delays: their own stream, so scenarios without one draw exactly as before.
        self.answer_delay: FloatArray | None = None
        self.delay_spec = spec = self.sc.agent_answer_s
        self.delay_rng = np.random.default_rng([seed, rep, 1])
        if not (spec.dist is DistKind.CONST and not spec.value and not spec.offset):
            self._extend_answer_delay()
        self.logged = 0
        self.logged_since = 0.0
        self.churn = len(self.sc.agent_steps) > 1

    def _init_slots(self) -> None:
        cap_slots = 64
        self.c_dial = np.zeros(cap_slots)
        self.c_status = np.zeros(cap_slots, dtype=np.int8)
        self.c_party = np.zeros(cap_slots, dtype=np.int64)
        self.c_id = np.zeros(cap_slots, dtype=np.int64)
        self.c_answer_t = np.zeros(cap_slots)
        self.free_slots = list(range(cap_slots - 1, -1, -1))
        self.waiting: deque[int] = deque()
        self.waits: list[float] = []

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        sc, end_s = self.sc, self.end_s
        steps = sc.agent_steps
        self._log_in(0.0, steps[0].agents)
        for k, step in enumerate(steps[1:], start=1):
            if step.at_s < end_s:
                self._push(step.at_s, EventKind.SHIFT, k)
        self._push(sc.tick_s, EventKind.TICK, 0)
        self._decide(0.0)
        heap, handlers = self.heap, self._handlers
        while heap:
            now, _, kind, arg = heapq.heappop(heap)
            if now > end_s:
                break
            if handlers[kind](now, arg):
                self._decide(now)
        return self._close()

    def _close(self) -> RunResult:
        """Close the books at the end: busy agents count up to it, logged time up to it."""
        end_s, res = self.end_s, self.res
        busy = self.a_logged & ((self.a_state == _TALKING) | (self.a_state == _WRAPUP))
        res.busy_s += float(np.sum(end_s - self.a_busy_from[busy]))
        self._set_logged(end_s, self.logged)
        res.waits = np.asarray(self.waits, dtype=np.float64)
        res.live_parties = self.traced
        return res

    def _push(self, t: float, kind: EventKind, arg: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, arg))

    # --- agents -----------------------------------------------------------------------------

    def _extend_answer_delay(self) -> None:
        more = self.delay_spec.sample(self.delay_rng, BLOCK)
        ad = self.answer_delay
        self.answer_delay = more if ad is None else np.concatenate((ad, more))

    def _set_logged(self, now: float, n: int) -> None:
        self.res.logged_s += self.logged * (now - self.logged_since)
        self.logged, self.logged_since = n, now

    def _log_in(self, now: float, count: int) -> None:
        # First cancel pending log-outs, then bring in new agents.
        for i in np.flatnonzero(self.a_leaving)[:count]:
            self.a_leaving[i] = False
            count -= 1
        for i in np.flatnonzero(~self.a_logged)[:count]:
            self.a_logged[i] = True
            self.a_state[i] = _IDLE
            self.a_since[i] = now
            self.idle.append(int(i))
            self._set_logged(now, self.logged + 1)

    def _log_out(self, now: float, count: int) -> None:
        while count and self.idle:
            i = self.idle.pop()
            self.a_logged[i] = False
            self._set_logged(now, self.logged - 1)
            count -= 1
        if count:
            busy = np.flatnonzero(self.a_logged & ~self.a_leaving)
            for i in busy[:count]:
                self.a_leaving[i] = True

    def _connect(self, now: float, slot: int, agent: int) -> None:
        """Give the caller in ``slot`` to ``agent``: bridged after the agent answers, unless the
        hold limit runs out first (then the caller is abandoned and the agent freed)."""
        if self.answer_delay is None:
            self._bridge(now, slot, agent)
            return
        k = self.res.connects + self.res.abandoned
        while k >= len(self.answer_delay):
            self._extend_answer_delay()
        d = float(self.answer_delay[k])
        self.a_state[agent] = _RINGING
        self.a_since[agent] = now
        self.a_slot[agent] = slot
        self.c_status[slot] = SlotState.ASSIGNED
        deadline = self.c_answer_t[slot] + self.hold
        if now + d <= deadline:
            self._push(now + d, EventKind.BRIDGE, agent)
        else:
            self._push(deadline, EventKind.RING_FAIL, agent)

    def _agent_free(self, now: float, agent: int) -> None:
        if self.waiting:
            self._connect(now, self.waiting.popleft(), agent)
        else:
            self.a_state[agent] = _IDLE
            self.a_since[agent] = now
            self.idle.append(agent)

    def _bridge(self, now: float, slot: int, agent: int) -> None:
        parties = self.parties
        p = int(self.c_party[slot])
        self.a_state[agent] = _TALKING
        self.a_since[agent] = now
        self.a_busy_from[agent] = now
        self.a_talk[agent] = parties.talk[p]
        self.a_wrap[agent] = parties.wrap[p]
        self._push(now + parties.talk[p], EventKind.TALK_END, agent)
        self.waits.append(now - self.c_answer_t[slot])
        self.res.connects += 1
        self._free_slot(slot)

    # --- calls ------------------------------------------------------------------------------

    def _free_slot(self, slot: int) -> None:
        self.c_status[slot] = SlotState.FREE
        self.free_slots.append(slot)

    def _grow_slots(self) -> None:
        old = len(self.c_status)
        self.c_dial = np.concatenate((self.c_dial, np.zeros(old)))
        self.c_status = np.concatenate((self.c_status, np.zeros(old, dtype=np.int8)))
        self.c_party = np.concatenate((self.c_party, np.zeros(old, dtype=np.int64)))
        self.c_id = np.concatenate((self.c_id, np.zeros(old, dtype=np.int64)))
        self.c_answer_t = np.concatenate((self.c_answer_t, np.zeros(old)))
        self.free_slots = list(range(2 * old - 1, old - 1, -1))

    def _dial(self, now: float) -> None:
        sc, parties, res = self.sc, self.parties, self.res
        i = res.dials
        res.dials += 1
        if i >= len(parties.u_answer):
            parties.ensure(i + 1)
        if not self.free_slots:
            self._grow_slots()
        slot = self.free_slots.pop()
        self.c_dial[slot] = now
        self.c_status[slot] = SlotState.RINGING
        self.c_party[slot] = i
        self.c_id[slot] = i
        ring = parties.ring[i]
        answered = parties.u_answer[i] < sc.rate_at(now) and ring < sc.ring_timeout_s
        if answered and parties.u_machine[i] >= sc.machine_rate:
            self._push(now + ring, EventKind.ANSWER, slot)
        elif answered:
            self._push(now + ring + sc.amd_s, EventKind.RELEASE, slot)
        else:
            self._push(now + parties.release[i], EventKind.RELEASE, slot)

    def _decide(self, now: float) -> None:
        self.last_decision = now
        if self.churn:
            sel = self.a_logged
            states = self.a_state[sel]
            elapsed = now - self.a_since[sel]
        else:
            states = self.a_state
            elapsed = now - self.a_since
        c_status = self.c_status
        active = (
            np.flatnonzero(c_status)
            if self.answer_delay is None
            else np.flatnonzero((c_status == SlotState.RINGING) | (c_status == SlotState.WAITING))
        )
        inp = PacingInput(
            now=now,
            agent_state=states,
            agent_elapsed_s=elapsed,
            call_age_s=now - self.c_dial[active],
            call_answered=c_status[active] == SlotState.WAITING,
            estimates=self.estimator.snapshot(now),
            settings=self.settings,
            abandons=self.tracker.counts(now),
        )
        n = self.pol.decide(inp)
        self.res.decisions += 1
        if self.observer is not None:
            self.observer(inp, n)
        for _ in range(n):
            self._dial(now)

    # --- events (each returns whether the policy decides after it) ---------------------------

    def _on_answer(self, now: float, slot: int) -> bool:
        p = int(self.c_party[slot])
        self.estimator.observe_ring(now, self.parties.ring[p], live=True)
        self.res.live += 1
        if self.traced is not None:
            self.traced.append(p)
        self.tracker.live_answer(now)
        self.c_answer_t[slot] = now
        if self.idle:
            self._connect(now, slot, self.idle.pop())
        else:
            self.c_status[slot] = SlotState.WAITING
            self.waiting.append(slot)
            key = int(self.c_id[slot]) * ABANDON_KEY + slot
            self._push(now + self.hold, EventKind.ABANDON, key)
        return True

    def _on_release(self, now: float, slot: int) -> bool:
        sc, parties = self.sc, self.parties
        p = int(self.c_party[slot])
        dialled = self.c_dial[slot]
        machine = parties.u_answer[p] < sc.rate_at(dialled) and parties.ring[p] < sc.ring_timeout_s
        self.estimator.observe_ring(now, now - dialled, live=False, machine=bool(machine))
        self._free_slot(slot)
        return True

    def _on_abandon(self, now: float, key: int) -> bool:
        slot, cid = key % ABANDON_KEY, key // ABANDON_KEY
        if self.c_status[slot] != SlotState.WAITING or self.c_id[slot] != cid:
            return False  # already with an agent: nothing changed
        self.waiting.remove(slot)
        self._abandon(now, slot)
        return True

    def _abandon(self, now: float, slot: int) -> None:
        self.res.abandoned += 1
        self.tracker.abandon(now)
        self.waits.append(self.hold)
        self._free_slot(slot)

    def _on_talk_end(self, now: float, agent: int) -> bool:
        self.estimator.observe_talk(self.a_talk[agent])
        self.a_state[agent] = _WRAPUP
        self.a_since[agent] = now
        self._push(now + self.a_wrap[agent], EventKind.WRAP_END, agent)
        return True

    def _on_wrap_end(self, now: float, agent: int) -> bool:
        self.estimator.observe_wrap(self.a_wrap[agent])
        self.res.busy_s += now - self.a_busy_from[agent]
        if self.a_leaving[agent]:
            self.a_leaving[agent] = False
            self.a_logged[agent] = False
            self.a_state[agent] = _IDLE
            self._set_logged(now, self.logged - 1)
        else:
            self._agent_free(now, agent)
        return True

    def _on_bridge(self, now: float, agent: int) -> bool:
        self.estimator.observe_agent_answer(now - self.a_since[agent])
        self._bridge(now, int(self.a_slot[agent]), agent)
        return True

    def _on_ring_fail(self, now: float, agent: int) -> bool:
        self._abandon(now, int(self.a_slot[agent]))
        self._agent_free(now, agent)
        return True

    def _on_tick(self, now: float, _arg: int) -> bool:
        self._push(now + self.sc.tick_s, EventKind.TICK, 0)
        # an event decided less than a tick ago: nothing new to look at
        return now - self.last_decision >= self.sc.tick_s

    def _on_shift(self, now: float, step: int) -> bool:
        target = self.sc.agent_steps[step].agents
        current = self.logged - int(np.count_nonzero(self.a_leaving))
        if target > current:
            self._log_in(now, target - current)
        elif target < current:
            self._log_out(now, current - target)
        return True


def run_once(
    scenario: Scenario,
    policy: Policy | str,
    *,
    rep: int = 0,
    seed: int = 0,
    observer: Callable[[PacingInput, int], None] | None = None,
    trace: bool = False,
) -> RunResult:
    """One replication of ``policy`` on ``scenario``.

    ``observer`` sees every decision (input and answer); ``trace`` records which parties (by
    dialling order) answered live, to check the common random numbers.
    """
    return Rehearsal(scenario, policy, rep=rep, seed=seed, observer=observer, trace=trace).run()


@dataclass(frozen=True)
class Summary:
    """Pooled metrics of one policy over its replications (the ``dialer simulate`` report)."""

    occupancy: float
    abandon_rate: float
    p_run_over_cap: float
    wait_mean_s: float
    wait_p95_s: float
    connects_per_agent_hour: float
    dials_per_agent_hour: float
    reps: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "occupancy": round(self.occupancy, 4),
            "abandon_rate": round(self.abandon_rate, 4),
            "p_run_over_cap": round(self.p_run_over_cap, 4),
            "wait_mean_s": round(self.wait_mean_s, 3),
            "wait_p95_s": round(self.wait_p95_s, 3),
            "connects_per_agent_hour": round(self.connects_per_agent_hour, 2),
            "dials_per_agent_hour": round(self.dials_per_agent_hour, 2),
            "reps": self.reps,
        }


METRICS = (
    "occupancy",
    "abandon_rate",
    "p_run_over_cap",
    "wait_mean_s",
    "wait_p95_s",
    "connects_per_agent_hour",
    "dials_per_agent_hour",
)


def summarize(results: Sequence[RunResult], cap: float) -> Summary:
    busy = sum(r.busy_s for r in results)
    logged = sum(r.logged_s for r in results)
    live = sum(r.live for r in results)
    ab = sum(r.abandoned for r in results)
    waits = np.concatenate([r.waits for r in results]) if results else np.zeros(0)
    hours = logged / 3600.0
    return Summary(
        occupancy=busy / logged if logged else 0.0,
        abandon_rate=ab / live if live else 0.0,
        p_run_over_cap=float(np.mean([r.abandon_rate > cap for r in results])) if results else 0.0,
        wait_mean_s=float(waits.mean()) if waits.size else 0.0,
        wait_p95_s=float(np.quantile(waits, 0.95)) if waits.size else 0.0,
        connects_per_agent_hour=sum(r.connects for r in results) / hours if hours else 0.0,
        dials_per_agent_hour=sum(r.dials for r in results) / hours if hours else 0.0,
        reps=len(results),
    )


def _task(args: tuple[Scenario, str, int, int]) -> RunResult:
    scenario, policy, rep, seed = args
    return run_once(scenario, policy, rep=rep, seed=seed)


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def rehearse(
    scenario: Scenario,
    policies: Iterable[str],
    *,
    reps: int = 20,
    seed: int = 0,
    jobs: int | None = None,
) -> dict[str, tuple[Summary, list[RunResult]]]:
    """Every policy over ``reps`` replications (same parties per replication for every policy).

    ``jobs`` > 1 spreads replications over processes; results do not depend on it.
    """
    names = list(dict.fromkeys(policies))
    for n in names:
        make_policy(n)  # fail early on an unknown name
    tasks = [(scenario, n, r, seed) for n in names for r in range(reps)]
    jobs = default_jobs() if jobs is None else jobs
    if jobs > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as ex:
            out = list(ex.map(_task, tasks, chunksize=max(1, math.ceil(len(tasks) / (jobs * 4)))))
    else:
        out = [_task(t) for t in tasks]
    by: dict[str, list[RunResult]] = {n: [] for n in names}
    for r in out:
        by[r.policy].append(r)
    return {n: (summarize(rs, scenario.abandon_target), rs) for n, rs in by.items()}
