"""Pacing: estimators, policies and the virtual-time rehearsal (pure numpy; clock and RNG in).

How the live campaign runner uses it (the rehearsal in :mod:`dialer.pacing.rehearsal` does the
same against virtual time)::

    spec = spec_of(row)                              # CampaignSpec
    policy = policy_for_campaign(spec)               # None for preview; one object per run
    estimator = PacingEstimator(cold_start(spec.pacing))
    tracker = AbandonTracker(spec.pacing.abandon_window.total_seconds())
    tracker.rebase(live_in_window, abandoned_in_window)   # from the store, at start

    # outcomes, as they happen (now = the runner's clock in seconds):
    estimator.observe_ring(now, ring_s, live=..., machine=...)  # ring phase over
    tracker.live_answer(now) / tracker.abandon(now)             # live answer / abandon
    estimator.observe_talk(talk_s)                              # agent's call over

    # every ~0.5-1 s and on every agent/call event:
    n = policy.decide(PacingInput.build(
        now, agents=[(AgentState.TALKING, secs_in_state), ...],
        calls=[CallInFlight(age_s, answered=False), ...],    # calls without an agent
        estimates=estimator.snapshot(now), settings=spec.pacing,  # hot-reloaded settings
        abandons=tracker.counts(now), dialable=hopper_ready))
    # originate n calls now

See :mod:`dialer.pacing.types` for the contract.
"""

from dialer.pacing.dists import DistKind, DistSpec, GridDist
from dialer.pacing.estimators import Estimates, PacingEstimator, cold_start
from dialer.pacing.policies import (
    AGENT_POLICIES,
    POLICIES,
    AdaptiveBaseline,
    Broadcast,
    ErlangC,
    Policy,
    Power,
    Predictive,
    PredictiveTuning,
    Progressive,
    make_policy,
    policy_for_campaign,
)
from dialer.pacing.types import (
    SHORT_WINDOW_S,
    AbandonCounts,
    AgentState,
    CallInFlight,
    PacingInput,
)
from dialer.pacing.windows import AbandonTracker

__all__ = [
    "AGENT_POLICIES",
    "POLICIES",
    "SHORT_WINDOW_S",
    "AbandonCounts",
    "AbandonTracker",
    "AdaptiveBaseline",
    "AgentState",
    "Broadcast",
    "CallInFlight",
    "DistKind",
    "DistSpec",
    "ErlangC",
    "Estimates",
    "GridDist",
    "PacingEstimator",
    "PacingInput",
    "Policy",
    "Power",
    "Predictive",
    "PredictiveTuning",
    "Progressive",
    "cold_start",
    "make_policy",
    "policy_for_campaign",
]
