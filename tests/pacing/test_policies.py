"""Policies: the guards, the shared limits, and what the predictive model reacts to."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, Mode, Pacing
from dialer.pacing import (
    AbandonCounts,
    AdaptiveBaseline,
    AgentState,
    CallInFlight,
    PacingInput,
    Predictive,
    PredictiveTuning,
    cold_start,
    make_policy,
    policy_for_campaign,
)
from dialer.pacing.policies import ErlangC, bound_slack, erlang_c, wilson_upper

IDLE, TALK, WRAP, PAUSED, RINGING = (
    AgentState.IDLE,
    AgentState.TALKING,
    AgentState.WRAPUP,
    AgentState.PAUSED,
    AgentState.RINGING,
)


def make_input(
    agents: list[tuple[AgentState, float]],
    calls: list[CallInFlight] = (),  # type: ignore[assignment]
    *,
    now: float = 0.0,
    settings: Pacing | None = None,
    abandons: AbandonCounts | None = None,
    samples: int = 400,
    **kw: int,
) -> PacingInput:
    s = settings or Pacing(calls_per_second=1000, max_lines_per_agent=5)
    est = dataclasses.replace(cold_start(s), samples=samples)  # past the warm-up
    return PacingInput.build(now, agents, list(calls), est, s, abandons=abandons, **kw)


def test_input_validation_and_counts() -> None:
    inp = make_input(
        [(IDLE, 3), (TALK, 40), (PAUSED, 100), (WRAP, 2)],
        [CallInFlight(5), CallInFlight(2, answered=True)],
    )
    assert (inp.active_agents, inp.idle_agents, inp.calls_in_flight, inp.callers_waiting) == (
        3,
        1,
        2,
        1,
    )
    assert not inp.agent_state.flags.writeable
    with pytest.raises(ValueError, match="differ in length"):
        PacingInput(
            now=0,
            agent_state=np.zeros(2, dtype=np.int8),
            agent_elapsed_s=np.zeros(3),
            call_age_s=np.zeros(0),
            call_answered=np.zeros(0, dtype=bool),
            estimates=inp.estimates,
            settings=inp.settings,
        )
    with pytest.raises(ValueError, match="subset"):
        AbandonCounts(window_live=2, window_abandoned=3)


def test_progressive_one_call_per_uncovered_idle_agent() -> None:
    pol = make_policy("progressive")
    inp = make_input([(IDLE, 0)] * 5 + [(PAUSED, 0)] * 3 + [(TALK, 10)], [CallInFlight(3)] * 2)
    assert pol.decide(inp) == 3
    assert make_policy("progressive").decide(make_input([(TALK, 5)], [CallInFlight(1)])) == 0


def test_power_ratio_per_idle_agent() -> None:
    s = Pacing(power_ratio=2.5, calls_per_second=1000, max_lines_per_agent=5)
    inp = make_input([(IDLE, 0)] * 4 + [(TALK, 9)] * 4, [CallInFlight(3)] * 2, settings=s)
    assert make_policy("power").decide(inp) == 10 - 2


def test_power_falls_back_to_progressive_at_its_abandon_cap() -> None:
    """The guard is the policy's own, so the rehearsal and the live runner share it."""
    s = Pacing(power_ratio=2.5, abandon_cap=0.03, calls_per_second=1000, max_lines_per_agent=5)
    agents = [(IDLE, 0.0)] * 4 + [(TALK, 9.0)] * 4
    pol = make_policy("power")
    for counts, want, mode in (
        (AbandonCounts(), 10, "power"),  # no live answer yet: no rate to guard
        (AbandonCounts(window_live=100, window_abandoned=2), 10, "power"),
        (AbandonCounts(window_live=100, window_abandoned=3), 4, "progressive"),  # at the cap
        (AbandonCounts(window_live=200, window_abandoned=3), 10, "power"),  # under again
    ):
        inp = make_input(agents, settings=s, abandons=counts)
        assert (pol.decide(inp), pol.mode(inp)) == (want, mode)
    assert make_policy("predictive").mode(inp) == "predictive"


def test_max_lines_per_agent_caps_every_agent_policy() -> None:
    s = Pacing(power_ratio=10, max_lines_per_agent=1.5, calls_per_second=1000)
    inp = make_input([(IDLE, 0)] * 4, [CallInFlight(1)] * 2, settings=s)
    assert make_policy("power").decide(inp) == 6 - 2
    assert make_policy("predictive").decide(inp) <= 4


def test_calls_per_second_token_bucket() -> None:
    s = Pacing(calls_per_second=5, max_lines_per_agent=5)
    pol = make_policy("progressive")
    agents = [(IDLE, 0.0)] * 20
    assert pol.decide(make_input(agents, settings=s, now=100.0)) == 5
    assert pol.decide(make_input(agents, settings=s, now=100.4)) == 2
    assert pol.decide(make_input(agents, settings=s, now=100.4)) == 0
    assert pol.decide(make_input(agents, settings=s, now=110.0)) == 5


def test_dialable_limits_the_answer() -> None:
    inp = make_input([(IDLE, 0)] * 6, dialable=2)
    assert make_policy("progressive").decide(inp) == 2


def test_broadcast_keeps_channels_busy() -> None:
    s = Pacing(channels=30, calls_per_second=1000)
    inp = make_input([], [CallInFlight(2)] * 8, settings=s, other_live_calls=12)
    assert make_policy("broadcast").decide(inp) == 10


def busy_floor(elapsed: float, n: int = 20) -> list[tuple[AgentState, float]]:
    """``n`` agents in wrap-up ``elapsed`` seconds into a 10 s wrap-up."""
    return [(WRAP, elapsed)] * n


def test_predictive_dials_for_agents_about_to_free_up() -> None:
    # Every agent is 9 s into a 10 s wrap-up: progressive sees nobody idle, predictive knows
    # they are all free in 1 s, long before any answer.
    inp = make_input(busy_floor(9.0))
    assert make_policy("progressive").decide(inp) == 0
    n = make_policy("predictive").decide(inp)
    assert n >= 20
    # Agents that have only just started talking (~90 s left) justify nothing.
    assert make_policy("predictive").decide(make_input([(TALK, 1.0)] * 20)) == 0


def test_predictive_weights_ringing_calls_by_age() -> None:
    agents = [(IDLE, 0.0)] * 10 + [(TALK, 60.0)] * 10
    young = make_input(agents, [CallInFlight(1.0)] * 25)
    old = make_input(agents, [CallInFlight(23.0)] * 25)  # past most live answers' ring times
    n_young = make_policy("predictive").decide(young)
    n_old = make_policy("predictive").decide(old)
    assert n_old > n_young


def test_predictive_is_deterministic_and_monotone_in_threshold() -> None:
    inp = make_input([(IDLE, 0.0)] * 6 + [(TALK, 80.0)] * 14, [CallInFlight(4.0)] * 8)
    a = make_policy("predictive").decide(inp)
    assert a == make_policy("predictive").decide(inp)
    lo = Predictive(PredictiveTuning(threshold=0.002)).decide(inp)
    hi = Predictive(PredictiveTuning(threshold=0.2)).decide(inp)
    assert lo <= a <= hi and lo < hi


def test_predictive_never_dials_less_than_progressive() -> None:
    rng = np.random.default_rng(8)
    states = [IDLE, TALK, WRAP, PAUSED, RINGING]
    for _ in range(200):
        n_agents = int(rng.integers(1, 30))
        agents = [
            (states[int(rng.choice(5, p=[0.3, 0.4, 0.15, 0.1, 0.05]))], float(rng.uniform(0, 200)))
            for _ in range(n_agents)
        ]
        calls = [
            CallInFlight(float(rng.uniform(0, 25)), bool(rng.random() < 0.1))
            for _ in range(int(rng.integers(0, 20)))
        ]
        ab = AbandonCounts(1000, int(rng.integers(0, 60)), 10, int(rng.integers(0, 5)))
        inp = make_input(agents, calls, abandons=ab)
        pred = make_policy("predictive").decide(inp)
        assert pred >= make_policy("progressive").decide(inp)


@pytest.mark.parametrize(
    ("abandons", "samples", "mode"),
    [
        (AbandonCounts(1000, 20, short_live=10, short_abandoned=3), 400, "brake"),
        (AbandonCounts(1000, 31, short_live=10, short_abandoned=0), 400, "cap-guard"),
        # the cap guard acts from the first answers, on the rate's upper bound
        (AbandonCounts(400, 13, short_live=10, short_abandoned=0), 400, "cap-guard"),
        (AbandonCounts(40, 2, short_live=10, short_abandoned=0), 400, "cap-guard"),
        (AbandonCounts(400, 10, short_live=10, short_abandoned=0), 400, "predictive"),
        (AbandonCounts(1000, 20, short_live=10, short_abandoned=1), 5, "warm-up"),
        (AbandonCounts(1000, 20, short_live=10, short_abandoned=1), 400, "predictive"),
    ],
)
def test_predictive_guards(abandons: AbandonCounts, samples: int, mode: str) -> None:
    # Half the floor idle, half about to finish wrap-up, 30 young calls ringing.
    agents = [(IDLE, 0.0)] * 10 + [(WRAP, 8.0)] * 10
    calls = [CallInFlight(3.0)] * 30
    pol = Predictive()
    n = pol.decide(make_input(agents, calls, abandons=abandons, samples=samples))
    assert pol.last_mode == mode
    normal = Predictive().decide(make_input(agents, calls, abandons=AbandonCounts(1000, 26)))
    if mode == "predictive":
        assert pol.last_threshold > pol.tuning.threshold_min
    else:
        # Guards switch to the most cautious threshold, not off: the floor keeps working.
        assert pol.last_threshold == pol.tuning.threshold_min
        assert 0 <= n < normal


def test_brake_can_fall_back_to_progressive() -> None:
    pol = Predictive(PredictiveTuning(brake_progressive=True))
    ab = AbandonCounts(1000, 20, short_live=10, short_abandoned=3)
    assert pol.decide(make_input(busy_floor(9.0), abandons=ab)) == 0
    assert pol.last_mode == "brake"


def test_predictive_min_team_dials_progressively() -> None:
    s = Pacing(min_agents_predictive=5, calls_per_second=1000, max_lines_per_agent=5)
    agents = [(WRAP, 9.0)] * 4 + [(PAUSED, 0.0)] * 3
    pol = Predictive()
    assert pol.decide(make_input(agents, settings=s)) == 0
    assert pol.last_mode == "min-team"
    assert Predictive().decide(make_input(agents + [(WRAP, 9.0)], settings=s)) > 0


def test_feedback_moves_the_threshold_with_the_realised_rate() -> None:
    pol = Predictive()
    agents = [(IDLE, 0.0)] * 20
    ths = []
    for abandons in (AbandonCounts(1000, 10), AbandonCounts(1000, 26), AbandonCounts(1000, 29)):
        pol.decide(make_input(agents, abandons=abandons))
        ths.append(pol.last_threshold)
    assert ths[0] > ths[1] > ths[2]


def test_adaptive_baseline_raises_level_when_agents_wait_and_drops_on_limit() -> None:
    pol = AdaptiveBaseline()
    agents = [(IDLE, 0.0)] * 10 + [(TALK, 30.0)] * 10
    for t in range(0, 16):
        pol.decide(make_input(agents, now=float(t)))
    assert pol.level == pytest.approx(1.5)  # 1 * (1 + 10 idle / 20 agents)
    for t in range(16, 61):
        pol.decide(make_input(agents, now=float(t)))
    assert pol.level == pytest.approx(3.0)  # clipped at the maximum level
    # Lines are level x (idle + in-call agents), counting calls with agents.
    assert pol.want(make_input(agents, now=61.0)) == 60 - 10
    pol.decide(make_input(agents, now=80.0, abandons=AbandonCounts(100, 4)))
    assert pol.level == 1.0  # over the 3% drop limit: hard limit


def test_erlang_c_formula() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    pol = ErlangC()
    load = pol.load_for(20, 100.0, 2.0, 0.03)
    assert 10 < load < 20
    p = erlang_c(20, load) * np.exp(-(20 - load) * 2.0 / 100.0)
    assert p == pytest.approx(0.03, abs=1e-6)


def test_erlang_c_paces_at_a_rate() -> None:
    pol = make_policy("erlang-c")
    agents = [(TALK, 30.0)] * 20
    total = sum(pol.decide(make_input(agents, now=float(t))) for t in range(0, 601))
    est = cold_start(Pacing())
    handle = est.talk.mean + est.wrap.mean
    rate = ErlangC().load_for(20, handle, 2.0, 0.03) / handle / est.answer_prob
    assert total == pytest.approx(rate * 600, abs=2)


def test_policy_registry_and_campaign_modes() -> None:
    with pytest.raises(ConfigError, match="unknown pacing policy"):
        make_policy("magic")
    base = {"name": "c1", "queue": "q", "flow": "f"}
    for mode, name in (
        (Mode.PREDICTIVE, "predictive"),
        (Mode.PROGRESSIVE, "progressive"),
        (Mode.POWER, "power"),
        (Mode.BROADCAST, "broadcast"),
    ):
        pol = policy_for_campaign(CampaignSpec.model_validate({**base, "mode": mode.value}))
        assert pol is not None and pol.name == name
    assert policy_for_campaign(CampaignSpec.model_validate({**base, "mode": "preview"})) is None


def test_ringing_agent_counts_as_busy() -> None:
    inp = make_input([(RINGING, 0.0)] + [(IDLE, 0.0)] * 2)
    assert make_policy("progressive").decide(inp) == 2


def test_feedback_is_stronger_for_small_teams() -> None:
    ab = AbandonCounts(1000, 27)  # 27 abandons where the Wilson bound allows ~21
    small, large = Predictive(), Predictive()
    small.decide(make_input([(IDLE, 0.0)] * 5, abandons=ab))
    large.decide(make_input([(IDLE, 0.0)] * 20, abandons=ab))
    assert small.last_threshold < large.last_threshold < large.tuning.threshold


def test_wilson_bound_and_its_slack() -> None:
    assert wilson_upper(0, 10, 1.96) == pytest.approx(0.2775, abs=1e-4)  # textbook value
    assert wilson_upper(3, 100, 0.0) == pytest.approx(0.03)
    assert wilson_upper(0, 0, 1.0) == 1.0
    for n in range(1, 400):
        for a in range(0, int(0.03 * n) + 1):
            assert (bound_slack(a, n, 0.03, 1.645) >= 0) == (wilson_upper(a, n, 1.645) <= 0.03)


_AGENT = st.tuples(
    st.sampled_from([IDLE, TALK, WRAP, PAUSED, RINGING]), st.floats(0.0, 600.0, allow_nan=False)
)
_CALL = st.builds(CallInFlight, st.floats(0.0, 25.0, allow_nan=False), st.booleans())


@st.composite
def _windows(draw: st.DrawFn) -> tuple[int, int]:
    live = draw(st.integers(1, 3000))
    return live, draw(st.integers(0, min(live, 200)))


@settings(max_examples=150, deadline=None)
@given(
    agents=st.lists(_AGENT, min_size=5, max_size=40),
    calls=st.lists(_CALL, max_size=30),
    window=_windows(),
)
def test_cap_guard_never_dials_more_once_the_bound_is_over_the_cap(
    agents: list[tuple[AgentState, float]], calls: list[CallInFlight], window: tuple[int, int]
) -> None:
    live, abandoned = window
    s = Pacing(calls_per_second=1000, max_lines_per_agent=5)

    def decide(ab: int) -> tuple[int, Predictive]:
        pol = Predictive()
        return pol.decide(
            make_input(agents, calls, settings=s, abandons=AbandonCounts(live, ab))
        ), pol

    n, pol = decide(abandoned)
    # one more abandon never raises the dial rate (threshold and guard move one way)
    if abandoned < live:
        assert decide(abandoned + 1)[0] <= n
    if wilson_upper(abandoned, live, pol.tuning.guard_z) > s.abandon_cap:
        # over the cap by the bound: never more than the same floor with no abandon at all,
        # and, once predictive pacing is on, at the most cautious threshold
        assert n <= decide(0)[0]
        active = sum(1 for st_, _ in agents if st_ is not PAUSED)
        idle = sum(1 for st_, _ in agents if st_ is IDLE)
        model_paced = active >= s.min_agents_predictive and 5 * active - len(calls) > max(
            idle - len(calls), 0
        )
        if model_paced:
            assert pol.last_mode == "cap-guard"
            assert pol.last_threshold == pol.tuning.threshold_min
