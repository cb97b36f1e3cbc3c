"""``dialer demo`` as the README runs it: the JSON contract and its floor of figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert 0.0 <= doc["abandon_rate"] <= 0.03
    assert 0.0 < doc["occupancy"] <= 1.0
    assert list(tmp_path.iterdir()) == []  # the demo leaves nothing behind in the cwd
