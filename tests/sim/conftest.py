"""Fixtures for the simulated PBX: a PBX on port 0 with a virtual clock, a raw AMI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from simpbx_helpers import SECRET, RawAmi

from dialer.sim import SimPbx, VirtualClock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"


@pytest.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    p = SimPbx(clock=VirtualClock(), secret=SECRET, record=True)
    await p.start(ami_port=0)
    yield p
    await p.stop()


@pytest.fixture
async def ami(pbx: SimPbx) -> AsyncIterator[RawAmi]:
    c = await RawAmi.connect(pbx.port)
    resp = await c.login()
    assert resp.get("Response") == "Success"
    yield c
    await c.close()
