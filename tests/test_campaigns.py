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
    assert "unchanged campaign" in r.output  # as last applied: nothing re-applied
    r = runner.invoke(cli, ["--db", db_url, "campaign", "list", "--json"])
    names = {c["name"] for c in json.loads(r.output)}
    assert {"card-activation-dec", "repayment-reminder-dec"} <= names
    r = runner.invoke(cli, ["--db", db_url, "campaign", "show", "card-activation-dec", "--json"])
    doc = json.loads(r.output)
    assert doc["spec"]["retry"]["busy"] == "10m"
    assert doc["spec"]["calling_window"]["start"] == "09:00"


def test_apply_checks_every_reference_and_ceiling(db_url: str, tmp_path: Path) -> None:
    """A flow typo, a prompt not installed and a limit over the settings' ceilings are refused
    at apply time in one line each, and nothing is written."""
    runner = CliRunner()
    text = (ROOT / "config" / "campaigns" / "card-activation-dec.yaml").read_text("utf-8")
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("flow: card_activation", "flow: card_activaton"), "utf-8")
    r = runner.invoke(cli, ["--db", db_url, "campaign", "apply", str(typo)])
    assert isinstance(r.exception, ConfigError)  # run_cli prints it as one line, exit 2
    assert str(r.exception) == (
        f"{typo}: flow: no IVR flow named 'card_activaton' (did you mean 'card_activation'?)"
    )

    sounds = tmp_path / "sounds"
    for lang in ("zh", "en"):  # every prompt but the apology said when the flow cannot run
        (sounds / lang).mkdir(parents=True)
        for wav in (ROOT / "sounds" / lang).glob("*.wav"):
            if wav.stem != "ivr-apology":
                (sounds / lang / wav.name).write_bytes(b"")
    fine = tmp_path / "fine.yaml"
    fine.write_text(text, "utf-8")
    r = runner.invoke(
        cli, ["--db", db_url, "campaign", "apply", str(fine)], env={"IVR_SOUNDS": str(sounds)}
    )
    assert "dialplan prompts not installed: zh/ivr-apology" in str(r.exception)

    over = tmp_path / "over.yaml"
    over.write_text(text.replace("abandon_cap: 0.03", "abandon_cap: 0.05"), "utf-8")
    r = runner.invoke(cli, ["--db", db_url, "campaign", "apply", str(over)])
    assert "pacing.abandon_cap 0.05 is above the ceiling 0.03" in str(r.exception)
    r = runner.invoke(cli, ["--db", db_url, "campaign", "list", "--json"])
    assert json.loads(r.output) == []


def test_a_new_file_without_state_is_applied_paused(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "quiet.yaml"
    f.write_text("name: quiet\nmode: progressive\nqueue: q\n", "utf-8")
    r = CliRunner().invoke(cli, ["--db", db_url, "campaign", "apply", str(f)])
    assert r.exit_code == 0 and "created campaign quiet (paused)" in r.output
