"""The demo's shift shows what predictive pacing is for: with the demo's own floor and campaign
settings (config/demo/floor.yaml, config/campaigns/repayment-reminder-dec.yaml) the predictive
team is busy at least 80% of its time and at most 3% of live answers are abandoned.

This test checks the same settings in the rehearsal engine (virtual time, the same pacing
policy), the shift's twin derived from those files here, over the demo's 60 minutes; the live
shift itself (simulated PBX, IVR, dialer and store on the demo's simulated clock) is held to the
same figures by tests/runner/test_demo_shift.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialer.lists.campaigns import load_campaign_file
from dialer.pacing.rehearsal import rehearse
from dialer.pacing.scenario import parse_scenario
from dialer.yamlfile import load_mapping

ROOT = Path(__file__).resolve().parents[2]
FLOOR = ROOT / "config" / "demo" / "floor.yaml"
CAMPAIGN = ROOT / "config" / "campaigns" / "repayment-reminder-dec.yaml"
SHIFT_S = 3600.0


def _dist(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k in ("dist", "mean", "sd", "min", "max")}


def demo_twin() -> dict[str, Any]:
    """The rehearsal scenario of the demo's predictive team, from the demo's files."""
    floor = load_mapping(FLOOR)
    spec = load_campaign_file(CAMPAIGN)
    party = floor["called_party"]
    (team,) = [g for g in floor["agents"] if g["queue"] == spec.queue]
    reached = 1.0 - party["invalid_share"] - party["busy_share"] - party["congestion_share"]
    pacing = spec.pacing
    return {
        "name": "demo-shift",
        "duration_s": SHIFT_S,
        "agents": team["count"],
        "answer_rate": reached * party["answer_probability"],
        "machine_rate": party["machine_share"],
        "amd_s": party["machine_greeting_s"]["mean"],
        "ring_answered_s": _dist(party["ring_s"]),
        "no_answer_release_s": {"dist": "const", "value": pacing.ring_timeout_s},
        "talk_s": _dist(team["talk_s"]),
        "wrap_s": {"dist": "const", "value": team["wrapup_s"]},
        "agent_answer_s": {"dist": "const", "value": team["answer_s"]["mean"]},
        "hold_s": pacing.hold_limit_s,
        "abandon_target": pacing.abandon_cap,
        "max_lines_per_agent": pacing.max_lines_per_agent,
        "min_agents_predictive": pacing.min_agents_predictive,
    }


def test_the_demo_shift_keeps_agents_busy_under_the_abandon_cap() -> None:
    assert load_campaign_file(CAMPAIGN).mode.value == "predictive"
    scenario = parse_scenario(demo_twin(), "demo-shift")
    summary, runs = rehearse(scenario, ["predictive"], reps=1, seed=11)["predictive"]
    figures = summary.as_dict()
    assert figures["occupancy"] >= 0.80, figures
    assert figures["abandon_rate"] <= 0.03, figures
    assert all(r.abandon_rate <= 0.04 for r in runs)  # no shift far over the cap
