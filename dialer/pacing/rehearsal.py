"""Rehearsal: policies run in virtual time against a scenario, with common random numbers.

Why it is built this way:
- Discrete-event, one heap, virtual clock: a two-hour shift of 20 agents takes about a second.
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

# Event kinds (heap entries are (time, seq, kind, arg)).
_ANSWER, _RELEASE, _ABANDON, _TALK_END, _WRAP_END, _TICK, _SHIFT = range(7)

# Call slot status (assigned: an agent's phone rings with it).
_FREE, _RING, _WAIT, _ASSIGNED = 0, 1, 2, 3
_RINGING = int(AgentState.RINGING)
_BRIDGE, _RING_FAIL = 7, 8


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
    pol = make_policy(policy) if isinstance(policy, str) else policy
    sc = scenario
    T = sc.duration_s
    hold = sc.hold_s
    timeout = sc.ring_timeout_s
    machine_rate = sc.machine_rate
    settings = sc.pacing()
    estimator = PacingEstimator(cold_start(settings))
    parties = PartyStream(sc, seed, rep)
    parties.ensure(BLOCK)
    res = RunResult(policy=pol.name, rep=rep)
    traced: list[int] | None = [] if trace else None

    n_max = max(sc.max_agents, 1)
    a_state = np.full(n_max, _IDLE, dtype=np.int8)
    a_since = np.zeros(n_max)
    a_busy_from = np.zeros(n_max)
    a_logged = np.zeros(n_max, dtype=bool)
    a_leaving = np.zeros(n_max, dtype=bool)
    a_talk = np.zeros(n_max)
    a_wrap = np.zeros(n_max)
    a_slot = np.full(n_max, -1, dtype=np.int64)  # the caller an agent's phone rings with
    idle: list[int] = []  # idle agents, most recently freed last
    # Agents' answer delays: their own stream, so scenarios without one draw exactly as before.
    answer_delay: FloatArray | None = None
    delay_spec = sc.agent_answer_s
    delay_rng = np.random.default_rng([seed, rep, 1])

    def extend_answer_delay() -> None:
        nonlocal answer_delay
        more = delay_spec.sample(delay_rng, BLOCK)
        answer_delay = more if answer_delay is None else np.concatenate((answer_delay, more))

    if not (delay_spec.dist is DistKind.CONST and not delay_spec.value and not delay_spec.offset):
        extend_answer_delay()
    logged = 0
    logged_since = 0.0
    churn = len(sc.agent_steps) > 1

    cap_slots = 64
    c_dial = np.zeros(cap_slots)
    c_status = np.zeros(cap_slots, dtype=np.int8)
    c_party = np.zeros(cap_slots, dtype=np.int64)
    c_id = np.zeros(cap_slots, dtype=np.int64)
    c_answer_t = np.zeros(cap_slots)
    free_slots = list(range(cap_slots - 1, -1, -1))
    waiting: deque[int] = deque()
    waits: list[float] = []

    tracker = AbandonTracker(
        None if sc.abandon_window_s is None or sc.abandon_window_s >= T else sc.abandon_window_s
    )

    heap: list[tuple[float, int, int, int]] = []
    seq = 0

    def push(t: float, kind: int, arg: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, kind, arg))

    def set_logged(now: float, n: int) -> None:
        nonlocal logged, logged_since
        res.logged_s += logged * (now - logged_since)
        logged, logged_since = n, now

    def log_in(now: float, count: int) -> None:
        # First cancel pending log-outs, then bring in new agents.
        for i in np.flatnonzero(a_leaving)[:count]:
            a_leaving[i] = False
            count -= 1
        for i in np.flatnonzero(~a_logged)[:count]:
            a_logged[i] = True
            a_state[i] = _IDLE
            a_since[i] = now
            idle.append(int(i))
            set_logged(now, logged + 1)

    def log_out(now: float, count: int) -> None:
        while count and idle:
            i = idle.pop()
            a_logged[i] = False
            set_logged(now, logged - 1)
            count -= 1
        if count:
            busy = np.flatnonzero(a_logged & ~a_leaving)
            for i in busy[:count]:
                a_leaving[i] = True

    def connect(now: float, slot: int, agent: int) -> None:
        """Give the caller in ``slot`` to ``agent``: bridged after the agent answers, unless the
        hold limit runs out first (then the caller is abandoned and the agent freed)."""
        if answer_delay is None:
            bridge(now, slot, agent)
            return
        k = res.connects + res.abandoned
        while k >= len(answer_delay):
            extend_answer_delay()
        d = float(answer_delay[k])
        a_state[agent] = _RINGING
        a_since[agent] = now
        a_slot[agent] = slot
        c_status[slot] = _ASSIGNED
        deadline = c_answer_t[slot] + hold
        if now + d <= deadline:
            push(now + d, _BRIDGE, agent)
        else:
            push(deadline, _RING_FAIL, agent)

    def agent_free(now: float, agent: int) -> None:
        if waiting:
            connect(now, waiting.popleft(), agent)
        else:
            a_state[agent] = _IDLE
            a_since[agent] = now
            idle.append(agent)

    def bridge(now: float, slot: int, agent: int) -> None:
        p = int(c_party[slot])
        a_state[agent] = _TALKING
        a_since[agent] = now
        a_busy_from[agent] = now
        a_talk[agent] = parties.talk[p]
        a_wrap[agent] = parties.wrap[p]
        push(now + parties.talk[p], _TALK_END, agent)
        waits.append(now - c_answer_t[slot])
        res.connects += 1
        c_status[slot] = _FREE
        free_slots.append(slot)

    def dial(now: float) -> None:
        nonlocal c_dial, c_status, c_party, c_id, c_answer_t, free_slots
        i = res.dials
        res.dials += 1
        if i >= len(parties.u_answer):
            parties.ensure(i + 1)
        if not free_slots:
            old = len(c_status)
            c_dial = np.concatenate((c_dial, np.zeros(old)))
            c_status = np.concatenate((c_status, np.zeros(old, dtype=np.int8)))
            c_party = np.concatenate((c_party, np.zeros(old, dtype=np.int64)))
            c_id = np.concatenate((c_id, np.zeros(old, dtype=np.int64)))
            c_answer_t = np.concatenate((c_answer_t, np.zeros(old)))
            free_slots = list(range(2 * old - 1, old - 1, -1))
        slot = free_slots.pop()
        c_dial[slot] = now
        c_status[slot] = _RING
        c_party[slot] = i
        c_id[slot] = i
        ring = parties.ring[i]
        answered = parties.u_answer[i] < sc.rate_at(now) and ring < timeout
        if answered and parties.u_machine[i] >= machine_rate:
            push(now + ring, _ANSWER, slot)
        elif answered:
            push(now + ring + sc.amd_s, _RELEASE, slot)
        else:
            push(now + parties.release[i], _RELEASE, slot)

    last_decision = [0.0]

    def decide(now: float) -> None:
        last_decision[0] = now
        if churn:
            sel = a_logged
            states = a_state[sel]
            elapsed = now - a_since[sel]
        else:
            states = a_state
            elapsed = now - a_since
        active = (
            np.flatnonzero(c_status)
            if answer_delay is None
            else np.flatnonzero((c_status == _RING) | (c_status == _WAIT))
        )
        answered = c_status[active] == _WAIT
        inp = PacingInput(
            now=now,
            agent_state=states,
            agent_elapsed_s=elapsed,
            call_age_s=now - c_dial[active],
            call_answered=answered,
            estimates=estimator.snapshot(now),
            settings=settings,
            abandons=tracker.counts(now),
        )
        n = pol.decide(inp)
        res.decisions += 1
        if observer is not None:
            observer(inp, n)
        for _ in range(n):
            dial(now)

    # --- schedule and run --------------------------------------------------------------------
    steps = sc.agent_steps
    log_in(0.0, steps[0].agents)
    for k, step in enumerate(steps[1:], start=1):
        if step.at_s < T:
            push(step.at_s, _SHIFT, k)
    push(sc.tick_s, _TICK, 0)
    decide(0.0)

    while heap:
        now, _, kind, arg = heapq.heappop(heap)
        if now > T:
            break
        if kind == _ANSWER:
            slot = arg
            p = int(c_party[slot])
            estimator.observe_ring(now, parties.ring[p], live=True)
            res.live += 1
            if traced is not None:
                traced.append(p)
            tracker.live_answer(now)
            c_answer_t[slot] = now
            if idle:
                connect(now, slot, idle.pop())
            else:
                c_status[slot] = _WAIT
                waiting.append(slot)
                push(now + hold, _ABANDON, int(c_id[slot]) * 1_000_000 + slot)
        elif kind == _RELEASE:
            slot = arg
            p = int(c_party[slot])
            machine = parties.u_answer[p] < sc.rate_at(c_dial[slot]) and parties.ring[p] < timeout
            estimator.observe_ring(now, now - c_dial[slot], live=False, machine=bool(machine))
            c_status[slot] = _FREE
            free_slots.append(slot)
        elif kind == _ABANDON:
            slot, cid = arg % 1_000_000, arg // 1_000_000
            if c_status[slot] != _WAIT or c_id[slot] != cid:
                continue  # already with an agent
            waiting.remove(slot)
            res.abandoned += 1
            tracker.abandon(now)
            waits.append(hold)
            c_status[slot] = _FREE
            free_slots.append(slot)
        elif kind == _TALK_END:
            agent = arg
            estimator.observe_talk(a_talk[agent])
            a_state[agent] = _WRAPUP
            a_since[agent] = now
            push(now + a_wrap[agent], _WRAP_END, agent)
        elif kind == _WRAP_END:
            agent = arg
            estimator.observe_wrap(a_wrap[agent])
            res.busy_s += now - a_busy_from[agent]
            if a_leaving[agent]:
                a_leaving[agent] = False
                a_logged[agent] = False
                a_state[agent] = _IDLE
                set_logged(now, logged - 1)
            else:
                agent_free(now, agent)
        elif kind == _BRIDGE:
            agent = arg
            estimator.observe_agent_answer(now - a_since[agent])
            bridge(now, int(a_slot[agent]), agent)
        elif kind == _RING_FAIL:
            agent = arg
            slot = int(a_slot[agent])
            res.abandoned += 1
            tracker.abandon(now)
            waits.append(hold)
            c_status[slot] = _FREE
            free_slots.append(slot)
            agent_free(now, agent)
        elif kind == _TICK:
            push(now + sc.tick_s, _TICK, 0)
            if now - last_decision[0] < sc.tick_s:
                continue  # an event decided less than a tick ago: nothing new to look at
        elif kind == _SHIFT:
            target = steps[arg].agents
            current = logged - int(np.count_nonzero(a_leaving))
            if target > current:
                log_in(now, target - current)
            elif target < current:
                log_out(now, current - target)
        decide(now)

    # Close the books at T: busy agents count up to T, logged time up to T.
    busy = a_logged & ((a_state == _TALKING) | (a_state == _WRAPUP))
    res.busy_s += float(np.sum(T - a_busy_from[busy]))
    set_logged(T, logged)
    res.waits = np.asarray(waits, dtype=np.float64)
    res.live_parties = traced
    return res


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
