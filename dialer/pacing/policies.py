"""Pacing policies: ``Policy.decide(PacingInput) -> int`` calls to originate now.

Why the predictive policy looks the way it does (DESIGN.md section 3):

- Decide at the margin. For the k-th new call, suppose it is answered after a ring time ``r``
  (taken at a few quantiles of the live-answer ring-time distribution). It finds an agent if the
  agents free by ``r + hold`` outnumber the callers ahead of it: callers waiting now, calls in
  flight answered before ``r`` and the k-1 new calls before it answered before ``r``. Every term
  is a sum of independent Bernoullis, so a normal approximation gives ``P(no agent)`` cheaply.
  Dial while that probability stays under a threshold.
- Each ringing call is weighted by its chance of a live answer *given how long it has rung*;
  each busy agent by its chance of finishing (talk, then the known wrap-up) within the horizon
  *given the time already spent* - not by averages.
- The threshold is steered by the realised abandon rate over the cap window: every live answer
  adds ``setpoint`` to a slack, every abandon takes one away, and the threshold moves with
  ``exp(gain * slack)``. The model's bias is absorbed; the run's own rate hugs the setpoint
  (``abandon_cap * margin``).
- Few answers say little about the rate: 2 abandons in 40 answers is 5% or, by chance, 1%. So
  the slack is also counted against the cap less a confidence margin that shrinks with
  evidence - ``z * sqrt(cap * (1 - cap) / n)``, where the Wilson upper bound of the rate meets
  the cap - and the smaller slack steers. Early in a window (a campaign's first hour, a
  30-minute run of ~230 live answers on a long-call floor) that margin, not the setpoint,
  keeps single runs under the cap; over a 30-day window the setpoint does.
- Calls this policy will itself dial before the new call is answered compete with it: they
  enter as a Poisson demand at the policy's own recent dial rate. Demand is right-skewed, so
  the tail probability carries a skewness (Edgeworth) correction.
- Guards: fewer active agents than ``min_agents_predictive`` -> progressive. A cold start
  (fewer than ``warmup_samples`` recent outcomes), a short-window abandon spike (brake) and a
  cap window likely over the cap (its Wilson upper bound at ``guard_z``, from the first live
  answer; ``guard_z = 0`` and ``guard_min_live`` give the old guard on the observed rate)
  switch to the most cautious threshold, not to progressive: progressive drains the pipeline
  and idles the floor for minutes, while the cautious model still keeps abandons rare. Never
  more than
  ``max_lines_per_agent`` lines per active agent nor ``calls_per_second``; never fewer calls
  than progressive.

Baselines (for rehearsal comparisons): progressive, power (fixed ratio per idle agent), the
adaptive method of the best-known open dialer (its "ADAPT_HARD_LIMIT" mode with published
defaults) and an Erlang-C sizing. Broadcast keeps ``channels`` lines busy (IVR-only campaigns).
"""

from __future__ import annotations

import abc
import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, Mode
from dialer.pacing.dists import FloatArray, norm_cdf
from dialer.pacing.estimators import Estimates
from dialer.pacing.types import AbandonCounts, AgentState, PacingInput

_IDLE = int(AgentState.IDLE)
_RINGING = int(AgentState.RINGING)
_TALKING = int(AgentState.TALKING)
_WRAPUP = int(AgentState.WRAPUP)
_PAUSED = int(AgentState.PAUSED)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: New calls evaluated per block by the predictive policy (most decisions need one block).
_K_BLOCK = 12


class Policy(abc.ABC):
    """A pacing policy. One object per campaign; call :meth:`decide` at every decision point.

    ``decide`` applies the limits shared by every policy (lines per agent, calls per second,
    contacts available) to what :meth:`want` asks for. State kept between calls is derived only
    from inputs (their ``now`` included) and the policy's own answers.
    """

    name: ClassVar[str]
    #: Whether ``max_lines_per_agent`` applies (not for broadcast: it has no agents).
    uses_agents: ClassVar[bool] = True

    def __init__(self) -> None:
        self._tokens: float | None = None
        self._tokens_at = 0.0

    @abc.abstractmethod
    def want(self, inp: PacingInput) -> int:
        """Calls this policy would originate now, before the shared limits."""

    def mode(self, inp: PacingInput) -> str:
        """The mode this input is paced in (the console's ``effective_mode``)."""
        return EVENTS_LATE if self.late(inp) else self.name

    def late(self, inp: PacingInput) -> bool:
        """The switch's events are read too late for more than progressive dialling."""
        return self.uses_agents and self.name != "progressive" and inp.events_late

    def decide(self, inp: PacingInput) -> int:
        n = self.want(inp)
        s = inp.settings
        if self.uses_agents:
            if inp.events_late:
                # The agents and calls are as the switch showed them seconds ago: agents
                # counted free may have taken calls since. A model that dials ahead of them
                # would over-dial; one call per agent seen free is the most it may place.
                n = min(n, _progressive(inp))
            active = int(np.count_nonzero(inp.agent_state != _PAUSED))
            lines = math.floor(s.max_lines_per_agent * active + 1e-9) - inp.calls_in_flight
            n = min(n, lines)
        if inp.dialable is not None:
            n = min(n, inp.dialable)
        n = max(n, 0)
        # Token bucket for calls per second (burst of one second's worth).
        cps = s.calls_per_second
        burst = max(cps, 1.0)
        if self._tokens is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + max(inp.now - self._tokens_at, 0.0) * cps)
        self._tokens_at = inp.now
        n = min(n, int(self._tokens + 1e-9))
        self._tokens -= n
        return n


def _progressive(inp: PacingInput) -> int:
    """One call per idle agent not already covered by a call in flight."""
    idle = int(np.count_nonzero(inp.agent_state == _IDLE))
    return idle - inp.calls_in_flight


#: the effective mode of an agent policy while the switch's events are read late
EVENTS_LATE = "progressive (events late)"


class Progressive(Policy):
    name = "progressive"

    def want(self, inp: PacingInput) -> int:
        return _progressive(inp)


class Power(Policy):
    """``power_ratio`` lines per idle agent; progressive while over the abandon cap.

    Power mode has no model of its own, so at or over the cap (the cap window's rate, once it
    has a live answer) it places one call per idle agent until the window is under again. The
    same code runs live and in the rehearsal.
    """

    name = "power"
    fallback = "progressive"

    @staticmethod
    def over_cap(inp: PacingInput) -> bool:
        a = inp.abandons
        return a.window_live > 0 and a.window_rate >= inp.settings.abandon_cap

    def want(self, inp: PacingInput) -> int:
        if self.over_cap(inp):
            return _progressive(inp)
        idle = int(np.count_nonzero(inp.agent_state == _IDLE))
        return math.ceil(inp.settings.power_ratio * idle - 1e-9) - inp.calls_in_flight

    def mode(self, inp: PacingInput) -> str:
        if self.late(inp):
            return EVENTS_LATE
        return self.fallback if self.over_cap(inp) else self.name


class Broadcast(Policy):
    """IVR-only: keep ``channels`` lines busy (ringing plus live IVR calls)."""

    name = "broadcast"
    uses_agents = False

    def want(self, inp: PacingInput) -> int:
        return inp.settings.channels - inp.calls_in_flight - inp.other_live_calls


@dataclass(frozen=True)
class PredictiveTuning:
    """Knobs of :class:`Predictive`; the defaults are the tuned ones (scripts/bench_pacing.py)."""

    threshold: float = 0.045  # marginal P(no agent | answered) accepted at zero slack
    margin: float = 0.87  # the realised rate is steered to abandon_cap * margin
    gain: float = 0.2  # log-threshold change per abandon of slack
    bound_z: float = 1.645  # slack also counted against the Wilson bound at this z (0: off)
    slack_clip: float = 12.0  # anti wind-up, in abandons (at the reference team size)
    gain_team_ref: float = 20.0  # teams of this size or more use ``gain`` as is; smaller ...
    gain_scale_max: float = 4.0  # ... ones ``gain * ref / team``, at most this many times
    threshold_min: float = 0.002
    threshold_max: float = 0.6
    ring_points: int = 6  # quantiles of the ring-time distribution integrated over
    brake_min_abandons: int = 3  # short-window abandons before the brake may engage
    brake_factor: float = 3.0  # ... and a short-window rate above brake_factor * cap
    brake_progressive: bool = False  # brake to progressive (else: to threshold_min)
    guard_min_live: int = 0  # live answers in the cap window before the cap guard acts
    guard_z: float = 0.5  # ... when the Wilson upper bound at this z is over the cap
    warmup_samples: int = 30  # recent dial outcomes before the answer rate is trusted
    future_weight: float = 1.0  # weight of calls this policy will dial before the new one answers
    rate_window_s: float = 120.0  # the policy's own dial rate is measured over this window


#: The predictive policy before the confidence-bound guard (the baseline of
#: ``scripts/bench_live_abandon.py``): slower feedback on the setpoint alone, the cap guard on the
#: observed rate after 500 live answers. Over-dials windows of a few hundred live answers.
PREDICTIVE_V1 = PredictiveTuning(gain=0.1, bound_z=0.0, guard_min_live=500, guard_z=0.0)


def wilson_upper(abandoned: int, live: int, z: float) -> float:
    """Wilson score upper bound of a rate seen as ``abandoned`` of ``live`` (``z`` standard
    deviations, one-sided; ``z = 0`` gives the observed rate; 1.0 with no observation)."""
    if live <= 0:
        return 1.0
    p = abandoned / live
    z2n = z * z / live
    half = z * math.sqrt(p * (1.0 - p) / live + z2n / (4.0 * live))
    return min((p + z2n / 2.0 + half) / (1.0 + z2n), 1.0)


def bound_slack(abandoned: int, live: int, cap: float, z: float) -> float:
    """Abandons in hand before the Wilson upper bound at ``z`` reaches ``cap``: the Wilson
    interval inverts the score test, so ``wilson_upper(a, n, z) <= cap`` exactly when
    ``a <= cap * n - z * sqrt(n * cap * (1 - cap))`` (for ``a / n <= cap``)."""
    return cap * live - z * math.sqrt(live * cap * (1.0 - cap)) - abandoned


class Predictive(Policy):
    name = "predictive"

    def __init__(self, tuning: PredictiveTuning | None = None) -> None:
        super().__init__()
        self.tuning = tuning or PredictiveTuning()
        self._tables_for: int | None = None
        self._probs: FloatArray = np.zeros(0)
        self._ring_dist: object = None
        self._ring_r: FloatArray = np.zeros(0)
        self._ring_g: FloatArray = np.zeros(0)
        self._ring_int: FloatArray = np.zeros(0)
        self._dialled: deque[tuple[float, int]] = deque()
        self._dialled_sum = 0
        self._first_at: float | None = None
        self.last_threshold = self.tuning.threshold
        self.last_mode = "predictive"

    def threshold(self, inp: PacingInput) -> float:
        t = self.tuning
        ab = inp.abandons
        cap = inp.settings.abandon_cap
        slack = cap * t.margin * ab.window_live - ab.window_abandoned
        if t.bound_z > 0:
            slack = min(slack, bound_slack(ab.window_abandoned, ab.window_live, cap, t.bound_z))
        # One abandon weighs more in a small team's rate: the gain grows as the team shrinks.
        active = max(int(np.count_nonzero(inp.agent_state != _PAUSED)), 1)
        scale = min(max(t.gain_team_ref / active, 1.0), t.gain_scale_max)
        clip = t.slack_clip / scale
        slack = min(max(slack, -clip), clip)
        th = t.threshold * math.exp(t.gain * scale * slack)
        return min(max(th, t.threshold_min), t.threshold_max)

    def _tables(self, est: Estimates) -> tuple[FloatArray, FloatArray, FloatArray]:
        ra = est.ring_answered
        if self._tables_for != id(ra):
            m = self.tuning.ring_points
            self._probs = (np.arange(m) + 0.5) / m
            self._ring_r = ra.quantiles(self._probs)
            # G(r) = integral of F_R over [0, r]: expected answers before r per unit of dial
            # rate, for calls dialled uniformly over [0, r].
            cum = np.concatenate(
                ([0.0], np.cumsum((ra.cdf[1:] + ra.cdf[:-1]) * 0.5 * np.diff(ra.x)))
            )
            self._ring_int = np.interp(self._ring_r, ra.x, cum)
            self._tables_for = id(ra)
            self._ring_dist = ra  # keep it alive: the id must not be reused
        p = est.answer_prob
        return self._ring_r, p * self._probs, p * self._ring_int

    def dial_rate(self, now: float) -> float:
        """This policy's own recent dials per second (what it will likely keep doing)."""
        w = self.tuning.rate_window_s
        while self._dialled and now - self._dialled[0][0] > w:
            self._dialled_sum -= self._dialled.popleft()[1]
        if self._first_at is None:
            return 0.0
        return self._dialled_sum / max(min(now - self._first_at, w), 30.0)

    def decide(self, inp: PacingInput) -> int:
        n = super().decide(inp)
        if self._first_at is None:
            self._first_at = inp.now
        if n:
            self._dialled.append((inp.now, n))
            self._dialled_sum += n
        return n

    def want(self, inp: PacingInput) -> int:
        t = self.tuning
        s = inp.settings
        states = inp.agent_state
        active = int(np.count_nonzero(states != _PAUSED))
        prog = _progressive(inp)
        if active == 0:
            return 0
        if active < s.min_agents_predictive:
            self.last_mode = "min-team"
            return prog
        ab = inp.abandons
        cap = s.abandon_cap
        brake = ab.short_abandoned >= t.brake_min_abandons and ab.short_rate > t.brake_factor * cap
        if brake and t.brake_progressive:
            self.last_mode = "brake"
            return prog
        limit = math.floor(s.max_lines_per_agent * active + 1e-9) - inp.calls_in_flight
        if limit <= max(prog, 0):
            return prog
        if inp.estimates.samples < t.warmup_samples:
            # Cold start: the answer rate is still the prior's; dial cautiously until outcomes
            # arrive (a wrong prior would otherwise flood the floor on the first decisions).
            self.last_mode = "warm-up"
            theta = t.threshold_min
        elif brake:
            # A spike: the most cautious model-based dialling until it leaves the short window
            # (progressive would drain the pipeline and idle the floor for minutes).
            self.last_mode = "brake"
            theta = t.threshold_min
        elif self.over_cap(ab, cap):
            # Over the cap, or likely to be: the most cautious model-based dialling. Abandons
            # become rare, so the window rate falls back under the cap while agents keep working.
            self.last_mode = "cap-guard"
            theta = t.threshold_min
        else:
            self.last_mode = "predictive"
            theta = self.threshold(inp)
        self.last_threshold = theta
        return max(prog, self._marginal(inp, theta, limit))

    def over_cap(self, ab: AbandonCounts, cap: float) -> bool:
        """The cap guard: the window's rate (its Wilson upper bound at ``guard_z``) is over
        the cap, once the window holds ``guard_min_live`` live answers."""
        t = self.tuning
        live = ab.window_live
        return (
            live > 0
            and live >= t.guard_min_live
            and (wilson_upper(ab.window_abandoned, live, t.guard_z) > cap)
        )

    def _marginal(self, inp: PacingInput, theta: float, kmax: int) -> int:
        est = inp.estimates
        r, g, g_int = self._tables(est)
        # An agent must be free by then (and answer their phone within the hold limit).
        horizon = r + max(inp.settings.hold_limit_s - est.agent_answer_s, 0.0)
        states = inp.agent_state
        elapsed = inp.agent_elapsed_s
        # X = supply - demand by the horizon, as mean, variance and third cumulant (skew):
        # demand is a sum of many small chances (Poisson-like, right-skewed) and a plain
        # normal approximation would understate its upper tail, which is where the decision is.
        # Supply: idle agents plus busy agents finishing (talk + wrap-up) by the horizon.
        mu = np.full(horizon.shape, float(np.count_nonzero(states == _IDLE)))
        var = np.zeros(horizon.shape)
        k3 = np.zeros(horizon.shape)
        talking = (states == _TALKING) | (states == _RINGING)
        if talking.any():
            e = np.where(states[talking] == _RINGING, 0.0, elapsed[talking])
            p = est.talk.finish_within(e[:, None], horizon[None, :], extra=est.wrap_mean)
            pq = p * (1.0 - p)
            mu += p.sum(axis=0)
            var += pq.sum(axis=0)
            k3 += (pq * (1.0 - 2.0 * p)).sum(axis=0)
        wrapping = states == _WRAPUP
        if wrapping.any():
            p = est.wrap.finish_within(elapsed[wrapping][:, None], horizon[None, :])
            pq = p * (1.0 - p)
            mu += p.sum(axis=0)
            var += pq.sum(axis=0)
            k3 += (pq * (1.0 - 2.0 * p)).sum(axis=0)
        # Demand ahead of the new call: callers waiting, ringing calls answered before it.
        answered = inp.call_answered
        mu -= float(np.count_nonzero(answered))
        ringing_age = inp.call_age_s[~answered]
        if ringing_age.size:
            q = est.answer_given_age(ringing_age[:, None], r[None, :])
            qq = q * (1.0 - q)
            mu -= q.sum(axis=0)
            var += qq.sum(axis=0)
            k3 -= (qq * (1.0 - 2.0 * q)).sum(axis=0)
        # Calls this policy will dial in the meantime and that are answered before the new one
        # (Poisson at its own recent dial rate: every cumulant equals the mean).
        if self.tuning.future_weight > 0:
            future = self.tuning.future_weight * self.dial_rate(inp.now) * g_int
            mu -= future
            var += future
            k3 -= future
        # The k earlier calls of this batch, each answered before r with probability g.
        # P(no agent | answered) for the (k+1)-th new call, k = 0, 1, ...; it grows with k, so
        # look at a first block and only go further when the whole block is acceptable.
        gv = g * (1.0 - g)
        g3 = gv * (1.0 - 2.0 * g)
        start = 0
        while start < kmax:
            stop = min(kmax, start + _K_BLOCK if start else _K_BLOCK)
            k = np.arange(start, stop, dtype=np.float64)[:, None]
            over = _p_nonpositive(mu - k * g, var + k * gv, k3 - k * g3).mean(axis=1) > theta
            if over.any():
                return start + int(np.argmax(over))
            start = stop
        return kmax


def _p_nonpositive(mu: FloatArray, var: FloatArray, k3: FloatArray) -> FloatArray:
    """P(X <= 0) for an integer X with these cumulants: normal with continuity correction and a
    first Edgeworth (skewness) term, clipped to [0, 1]."""
    sd = np.sqrt(var + 1e-3)
    z = (0.5 - mu) / sd
    gamma = k3 / (sd * sd * sd)
    dens = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    p = norm_cdf(z) - dens * (gamma / 6.0) * (z * z - 1.0)
    return np.minimum(np.maximum(p, 0.0), 1.0)


class AdaptiveBaseline(Policy):
    """The best-known open dialer's adaptive mode (``ADAPT_HARD_LIMIT``, published defaults).

    Lines (ringing, waiting and with an agent) are kept at ``level`` x (idle + in-call agents).
    Every 15 s the level is multiplied by ``1 + (idle - waiting) / agents`` averaged over the last
    minute (intensity 0), clipped to [1, 3.0]. Over the 3% drop limit for the day (after 50
    calls, here ~15 live answers) the level is forced to 1.0; over 50% drops in the last minute
    (more than 20 calls, here ~6 live answers) it is halved.
    """

    name = "adaptive-baseline"
    UPDATE_S = 15.0
    AVERAGE_S = 60.0
    MAX_LEVEL = 3.0
    DROP_LIMIT = 0.03
    MIN_LIVE_FOR_LIMIT = 15
    MIN_LIVE_FOR_MINUTE = 6

    def __init__(self) -> None:
        super().__init__()
        self.level = 1.0
        self._samples: deque[tuple[float, float, float]] = deque()
        self._last_sample = -math.inf
        self._last_update: float | None = None

    def want(self, inp: PacingInput) -> int:
        states = inp.agent_state
        idle = int(np.count_nonzero(states == _IDLE))
        incall = int(np.count_nonzero((states == _TALKING) | (states == _RINGING)))
        agents = idle + incall
        now = inp.now
        if now - self._last_sample >= 1.0:
            self._samples.append((now, float(idle - inp.callers_waiting), float(agents)))
            self._last_sample = now
        while self._samples and now - self._samples[0][0] > self.AVERAGE_S:
            self._samples.popleft()
        if self._last_update is None:
            self._last_update = now
        elif now - self._last_update >= self.UPDATE_S:
            self._last_update = now
            self._update(inp)
        lines = inp.calls_in_flight + incall
        return math.ceil(self.level * agents - 1e-9) - lines

    def _update(self, inp: PacingInput) -> None:
        if self._samples:
            diff = sum(d for _, d, _ in self._samples) / len(self._samples)
            avg_agents = sum(a for _, _, a in self._samples) / len(self._samples)
            if avg_agents > 0:
                self.level *= 1.0 + diff / avg_agents
        self.level = min(max(self.level, 1.0), self.MAX_LEVEL)
        ab = inp.abandons
        if ab.short_live > self.MIN_LIVE_FOR_MINUTE and ab.short_rate > 0.5:
            self.level /= 2.0
        if ab.window_live > self.MIN_LIVE_FOR_LIMIT and ab.window_rate > self.DROP_LIMIT:
            self.level = 1.0
        self.level = max(self.level, 1.0)


def erlang_c(agents: int, load: float) -> float:
    """P(wait > 0) in M/M/agents at offered ``load`` erlangs (< agents)."""
    if load <= 0:
        return 0.0
    if load >= agents:
        return 1.0
    b = 1.0  # Erlang B by recursion
    for i in range(1, agents + 1):
        b = load * b / (i + load * b)
    return b / (1.0 - (load / agents) * (1.0 - b))


class ErlangC(Policy):
    """Open-loop dial rate so an Erlang-C model of the team meets the abandon cap.

    Offered load ``A`` is the largest with ``C(N, A) * exp(-(N - A) * hold / handle) <= cap``
    (the share of answers waiting longer than the hold limit); the dial rate is
    ``A / handle / answer_prob``. It does not look at who is idle: that is its weakness.
    """

    name = "erlang-c"

    def __init__(self) -> None:
        super().__init__()
        self._credit = 0.0
        self._last: float | None = None
        self._cache: dict[tuple[int, float, float, float], float] = {}

    def load_for(self, agents: int, handle_s: float, hold_s: float, cap: float) -> float:
        key = (agents, round(handle_s, 1), hold_s, cap)
        if key not in self._cache:
            lo, hi = 0.0, float(agents)
            for _ in range(50):
                mid = (lo + hi) / 2
                p = erlang_c(agents, mid) * math.exp(-(agents - mid) * hold_s / handle_s)
                lo, hi = (mid, hi) if p <= cap else (lo, mid)
            self._cache[key] = lo
        return self._cache[key]

    def want(self, inp: PacingInput) -> int:
        est = inp.estimates
        s = inp.settings
        agents = int(np.count_nonzero(inp.agent_state != _PAUSED))
        now = inp.now
        dt = 0.0 if self._last is None else max(now - self._last, 0.0)
        self._last = now
        if agents == 0 or est.answer_prob <= 0:
            return 0
        handle = max(est.talk.mean + est.wrap_mean, 1.0)
        load = self.load_for(agents, handle, s.hold_limit_s, s.abandon_cap)
        rate = load / handle / est.answer_prob
        self._credit = min(self._credit + rate * dt, float(agents))
        n = int(self._credit)
        self._credit -= n
        return n


POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (Progressive, Power, Predictive, AdaptiveBaseline, ErlangC, Broadcast)
}

#: Policies compared by ``dialer simulate`` by default (broadcast needs no agents: not compared).
AGENT_POLICIES = ("progressive", "power", "predictive", "adaptive-baseline", "erlang-c")

_MODE_POLICY = {
    Mode.PROGRESSIVE: "progressive",
    Mode.POWER: "power",
    Mode.PREDICTIVE: "predictive",
    Mode.BROADCAST: "broadcast",
}


def make_policy(name: str) -> Policy:
    """A fresh policy by name (one object per campaign run: policies keep feedback state)."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown pacing policy {name!r} (known: {', '.join(sorted(POLICIES))})"
        ) from None


def policy_for_campaign(spec: CampaignSpec) -> Policy | None:
    """The policy of a campaign's mode; ``None`` for preview (agents pull contacts)."""
    name = _MODE_POLICY.get(spec.mode)
    return None if name is None else make_policy(name)
