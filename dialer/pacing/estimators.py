"""Estimators fed from attempt outcomes; an immutable :class:`Estimates` snapshot feeds pacing.

Why this shape:
- The answer probability is a recent window (time- and count-limited) shrunk towards a prior:
  the prior is this hour band's history when there is enough of it, else the cold-start value.
  A drifting answer rate is followed within minutes; a quiet hour does not swing it wildly.
- "Answered" here means a *live* answer that needs an agent. A machine (AMD) is, for pacing, a
  call that never needs an agent: its release time goes to the "unanswered" distribution, and
  the machine share is kept apart for reports.
- Ring, talk and wrap-up times are empirical distributions of the recent samples blended with the
  prior's CDF (so the first minutes of a campaign are not driven by the handful of short calls
  that finish first). Conditional questions ("finishes within h given e already spent") are
  answered by :class:`GridDist`.
- Pure: the caller passes ``now`` (seconds on its clock; hour bands are ``now`` mod one day).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dialer.lists.campaigns import Pacing
from dialer.pacing.dists import DistKind, DistSpec, FloatArray, GridDist

DAY_S = 86400.0

#: Cold-start values for what a campaign file does not say (ring timeout and wrap-up it does).
COLD_START_ANSWER_RATE = 0.30
COLD_START_MACHINE_SHARE = 0.0
COLD_START_RING_ANSWERED = DistSpec(dist=DistKind.GAMMA, shape=4.0, scale=2.5, offset=2.0, max=24.0)
COLD_START_TALK = DistSpec(dist=DistKind.LOGNORMAL, mean=90.0, cv=1.0)


@dataclass(frozen=True)
class Estimates:
    """A snapshot of what pacing believes now. Immutable; cheap derived tables are cached."""

    answer_prob: float  # P(a dial ends in a live answer that needs an agent)
    machine_share: float  # answering machines among answered calls (reporting)
    ring_answered: GridDist  # originate -> live answer
    ring_unanswered: GridDist  # originate -> release, for calls that end without a live answer
    talk: GridDist
    wrap: GridDist
    hour_band: int | None = None
    samples: int = 0  # outcomes behind answer_prob's recent window (0 = pure prior)
    agent_answer_s: float = 0.0  # mean time an agent's phone rings before the bridge

    def __post_init__(self) -> None:
        if not 0.0 <= self.answer_prob <= 1.0:
            raise ValueError("answer_prob must be within [0, 1]")

    def answer_given_age(self, age_s: FloatArray, horizon_s: FloatArray) -> FloatArray:
        """P(a call that has rung ``age_s`` without result is live-answered within ``horizon_s``).

        Bayes on the call's fate: it is one that will be answered (prior ``p``) whose ring time
        exceeds its age, or one that will not be (``1-p``) not yet released. Broadcasts.
        """
        p = self.answer_prob
        a = np.asarray(age_s, dtype=np.float64)
        ra, ru = self.ring_answered, self.ring_unanswered
        f_a = ra.at(a)
        denom = p * (1.0 - f_a) + (1.0 - p) * (1.0 - ru.at(a))
        num = p * (ra.at(a + horizon_s) - f_a)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(denom > 1e-12, num / denom, 0.0)
        return np.asarray(np.minimum(np.maximum(q, 0.0), 1.0), dtype=np.float64)

    @cached_property
    def wrap_mean(self) -> float:
        return float(self.wrap.mean)


def cold_start(
    pacing: Pacing,
    *,
    answer_rate: float = COLD_START_ANSWER_RATE,
    machine_share: float = COLD_START_MACHINE_SHARE,
    ring_answered: DistSpec = COLD_START_RING_ANSWERED,
    talk: DistSpec = COLD_START_TALK,
) -> Estimates:
    """The estimates a campaign starts from: its own ring timeout and wrap-up, defaults else."""
    ring_timeout = DistSpec(dist=DistKind.CONST, value=pacing.ring_timeout_s)
    wrap = DistSpec(dist=DistKind.CONST, value=pacing.wrapup_s)
    return Estimates(
        answer_prob=answer_rate * (1.0 - machine_share),
        machine_share=machine_share,
        ring_answered=ring_answered.to_grid(),
        ring_unanswered=ring_timeout.to_grid(),
        talk=talk.to_grid(),
        wrap=wrap.to_grid(),
    )


@dataclass
class _Rate:
    """A Bernoulli rate: recent window (count and age limited) shrunk to a prior."""

    window: int
    window_s: float
    recent: deque[tuple[float, bool]] = field(default_factory=deque)
    hits: int = 0

    def add(self, now: float, hit: bool) -> None:
        self.recent.append((now, hit))
        self.hits += hit
        while len(self.recent) > self.window:
            self.hits -= self.recent.popleft()[1]

    def counts(self, now: float) -> tuple[int, int]:
        while self.recent and now - self.recent[0][0] > self.window_s:
            self.hits -= self.recent.popleft()[1]
        return self.hits, len(self.recent)


class PacingEstimator:
    """Learns from outcomes; :meth:`snapshot` gives the current :class:`Estimates`.

    Feed it:
    - :meth:`observe_ring` when a call's ring phase ends (live answer, machine, or any release
      without a live answer: no answer, busy, congestion...), with the seconds since originate;
    - :meth:`observe_talk` / :meth:`observe_wrap` when an agent's call / wrap-up ends.
    """

    def __init__(
        self,
        prior: Estimates,
        *,
        band_s: float = 3600.0,
        answer_window: int = 400,
        answer_window_s: float = 1800.0,
        answer_prior_weight: float = 20.0,
        band_min_samples: int = 200,
        dist_window: int = 1000,
        dist_prior_weight: float = 60.0,
        refresh_s: float = 30.0,
    ) -> None:
        self.prior = prior
        self.band_s = band_s
        self.answer_prior_weight = answer_prior_weight
        self.band_min_samples = band_min_samples
        self.dist_prior_weight = dist_prior_weight
        self.refresh_s = refresh_s
        self._answer = _Rate(answer_window, answer_window_s)
        self._machine = _Rate(answer_window, answer_window_s)
        self._bands: dict[int, list[int]] = {}  # band -> [live answers, dials]
        self._ring_ans: deque[float] = deque(maxlen=dist_window)
        self._ring_un: deque[float] = deque(maxlen=dist_window)
        self._talk: deque[float] = deque(maxlen=dist_window)
        self._wrap: deque[float] = deque(maxlen=dist_window)
        self._agent_answer: deque[float] = deque(maxlen=200)
        self._cache: Estimates | None = None
        self._cache_at = -math.inf
        self._dirty_dists = True
        self._dists: tuple[GridDist, GridDist, GridDist, GridDist] | None = None
        self._new_outcomes = False

    def band_of(self, now: float) -> int:
        return int((now % DAY_S) // self.band_s)

    # --- observations ------------------------------------------------------------------------

    def observe_ring(self, now: float, ring_s: float, *, live: bool, machine: bool = False) -> None:
        """A call's ring phase ended ``ring_s`` after originate: a live answer or not."""
        if machine and live:
            raise ValueError("a call is either a live answer or a machine")
        self._answer.add(now, live)
        band = self._bands.setdefault(self.band_of(now), [0, 0])
        band[0] += int(live)
        band[1] += 1
        if live or machine:
            self._machine.add(now, machine)
        (self._ring_ans if live else self._ring_un).append(max(float(ring_s), 0.0))
        self._dirty_dists = True
        self._new_outcomes = True

    def observe_talk(self, talk_s: float) -> None:
        self._talk.append(max(float(talk_s), 0.0))
        self._dirty_dists = True

    def observe_agent_answer(self, ring_s: float) -> None:
        """An agent answered ``ring_s`` after the queue rang them (AMI AgentConnect RingTime)."""
        self._agent_answer.append(max(float(ring_s), 0.0))

    def observe_wrap(self, wrap_s: float) -> None:
        self._wrap.append(max(float(wrap_s), 0.0))
        self._dirty_dists = True

    # --- estimates -----------------------------------------------------------------------------

    def answer_prob(self, now: float) -> tuple[float, int]:
        band = self._bands.get(self.band_of(now))
        if band is not None and band[1] >= self.band_min_samples:
            prior = band[0] / band[1]
        else:
            prior = self.prior.answer_prob
        hits, n = self._answer.counts(now)
        w = self.answer_prior_weight
        return (w * prior + hits) / (w + n), n

    def machine_share(self, now: float) -> float:
        hits, n = self._machine.counts(now)
        w = self.answer_prior_weight
        return (w * self.prior.machine_share + hits) / (w + n)

    def _mixed(self, prior: GridDist, samples: deque[float]) -> GridDist:
        if not samples:
            return prior
        arr = np.fromiter(samples, dtype=np.float64, count=len(samples))
        return GridDist.mix(prior, arr, self.dist_prior_weight)

    def snapshot(self, now: float) -> Estimates:
        """The current estimates.

        The answer probability follows every new outcome; the distributions are rebuilt at most
        every ``refresh_s`` (or on a new hour band).
        """
        band = self.band_of(now)
        c = self._cache
        stale = c is None or now - self._cache_at >= self.refresh_s or c.hour_band != band
        if not stale and not self._new_outcomes:
            return c  # type: ignore[return-value]
        if stale:
            if self._dirty_dists or self._dists is None:
                p = self.prior
                self._dists = (
                    self._mixed(p.ring_answered, self._ring_ans),
                    self._mixed(p.ring_unanswered, self._ring_un),
                    self._mixed(p.talk, self._talk),
                    self._mixed(p.wrap, self._wrap),
                )
                self._dirty_dists = False
            self._cache_at = now
        assert self._dists is not None
        ans, n = self.answer_prob(now)
        ra, ru, talk, wrap = self._dists
        self._cache = Estimates(
            answer_prob=float(ans),
            machine_share=float(self.machine_share(now)),
            ring_answered=ra,
            ring_unanswered=ru,
            talk=talk,
            wrap=wrap,
            hour_band=band,
            samples=n,
            agent_answer_s=(
                sum(self._agent_answer) / len(self._agent_answer)
                if self._agent_answer
                else self.prior.agent_answer_s
            ),
        )
        self._new_outcomes = False
        return self._cache
