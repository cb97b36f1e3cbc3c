"""Distributions and estimators: the numbers pacing relies on, checked against closed forms and
Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from dialer.lists.campaigns import Pacing
from dialer.pacing.dists import DistKind, DistSpec, GridDist, norm_cdf
from dialer.pacing.estimators import PacingEstimator, cold_start


def test_norm_cdf_matches_erf() -> None:
    xs = np.linspace(-6, 6, 241)
    exact = np.array([0.5 * (1 + math.erf(x / math.sqrt(2))) for x in xs])
    assert np.max(np.abs(norm_cdf(xs) - exact)) < 2e-7


@pytest.mark.parametrize(
    ("spec", "mean"),
    [
        (DistSpec(dist=DistKind.LOGNORMAL, mean=90, cv=1.0), 90.0),
        (DistSpec(dist=DistKind.GAMMA, shape=4, scale=2.5, offset=2), 12.0),
        (DistSpec(dist=DistKind.EXPONENTIAL, mean=30), 30.0),
        (DistSpec(dist=DistKind.UNIFORM, low=10, high=30), 20.0),
        (DistSpec(dist=DistKind.CONST, value=25), 25.0),
    ],
)
def test_grid_cdf_agrees_with_sampling(spec: DistSpec, mean: float) -> None:
    grid = spec.to_grid()
    assert grid.mean == pytest.approx(mean, rel=0.02)
    draws = spec.sample(np.random.default_rng(7), 40000)
    assert draws.mean() == pytest.approx(mean, rel=0.03)
    qs = np.quantile(draws, [0.1, 0.5, 0.9])
    # The grid CDF at the sample quantiles is the quantile level (Kolmogorov-style check).
    if spec.dist is not DistKind.CONST:
        assert np.allclose(grid.at(qs), [0.1, 0.5, 0.9], atol=0.015)


def test_max_clips_draws_and_cdf() -> None:
    spec = DistSpec(dist=DistKind.GAMMA, shape=4, scale=2.5, offset=2, max=24)
    assert spec.sample(np.random.default_rng(1), 100000).max() <= 24
    assert spec.to_grid().at(24.0) == pytest.approx(1.0)


def test_dist_spec_errors_are_clear() -> None:
    with pytest.raises(ValidationError, match="gamma needs scale"):
        DistSpec(dist=DistKind.GAMMA, shape=2)
    with pytest.raises(ValidationError, match="high must be above low"):
        DistSpec(dist=DistKind.UNIFORM, low=5, high=3)


def test_finish_within_is_memoryless_for_exponential() -> None:
    g = DistSpec(dist=DistKind.EXPONENTIAL, mean=60).to_grid()
    for e in (0.0, 30.0, 120.0):
        assert g.finish_within(np.array([e]), 20.0)[0] == pytest.approx(
            1 - math.exp(-20 / 60), abs=0.01
        )


def test_finish_within_long_tail_and_wrapup() -> None:
    talk = DistSpec(dist=DistKind.LOGNORMAL, mean=90, cv=1.0).to_grid()
    e = np.array([5.0, 80.0, 400.0])
    p = talk.finish_within(e, 15.0, extra=10.0)
    # Conditional on time spent, from the CDF directly.
    expect = (talk.at(e + 5.0) - talk.at(e)) / talk.sf(e)
    assert np.allclose(p, expect)
    # Wrap-up of 10 s leaves only 5 s of a 15 s horizon; a horizon under the wrap-up: never.
    assert talk.finish_within(e, 9.0, extra=10.0).max() == 0.0
    # Past the end of the grid the tail is memoryless with the mean, not 0 or 1.
    far = talk.finish_within(np.array([talk.x[-1] + 100.0]), 30.0)[0]
    assert far == pytest.approx(1 - math.exp(-30 / talk.mean), rel=1e-6)


def test_constant_wrap_finishes_exactly() -> None:
    wrap = DistSpec(dist=DistKind.CONST, value=10).to_grid()
    p = wrap.finish_within(np.array([2.0, 2.0, 9.5]), np.array([7.0, 8.5, 1.0]))
    assert list(p) == [0.0, 1.0, 1.0]


def test_answer_given_age_matches_monte_carlo() -> None:
    est = cold_start(Pacing(ring_timeout_s=25))
    rng = np.random.default_rng(3)
    n = 200000
    answered = rng.random(n) < est.answer_prob
    ring = DistSpec(dist=DistKind.GAMMA, shape=4, scale=2.5, offset=2, max=24).sample(rng, n)
    for age, h in ((0.0, 8.0), (10.0, 5.0), (18.0, 30.0)):
        alive = ~answered | (ring > age)  # still ringing at `age` (timeout is 25 s)
        hit = answered & (ring > age) & (ring <= age + h)
        mc = hit[alive].mean()
        assert est.answer_given_age(np.array([age]), h)[0] == pytest.approx(mc, abs=0.01)
    # A call that has rung past every live answer's ring time will not be answered.
    assert est.answer_given_age(np.array([24.5]), 10.0)[0] == 0.0
    # Older calls are less likely to be answered within the same horizon.
    q = est.answer_given_age(np.array([0.0, 8.0, 14.0, 20.0]), 25.0)
    assert np.all(np.diff(q) < 0)


def test_cold_start_takes_the_campaign_settings() -> None:
    est = cold_start(Pacing(ring_timeout_s=30, wrapup_s=15))
    assert est.answer_prob == pytest.approx(0.30)
    assert est.wrap.mean == pytest.approx(15, abs=0.1)
    assert est.ring_unanswered.sf(29.9) == pytest.approx(1.0)
    assert est.ring_unanswered.sf(30.1) == pytest.approx(0.0)


def test_answer_rate_window_prior_and_bands() -> None:
    prior = cold_start(Pacing())
    e = PacingEstimator(prior, answer_window=400, answer_prior_weight=40, band_min_samples=500)
    assert e.snapshot(0.0).answer_prob == pytest.approx(0.30)
    for i in range(400):
        e.observe_ring(float(i), 10.0, live=i % 2 == 0)  # 50% over 400 outcomes
    p, n = e.answer_prob(400.0)
    assert n == 400
    assert p == pytest.approx((40 * 0.30 + 200) / 440)  # shrunk towards the cold start
    for i in range(400, 600):
        e.observe_ring(float(i), 10.0, live=i % 2 == 0)
    # The recent window is count- and time-limited: an hour later, with nothing new, only the
    # prior is left, and for band 0 the prior is now the band's own history (600 samples).
    assert e.answer_prob(600.0)[1] == 400
    p_later, n_later = e.answer_prob(600.0 + 1800.5)
    assert n_later == 0
    assert p_later == pytest.approx(0.5)
    assert e.answer_prob(3 * 3600.0)[0] == pytest.approx(0.30)  # another band: cold start


def test_distributions_learn_and_machine_share() -> None:
    prior = cold_start(Pacing())
    e = PacingEstimator(prior, dist_prior_weight=60, refresh_s=0.0)
    rng = np.random.default_rng(5)
    talks = rng.exponential(40.0, 1000)
    for t in talks:
        e.observe_talk(float(t))
    for i in range(300):
        machine = i % 3 == 0
        e.observe_ring(float(i), 6.0, live=not machine, machine=machine)
    snap = e.snapshot(1000.0)
    blended = (60 * 90.0 + 1000 * talks.mean()) / 1060
    assert snap.talk.mean == pytest.approx(blended, rel=0.05)
    assert snap.machine_share == pytest.approx((20 * 0 + 100) / 320, abs=1e-9)
    with pytest.raises(ValueError):
        e.observe_ring(1.0, 5.0, live=True, machine=True)


def test_snapshot_follows_outcomes_and_refreshes_distributions() -> None:
    e = PacingEstimator(cold_start(Pacing()), refresh_s=30.0)
    a = e.snapshot(10.0)
    assert e.snapshot(12.0) is a  # nothing new: the same snapshot
    e.observe_ring(11.0, 9.0, live=True)
    b = e.snapshot(20.0)
    # The answer probability follows every outcome; distributions wait for the refresh.
    assert b is not a and b.samples == 1 and b.answer_prob > a.answer_prob
    assert b.ring_answered is a.ring_answered
    c = e.snapshot(41.0)
    assert c.ring_answered is not a.ring_answered


def test_grid_mix_weights_prior_and_samples() -> None:
    prior = DistSpec(dist=DistKind.CONST, value=10).to_grid()
    mixed = GridDist.mix(prior, np.array([20.0, 20.0]), prior_weight=2.0)
    assert mixed.at(15.0) == pytest.approx(0.5)
    assert mixed.mean == pytest.approx(15.0, abs=0.2)


def test_abandon_tracker_windows() -> None:
    from dialer.pacing.windows import AbandonTracker

    tr = AbandonTracker(window_s=3600.0, short_s=60.0)
    for t in range(0, 100):
        tr.live_answer(float(t))
    tr.abandon(50.0)
    tr.abandon(99.0)
    c = tr.counts(100.0)
    assert (c.window_live, c.window_abandoned) == (100, 2)
    assert (c.short_live, c.short_abandoned) == (60, 2)  # from t=40 on
    later = tr.counts(3650.5)  # answers 0..50 and the abandon at 50 have left the window
    assert (later.window_live, later.window_abandoned, later.short_live) == (49, 1, 0)
    tr.rebase(10000, 250)
    assert tr.counts(3650.5).window_live == 10049
    forever = AbandonTracker(window_s=None)
    forever.live_answer(0.0)
    forever.abandon(2.0)
    assert forever.counts(1e9).window_rate == 1.0
    with pytest.raises(ValueError):
        tr.rebase(1, 2)


def test_abandon_tracker_rebased_from_the_shared_store() -> None:
    """Several workers: the store's counts replace what this worker recorded itself, and its
    outcomes after the read add to them."""
    from dialer.pacing.windows import AbandonTracker

    tr = AbandonTracker(window_s=3600.0, short_s=60.0)
    for t in range(10):
        tr.live_answer(float(t))
    tr.abandon(5.0)
    tr.rebase_cap(500, 20)  # the campaign, every worker (ours included)
    tr.rebase_short(40, 3)
    tr.live_answer(11.0)
    tr.abandon(11.0)
    c = tr.counts(12.0)
    assert (c.window_live, c.window_abandoned) == (501, 21)
    assert (c.short_live, c.short_abandoned) == (41, 4)
    with pytest.raises(ValueError):
        tr.rebase_short(1, 2)


def test_mixture_and_lognormal_with_sd_and_min() -> None:
    mix = DistSpec.model_validate(
        {
            "dist": "mixture",
            "parts": [
                {"weight": 1, "dist": "uniform", "low": 0.2, "high": 1.5},
                {"weight": 3, "dist": "const", "value": 25},
            ],
        }
    )
    draws = mix.sample(np.random.default_rng(2), 40000)
    assert np.mean(draws == 25.0) == pytest.approx(0.75, abs=0.01)
    assert mix.mean_value() == pytest.approx(0.25 * 0.85 + 0.75 * 25)
    assert mix.to_grid().at(2.0) == pytest.approx(0.25, abs=0.01)
    ln = DistSpec.model_validate({"dist": "lognormal", "mean": 9, "sd": 5, "min": 1.5, "max": 45})
    x = ln.sample(np.random.default_rng(3), 40000)
    assert x.min() >= 1.5 and x.max() <= 45
    assert np.std(x) == pytest.approx(5, rel=0.1)
    assert ln.to_grid().at(1.4) == 0.0
    with pytest.raises(ValidationError, match="weight"):
        DistSpec.model_validate({"dist": "mixture", "parts": [{"dist": "const", "value": 1}]})
