"""Issue 17, item 10: the live long-call floor on the simulated clock, one short run.

``scripts/bench_live_abandon.py`` is the acceptance (20 runs of 30 simulated minutes per
policy, pooled abandon rate against the 3% cap, runs over it, occupancy); this runs one of its
live runs, shortened, to keep the script's path working: the real runner, AMI adapter, tracker
and store against the simulated PBX (30 agents, talk lognormal mean 240 s), on the floor's
simulated clock, so the figures depend on the seed and not on the machine's load.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wilson_lower(abandoned: int, live: int, z: float) -> float:
    """Wilson score lower bound of a rate seen as ``abandoned`` of ``live`` (one-sided)."""
    p = abandoned / live
    z2n = z * z / live
    half = z * math.sqrt(p * (1.0 - p) / live + z2n / (4.0 * live))
    return max((p + z2n / 2.0 - half) / (1.0 + z2n), 0.0)


def test_the_lower_bound_tells_a_sample_from_a_broken_cap() -> None:
    assert wilson_lower(4, 124, 1.645) < 0.03 < wilson_lower(7, 124, 1.645)
    assert wilson_lower(0, 124, 1.645) == 0.0


MINUTES = 15.0


@pytest.mark.slow
#: ~15 s of CPU; a machine busy with other work only makes it take longer in real time
@pytest.mark.timeout(900)
async def test_the_long_call_floor_stays_under_the_cap_on_the_simulated_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALER_SECRET_KEY", "test-only-key")  # the script's own setdefault
    monkeypatch.setenv("DIALER_AMI_SECRET", "test-only-ami-secret")  # and the floor's
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from bench_live_abandon import AGENTS, LONG_TALK
    from bench_live_vs_rehearsal import live

    res = await live(
        MINUTES, None, "predictive", tmp_path, agents=AGENTS, talk=LONG_TALK, seed=1000
    )
    figures = {k: res[k] for k in ("abandoned", "live_answers", "abandon_rate", "occupancy")}
    print(f"long-call floor, {MINUTES:g} simulated minutes: {figures}")
    assert res["live_answers"] >= 100, figures  # the floor ran: ~7 live answers a minute
    # one run is a sample: the acceptance is the script's 20 runs (P(run over cap) <= 5%); one
    # run over 3% happens (4 of 124 seen in CI, 3.2%). This run fails when it shows, with 95%
    # confidence, a rate above the cap (Wilson lower bound; at 124 live answers: 7 or more)
    assert wilson_lower(res["abandoned"], res["live_answers"], 1.645) <= 0.03, figures
    assert res["occupancy"] >= 0.80, figures
    # nothing moved the clock with work pending, no AMI event was refused by the tracker
    assert (res["grace_expired"], res["illegal_transitions"]) == (0, 0), res
