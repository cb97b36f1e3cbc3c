"""``dialer report``: figures from store rows, JSON / CSV / text / PNG."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from dialer.app.cli import cli
from dialer.errors import ConfigError
from dialer.floor.service import Dialer
from dialer.lists.report import build_report, parse_bound

from .floorkit import SENSITIVE

NAME = "card-activation-test"


def test_build_report_figures(floor: Dialer) -> None:
    with floor.store.session() as s:
        r = build_report(s, NAME)
    assert r["attempts"] == 40 and r["answered"] == 25 and r["answer_rate"] == 25 / 40
    assert r["outcomes"] == {
        "abandoned": 2,
        "agent_handled": 14,
        "busy": 5,
        "completed": 4,
        "customer_hangup": 1,
        "machine": 4,
        "no_answer": 10,
    }
    assert r["results"] == {"activated": 4}
    assert r["abandon"] == {
        "live_answers": 21,
        "abandoned": 2,
        "rate": 2 / 21,
        "cap": 0.03,
        "hold_limit_s": 2.0,
        "within_cap": False,
    }
    # two agents, 7 calls each, 89 s talk, seen over 36 min + 89 s (+ one 10 s wrap-up)
    assert [a["agent"] for a in r["agents"]] == ["Local/1000@agents", "Local/1001@agents"]
    assert r["connects"] == 14
    assert r["agent_hours"] == pytest.approx(2 * 2259 / 3600, abs=1e-3)
    assert r["connects_per_agent_hour"] == pytest.approx(14 / (2 * 2259 / 3600), rel=1e-3)
    assert r["occupancy"] == pytest.approx((14 * 89 + 14 * 10) / (2 * 2259), rel=1e-3)
    # average handle time from the records: 89 s talk + the queue's 10 s (no disposition)
    assert r["handle_time"] == {
        "name": "all",
        "calls": 14,
        "talk_s": 14 * 89.0,
        "wrapup_s": 140.0,
        "aht_s": 99.0,
    }
    assert [a["aht_s"] for a in r["agents"]] == [99.0, 99.0]
    assert [q["name"] for q in r["handle_time_by_queue"]] == ["activation-agents"]
    assert len(r["abandoned_calls"]) == 2
    ev = r["abandoned_calls"][0]
    assert ev["answered_at"] == "2026-11-30T02:51:08+00:00"
    assert ev["greeting_end_at"] == "2026-11-30T02:51:10+00:00"
    assert ev["bridged_at"] is None and ev["message_played_at"] == "2026-11-30T02:51:12+00:00"
    assert ev["message_played"] is True and ev["wait_s"] == 2.0
    assert ev["phone"].count("*") >= 4
    steps = {(s["node"], s["outcome"]): s["count"] for s in r["ivr"]["steps"]}
    assert steps == {
        ("greeting", "done"): 5,
        ("verify_id", "ok"): 4,
        ("verify_id", "hangup"): 1,
        ("activate", "activated"): 4,
    }
    assert r["ivr"]["sessions"] == [
        {"flow": "card_activation", "status": "completed", "result": "activated", "count": 4},
        {"flow": "card_activation", "status": "hangup", "result": None, "count": 1},
    ]
    assert [(h["hour"], h["attempts"], h["answered"], h["abandoned"]) for h in r["hourly"]] == [
        ("2026-11-30T09:00+08:00", 20, 14, 0),
        ("2026-11-30T10:00+08:00", 20, 11, 2),
    ]
    assert r["hourly"][1]["abandon_rate"] == 2 / 7


def test_report_range_and_given_agent_hours(floor: Dialer) -> None:
    since, until = parse_bound("2026-11-30T10:00"), parse_bound("2026-11-30T11:00")
    with floor.store.session() as s:
        r = build_report(s, NAME, since=since, until=until, agent_hours=2.0)
    assert r["from"] == "2026-11-30T02:00:00+00:00" and r["attempts"] == 20
    assert r["abandon"]["rate"] == 2 / 7 and r["connects"] == 0
    assert r["agent_hours"] == 2.0 and r["agent_hours_basis"] == "given"
    assert r["connects_per_agent_hour"] == 0.0
    with pytest.raises(ConfigError):
        parse_bound("30/11/2026")
    with pytest.raises(ConfigError):
        with floor.store.session() as s:
            build_report(s, "no-such-campaign")


def test_report_cli_json_csv_text_chart(floor: Dialer, db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["--db", db_url, "report", NAME, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["abandon"]["abandoned"] == 2

    res = runner.invoke(cli, ["--db", db_url, "report", NAME, "--csv"], catch_exceptions=False)
    assert res.exit_code == 0
    rows = list(csv.reader(io.StringIO(res.output)))
    assert rows[0] == ["section", "key", "field", "value"]
    assert ["outcome", "abandoned", "count", "2"] in rows
    assert sum(1 for r in rows if r[0] == "abandoned_call" and r[2] == "message_played_at") == 2
    assert ["ivr_step", "card_activation/2:verify_id/hangup", "count", "1"] in rows

    chart = tmp_path / "hourly.png"
    res = runner.invoke(
        cli,
        [
            "--db",
            db_url,
            "report",
            NAME,
            "--from",
            "2026-11-30",
            "--to",
            "2026-12-01",
            "--chart",
            str(chart),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0
    assert "abandon rate 9.52% = 2 / 21 live answers" in res.output and "OVER CAP" in res.output
    assert "message" in res.output and "Hourly" in res.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(chart)
    assert img.shape[0] == 500 and img.shape[1] == 900
    rgb = img[..., :3]
    red = (rgb[..., 0] > 0.75) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)  # abandon bars
    blue = (rgb[..., 2] > 0.8) & (rgb[..., 0] < 0.3)  # answer-rate bars
    assert red.sum() > 500 and blue.sum() > 5000
    assert np.unique(rgb.reshape(-1, 3), axis=0).shape[0] > 20

    for out in (res.output, json.dumps(data), chart.read_bytes().decode("latin-1")):
        for secret in SENSITIVE:
            assert secret not in out


async def test_report_over_the_api(console: object) -> None:
    status, r = await console.request("GET", f"/api/campaigns/{NAME}/report?from=2026-11-30T10:00")  # type: ignore[attr-defined]
    assert status == 200 and r["attempts"] >= 20 and r["abandon"]["abandoned"] == 2
    status, err = await console.request("GET", f"/api/campaigns/{NAME}/report?from=yesterday")  # type: ignore[attr-defined]
    assert status == 400 and "date" in err["error"]


def test_report_of_a_campaign_with_no_attempts(floor: Dialer, db_url: str, tmp_path: Path) -> None:
    chart = tmp_path / "empty.png"
    res = CliRunner().invoke(
        cli,
        ["--db", db_url, "report", "preview-test", "--chart", str(chart)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0 and "attempts 0" in res.output and "occupancy -" in res.output
    assert chart.read_bytes()[:4] == b"\x89PNG"
    with floor.store.session() as s:
        r = build_report(s, "preview-test")
    assert (
        r["abandon"]["rate"] == 0.0 and r["connects_per_agent_hour"] is None and r["hourly"] == []
    )
