"""Scenario files (validation, campaign overrides) and ``dialer simulate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialer import CONFIG_DIR
from dialer.app.cli import cli
from dialer.errors import ConfigError
from dialer.lists.campaigns import load_campaign_file
from dialer.pacing.dists import DistKind
from dialer.pacing.scenario import find_scenario, load_scenario

SCENARIOS = CONFIG_DIR / "scenarios"
METRICS = {
    "occupancy",
    "abandon_rate",
    "p_run_over_cap",
    "wait_mean_s",
    "wait_p95_s",
    "connects_per_agent_hour",
    "dials_per_agent_hour",
}


def test_anchor20_is_the_reference_scenario() -> None:
    sc = load_scenario(SCENARIOS / "anchor20.yaml")
    assert (sc.duration_s, sc.agents, sc.answer_rate, sc.hold_s) == (7200, 20, 0.30, 2)
    assert sc.ring_answered_s.dist is DistKind.GAMMA and sc.ring_answered_s.max == 24
    assert sc.ring_timeout_s == 25 and sc.wrap_s.value == 10
    assert sc.max_lines_per_agent == 5 and sc.calls_per_second is None
    p = sc.pacing()
    assert (p.abandon_cap, p.hold_limit_s, p.ring_timeout_s, p.wrapup_s) == (0.03, 2, 25, 10)


def test_required_scenarios_are_shipped() -> None:
    scs = {
        p.stem: load_scenario(p) for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("sim-")
    }
    assert {"anchor20", "team5", "team100", "answer-low", "answer-high"} <= set(scs)
    assert scs["team5"].agents == 5 and scs["team100"].agents == 100
    assert scs["answer-low"].answer_rate == 0.15 and scs["answer-high"].answer_rate == 0.60
    assert isinstance(scs["answer-drift"].answer_rate, tuple)
    assert isinstance(scs["churn"].agents, tuple)
    drift = scs["answer-drift"]
    assert drift.rate_at(3300) == pytest.approx((0.40 + 0.15) / 2)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("agents: 0", "agents: Value error, at least one agent"),
        ("talk_s: {dist: lognormal, mean: 90}", "lognormal needs cv"),
        ("no_answer_release_s: 10", "ring timeout must be at least 15"),
        ("answer_rate: 1.5", "answer_rate"),
        ("colour: blue", "colour: Extra inputs are not permitted"),
        ("agents: [{at_s: 100, agents: 3}]", "first step must be at_s 0"),
    ],
)
def test_invalid_scenarios_are_refused_with_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    base = (SCENARIOS / "anchor20.yaml").read_text(encoding="utf-8")
    key = body.split(":")[0]
    lines = [ln for ln in base.splitlines() if not ln.startswith(f"{key}:")]
    path = write(tmp_path, "\n".join(lines) + f"\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_find_scenario_by_name_or_path(tmp_path: Path) -> None:
    assert find_scenario("anchor20", SCENARIOS).name == "anchor20.yaml"
    with pytest.raises(ConfigError, match="no scenario 'nope'"):
        find_scenario("nope", SCENARIOS)


def test_campaign_pacing_replaces_the_scenario_keys(tmp_path: Path) -> None:
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: c\nmode: predictive\nqueue: q\n"
        "pacing: {abandon_cap: 0.02, hold_limit_s: 3, wrapup_s: 20, ring_timeout_s: 30,"
        " max_lines_per_agent: 2.5, calls_per_second: 4, min_agents_predictive: 8}\n",
        encoding="utf-8",
    )
    sc = load_scenario(SCENARIOS / "anchor20.yaml").with_campaign(load_campaign_file(camp))
    assert (sc.abandon_target, sc.hold_s, sc.ring_timeout_s) == (0.02, 3, 30)
    assert sc.wrap_s.value == 20 and sc.max_lines_per_agent == 2.5
    assert sc.calls_per_second == 4 and sc.min_agents_predictive == 8
    assert sc.pacing().wrapup_s == pytest.approx(20, abs=0.1)


def test_campaign_ring_timeout_keeps_early_releases() -> None:
    sc = load_scenario(SCENARIOS / "pbx-floor20.yaml")
    assert sc.ring_timeout_s == 25
    camp = load_campaign_file(CONFIG_DIR / "campaigns" / "card-activation-dec.yaml")
    longer = camp.model_copy(
        update={"pacing": camp.pacing.model_copy(update={"ring_timeout_s": 30.0})}
    )
    sc2 = sc.with_campaign(longer)
    assert sc2.ring_timeout_s == 30
    grid = sc2.no_answer_release_s.to_grid()
    assert grid.at(2.0) == pytest.approx(0.245, abs=0.01)  # busy/invalid still released early
    assert grid.at(29.9) == pytest.approx(0.245, abs=0.01)  # the rest ring until 30 s


def test_simulate_json_shape(tmp_path: Path) -> None:
    plot = tmp_path / "p.png"
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "anchor20",
            "--policy",
            "predictive",
            "--policy",
            "progressive",
            "--reps",
            "2",
            "--duration",
            "600",
            "--jobs",
            "1",
            "--json",
            "--plot",
            str(plot),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert list(doc) == ["policies"]
    assert list(doc["policies"]) == ["predictive", "progressive"]
    for metrics in doc["policies"].values():
        assert set(metrics) == METRICS
        assert all(isinstance(v, int | float) for v in metrics.values())
    assert doc["policies"]["progressive"]["abandon_rate"] == 0.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_table_and_campaign_option() -> None:
    campaign = CONFIG_DIR / "campaigns" / "card-activation-dec.yaml"
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            str(SCENARIOS / "team5.yaml"),
            "--policy",
            "power",
            "--reps",
            "1",
            "--duration",
            "300",
            "--campaign",
            str(campaign),
            "--jobs",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("scenario team5: 300 s, 1 replications, seed 0")
    assert lines[1].split()[:3] == ["policy", "occupancy", "abandon_rate"]
    assert lines[2].split()[0] == "power"


def test_simulate_refuses_unknown_scenario_and_policy() -> None:
    res = CliRunner().invoke(cli, ["simulate", "nope", "--reps", "1"])
    assert res.exit_code != 0 and "no scenario 'nope'" in str(res.exception)
    res = CliRunner().invoke(cli, ["simulate", "anchor20", "--policy", "magic"])
    assert res.exit_code == 2 and "magic" in res.output
