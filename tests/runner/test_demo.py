"""``dialer demo`` as the README runs it: the JSON contract and its floor of figures."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_demo_json_from_another_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    out = subprocess.run(
        [sys.executable, "-m", "dialer.app.cli", "demo", "--json", "--contacts", "25"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert {"attempts", "outcomes", "unfinished", "abandon_rate", "occupancy"} <= set(doc)
    assert doc["attempts"] >= 20
    assert doc["unfinished"] == 0
    assert len([k for k, v in doc["outcomes"].items() if v]) >= 4
    # 25 contacts give about ten live answers: one abandon is 10%, so the cap itself is checked
    # where the figure means something (tests/runner/test_demo_figures.py, the demo's settings
    # over the whole shift); here the JSON must agree with its own counts
    team = doc["team"]
    assert team["abandoned"] <= team["live_answers"]
    if team["live_answers"]:
        assert team["abandon_rate"] == pytest.approx(
            team["abandoned"] / team["live_answers"], abs=1e-3
        )
    assert 0.0 <= doc["abandon_rate"] <= 1.0
    assert 0.0 < doc["occupancy"] <= 1.0
    assert list(tmp_path.iterdir()) == []  # the demo leaves nothing behind in the cwd


def test_demo_shift_prints_progress_and_draws_the_chart(tmp_path: Path) -> None:
    """A short shift as a user runs it: the live progress line, the predictive team's figures
    and the PNG of occupancy and abandon rate (the full shift is 60 simulated minutes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    env["TMPDIR"] = str(tmp_path)
    chart = tmp_path / "shift.png"
    out = subprocess.run(
        [sys.executable, "-m", "dialer.app.cli", "demo", "--minutes", "2", "--contacts", "60"]
        + ["--chart", str(chart)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "collections-agents: occupancy" in out.stderr  # the progress line
    assert "predictive team collections-agents (20 agents" in out.stdout
    assert f"chart of the shift (occupancy, abandon rate): {chart}" in out.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shift.png"]  # temp folder removed


def test_keep_running_demo_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer.app.cli", "demo", "--keep-running", "--http-port", "0"]
        + ["--contacts", "40", "--chart", str(tmp_path / "shift.png")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline and "console:" not in seen:  # the floor is up
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += proc.stderr.readline()
        assert "console:" in seen, seen
        time.sleep(2.0)  # dialling
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "demo finished" in stdout and "predictive team collections-agents" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shift.png"]  # temp folder gone
