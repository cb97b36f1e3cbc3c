from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialer.app.cli import cli
from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, load_campaign_file, parse_campaign, parse_duration
from dialer.outcomes import Outcome

ROOT = Path(__file__).resolve().parent.parent


def test_sample_campaigns_validate() -> None:
    files = sorted((ROOT / "config" / "campaigns").glob("*.yaml"))
    assert files
    for f in files:
        spec = load_campaign_file(f)
        assert spec.retry[Outcome.BUSY] == dt.timedelta(minutes=10)
        assert CampaignSpec.model_validate(spec.to_document()) == spec


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("2h", 7200), ("30d", 2592000), (90, 90), ("1.5h", 5400)]
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_errors_name_file_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_campaign(
            {"name": "x", "queue": "q", "pacing": {"ring_timeout_s": 5}, "retry": {"bogus": "1h"}},
            "c.yaml",
        )
    text = str(err.value)
    assert "c.yaml: pacing.ring_timeout_s" in text
    assert "c.yaml: retry.bogus" in text


def test_window_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="end must be after start"):
        parse_campaign(
            {"name": "x", "queue": "q", "calling_window": {"start": "20:00", "end": "09:00"}}
        )


def test_apply_list_show(db_url: str) -> None:
    runner = CliRunner()
    files = [str(p) for p in sorted((ROOT / "config" / "campaigns").glob("*.yaml"))]
    r = runner.invoke(cli, ["--db", db_url, "campaign", "apply", *files])
    assert r.exit_code == 0, r.output
    assert "created campaign card-activation-dec" in r.output
    r = runner.invoke(cli, ["--db", db_url, "campaign", "apply", files[0]])
    assert "updated campaign" in r.output
    r = runner.invoke(cli, ["--db", db_url, "campaign", "list", "--json"])
    names = {c["name"] for c in json.loads(r.output)}
    assert {"card-activation-dec", "repayment-reminder-dec"} <= names
    r = runner.invoke(cli, ["--db", db_url, "campaign", "show", "card-activation-dec", "--json"])
    doc = json.loads(r.output)
    assert doc["spec"]["retry"]["busy"] == "10m"
    assert doc["spec"]["calling_window"]["start"] == "09:00"
