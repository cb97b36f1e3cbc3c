"""Pacing: estimators, policies and the virtual-time rehearsal (pure numpy; clock and RNG in).

The live campaign runner builds a :class:`PacingInput` at each decision point and calls
``policy.decide(inp)``; see :mod:`dialer.pacing.types` for the contract and
:func:`policy_for_campaign` / :func:`make_policy` to get a policy.
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

__all__ = [
    "AGENT_POLICIES",
    "POLICIES",
    "SHORT_WINDOW_S",
    "AbandonCounts",
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
