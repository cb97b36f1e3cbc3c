"""The ``ivr`` command line: ``serve`` on port 0 with a graceful SIGTERM, ``flows``, ``say``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ivr_fakepbx import FakeAsterisk, Persona, header, run_tcp
from ivr_testkit import seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import IvrSession
from ivr.cli import cli


async def test_serve_port_zero_then_sigterm(store: Store, db_url: str) -> None:
    aid = seed_attempt(store, "satisfaction_survey")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr", "--db", db_url, "-v", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stderr is not None
    try:
        port = 0
        while not port:
            line = await asyncio.to_thread(proc.stderr.readline)
            assert line, "server exited"
            m = re.search(r"FastAGI on 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else 0
        pbx = FakeAsterisk(Persona(answers=["2"]))
        await run_tcp(port, pbx, header(f"satisfaction_survey?attempt={aid}"))
        assert pbx.variables["IVR_RESULT"] == "rated_2"
        proc.send_signal(signal.SIGHUP)  # reload the flows; the server keeps running
        seen = []
        while "flows reloaded" not in (line := await asyncio.to_thread(proc.stderr.readline)):
            assert line, "server exited on SIGHUP"
            seen.append(line)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        rest = "".join(seen) + proc.stderr.read()
        assert "shutting down" in rest and "FastAGI closed" in rest
        assert "session flow=satisfaction_survey" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    with store.session() as s:
        assert s.scalars(select(IvrSession)).one().result == "rated_2"


def test_flows_and_say_commands(db_url: str) -> None:
    r = CliRunner().invoke(cli, ["--db", db_url, "flows"])
    assert r.exit_code == 0, r.output
    assert "card_activation" in r.output and "missing" not in r.output
    r = CliRunner().invoke(cli, ["say", "amount", "10010.05"])
    assert r.output.split() == [
        "num-1",
        "unit-10k",
        "num-0",
        "num-1",
        "unit-10",
        "cur-yuan",
        "num-0",
        "num-5",
        "cur-fen",
    ]


def test_install_sounds(tmp_path: object) -> None:
    from pathlib import Path

    dest = Path(str(tmp_path))
    r = CliRunner().invoke(cli, ["install-sounds", str(dest)])
    assert r.exit_code == 0, r.output
    assert (dest / "zh" / "dialer" / "sh-sorry.wav").is_file()
    assert (dest / "en" / "dialer" / "mm-important.wav").is_file()
    assert "zh: bank-name says 示例银行 (shipped)" in r.output


def test_flows_fail_when_prompts_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.prompts import sounds_dir

    for lang in ("zh", "en"):
        shutil.copytree(sounds_dir() / lang, tmp_path / lang)
    (tmp_path / "zh" / "ca-offer.wav").unlink()
    monkeypatch.setenv("IVR_SOUNDS", str(tmp_path))
    r = CliRunner().invoke(cli, ["flows"])
    assert r.exit_code == 1, r.output
    assert "card_activation" in r.output and "missing prompts: zh/ca-offer" in r.output
