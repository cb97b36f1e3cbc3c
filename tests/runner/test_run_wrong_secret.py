"""``dialer run`` against a switch that refuses its login: one try, one clear line, exit 2 -
never a retry loop (a real switch with fail2ban would ban the dialer's address)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dialer.sim.clock import RealClock
from dialer.sim.pbx import SimPbx


async def test_dialer_run_stops_at_once_on_a_refused_login(sqlite_url: str, tmp_path: Path) -> None:
    pbx = SimPbx(clock=RealClock(1.0), secret="the-right-secret")
    port = await pbx.start("127.0.0.1", 0)
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"ami: {{port: {port}}}\n", encoding="utf-8")
    env = {**os.environ, "DIALER_AMI_SECRET": "a-wrong-secret", "PYTHONUNBUFFERED": "1"}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dialer",
            "--db",
            sqlite_url,
            "--settings",
            str(settings),
            "run",
            "--no-console",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:  # it did not stop by itself: never leave it running
                proc.kill()
                await proc.wait()
    finally:
        await pbx.stop()
    # it exited by itself (a retry loop never would), after one line
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert proc.returncode == 2, err.decode()
    errors = [line for line in lines if " ERROR " in line or line.startswith("error")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert "login refused for user 'dialer'" in errors[0] and "DIALER_AMI_SECRET" in errors[0]
    assert not [line for line in lines if "reconnect" in line or "Traceback" in line], lines
    assert "a-wrong-secret" not in err.decode() + out.decode()
