"""``dialer sim-pbx`` as a process: binds port 0, logs in, answers at speed x20, drops AMI
connections on SIGUSR1, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from simpbx_helpers import RawAmi

ROOT = Path(__file__).resolve().parents[2]


async def test_sim_pbx_command_runs_a_scenario() -> None:
    env = {**os.environ, "DIALER_AMI_SECRET": "cli-test-secret"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from dialer.app.cli import main; main()",
        "sim-pbx",
        "--ami-port",
        "0",
        "--speed",
        "20",
        "--scenario",
        str(ROOT / "config" / "scenarios" / "sim-floor.yaml"),
        env=env,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        m = re.search(r"AMI on 127\.0\.0\.1:(\d+)", line)
        assert m, line
        c = await RawAmi.connect(int(m.group(1)))
        assert (await c.login("cli-test-secret"))["Response"] == "Success"
        c.send(
            ("Action", "Originate"),
            ("ActionID", "o1"),
            ("Channel", "Local/+8613800001001@customer"),  # persona: answers after 3 s
            ("Context", "park"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("ChannelId", "cli-1"),
        )
        for _ in range(100):  # 3 s at x20 = 0.15 s of wall time
            await c.pump(0.05)
            if c.events("OriginateResponse"):
                break
        orr = c.events("OriginateResponse")
        assert orr and orr[0]["Reason"] == "4"
        c.send(Action="QueueSummary", ActionID="qs", Queue="activation-agents")
        await c.pump(0.2)
        summary = [m for m in c.events("QueueSummary")]
        assert summary and summary[0]["LoggedIn"] == "10"  # the floor's 10 agents
        proc.send_signal(signal.SIGUSR1)  # an operator's fault: drop every AMI connection
        for _ in range(40):
            await c.pump(0.05)
            if c.reader.at_eof():
                break
        assert c.reader.at_eof()
        await c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
