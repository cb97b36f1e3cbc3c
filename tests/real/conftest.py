"""Fixtures for the real switch: a cached Asterisk 22 build, one instance per test, and the
product (dialer core, campaign runner, FastAGI server) wired to it on free ports.

These tests skip only when no Asterisk tarball exists (``../shared/asterisk/src``); in CI
(``CI=true``) a missing tarball or a failed build is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import import_contacts
from dialer.store import Store

from .pbx import Asterisk, NoAsterisk, build
from .tap import AmiTap

#: The called party: Local/<E.164>@customer. The last three digits choose the persona.
#: Timings of the DTMF personas follow the prompts of config/flows/card_activation.yaml
#: (greeting 5.3 s - hello-this-is, bank-name, ca-greeting - not interruptible; enter-id-last6
#: 3.5 s and the offer menu interruptible).
PARTIES = r"""
[customer]
exten => _+X.,1,NoOp(called party ${EXTEN})
 same => n,GotoIf(${DIALPLAN_EXISTS(persona,${EXTEN:-3},1)}?persona,${EXTEN:-3},1)
 same => n,Goto(persona,default,1)

[persona]
; a live person who answers after a short ring and stays until the other side hangs up
exten => default,1,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Wait(120)
 same => n,Hangup()
exten => 486,1,Busy(5)
exten => 503,1,Congestion(5)
exten => 480,1,Ringing()
 same => n,Wait(3600)
exten => 404,1,Hangup(1)
; answers, then hangs up after 3 s
exten => 602,1,Answer()
 same => n,Wait(3)
 same => n,Hangup()
; answering machine: a long greeting (AMD: MACHINE / LONGGREETING)
exten => 600,1,Answer()
 same => n,Playback(vm-intro)
 same => n,Wait(3)
 same => n,Hangup()
; a person: a short word, then listens (AMD: HUMAN)
exten => 601,1,Answer()
 same => n,Playback(hello)
 same => n,Wait(60)
 same => n,Hangup()
; card activation, right ID digits during the (interruptible) ID prompt, then 1
exten => 701,1,Answer()
 same => n,Wait(7)
 same => n,SendDTMF(123456,120)
 same => n,Wait(4)
 same => n,SendDTMF(1)
 same => n,Wait(30)
 same => n,Hangup()
; wrong ID digits, three times
exten => 702,1,Answer()
 same => n,Wait(7)
 same => n,SendDTMF(000000,120)
 same => n,Wait(5)
 same => n,SendDTMF(000000,120)
 same => n,Wait(5)
 same => n,SendDTMF(000000,120)
 same => n,Wait(40)
 same => n,Hangup()
; no input at all
exten => 703,1,Answer()
 same => n,Wait(90)
 same => n,Hangup()
; the right digits, but typed during the greeting (not interruptible): lost; then silence
exten => 704,1,Answer()
 same => n,Wait(1)
 same => n,SendDTMF(123456,120)
 same => n,Wait(90)
 same => n,Hangup()
; right digits, then 0 for an agent (IVR transfer to the queue)
exten => 705,1,Answer()
 same => n,Wait(7)
 same => n,SendDTMF(123456,120)
 same => n,Wait(4)
 same => n,SendDTMF(0)
 same => n,Wait(60)
 same => n,Hangup()
; hangs up in the middle of the flow (after the ID prompt)
exten => 706,1,Answer()
 same => n,Wait(7)
 same => n,SendDTMF(123456,120)
 same => n,Wait(2)
 same => n,Hangup()

; Agents reached as Local channels: answer, talk 4 s, hang up. No extension "ghost*":
; such members are INVALID (QueueMemberStatus Status 4).
[test-agents]
; answers, talks 10 s: a personal callback's agent (rung first, waits for the customer)
exten => agent05,1,Answer()
 same => n,Wait(10)
 same => n,Hangup()
exten => agent01,1,Answer()
 same => n,Wait(4)
 same => n,Hangup()
exten => agent02,1,Answer()
 same => n,Wait(4)
 same => n,Hangup()
exten => agent03,1,Answer()
 same => n,Wait(4)
 same => n,Hangup()
exten => agent04,1,Answer()
 same => n,Wait(4)
 same => n,Hangup()
; rings, never answers
exten => deaf01,1,Ringing()
 same => n,Wait(120)
"""

#: Test queues, inheriting the project's [agent-queue](!) template.
QUEUES = """
[sales](agent-queue)
wrapuptime = 1
member => Local/agent01@test-agents/n,0,Agent 01
member => Local/agent02@test-agents/n,0,Agent 02

[ghosts](agent-queue)
wrapuptime = 1
member => Local/ghost01@test-agents/n,0,Ghost 01
member => Local/ghost02@test-agents/n,0,Ghost 02
member => PJSIP/nobody01,0,Phone 01

[pausedq](agent-queue)
wrapuptime = 1
member => Local/agent03@test-agents/n,0,Agent 03,,,,yes

[deaf](agent-queue)
timeout = 3
member => Local/deaf01@test-agents/n,0,Deaf 01

[wrapq](agent-queue)
wrapuptime = 8
member => Local/agent04@test-agents/n,0,Agent 04

; no static member: agents join it from their desktop (QueueAdd)
[deskq](agent-queue)
wrapuptime = 1
"""


@pytest.fixture(scope="session")
def asterisk_prefix() -> Path:
    try:
        return build()
    except NoAsterisk as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-switch tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def asterisk(asterisk_prefix: Path, tmp_path: Path) -> Iterator[Asterisk]:
    ast = Asterisk(asterisk_prefix, tmp_path / "asterisk", parties=PARTIES, queues=QUEUES)
    os.environ["DIALER_AMI_SECRET"] = ast.secret
    ast.start()
    try:
        yield ast
    finally:
        ast.stop()


#: 24-hour window: CI runs at any hour; compliance of windows is tested elsewhere.
ALL_DAY = {
    "start": "00:00",
    "end": "24:00",
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "skip_holidays": False,
}


def campaign(name: str, mode: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "state": "running",
        "mode": mode,
        "queue": "sales",
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "max_attempts": 1,
        "retry": {},
        "calling_window": ALL_DAY,
        "pacing": {"ring_timeout_s": 15, "wrapup_s": 1, "calls_per_second": 20},
    }
    pacing = kw.pop("pacing", {})
    doc.update(kw)
    doc["pacing"].update(pacing)
    return doc


def spawn(tmp: Path, name: str, *argv: str) -> subprocess.Popen[bytes]:
    """``python -m <argv>`` (``dialer ...``, ``ivr ...``) as its own process, output to
    ``tmp/<name>.log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT, env=env
        )


def phone(code: str, i: int = 0) -> str:
    """An E.164 mobile whose last three digits pick the persona in PARTIES."""
    return f"+86139{i:05d}{code}"


def load(store: Store, tmp: Path, doc: dict[str, Any], rows: list[dict[str, str]]) -> None:
    spec = parse_campaign(doc)
    path = tmp / f"{spec.name}.csv"
    cols = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        report = import_contacts(s, row, path, default_region="CN", now=dt.datetime.now(dt.UTC))
        assert report.imported == len(rows), report


class RealFloor:
    """The product on a real Asterisk: FastAGI server, dialer core and runner, wall clock."""

    def __init__(
        self,
        store: Store,
        ast: Asterisk,
        *,
        ami_port: int | None = None,
        agi: bool = True,
        agi_url: str | None = None,
        tick_s: float = 0.25,
        alerts: Any = None,
    ) -> None:
        self.store = store
        self.ast = ast
        self.alerts = alerts  # an AlertsConfig: the floor gets its alert desk
        self.ami_port = ami_port or ast.ami_port
        self.agi = agi
        self.agi_url = agi_url
        self.tick_s = tick_s
        self.ivr: Any = None

    async def __aenter__(self) -> RealFloor:
        from dialer.app.compose import FloorRoot
        from dialer.settings import CallingHours, Ceilings, Settings
        from dialer.telephony.ami.adapter import AMIClient
        from ivr.engine import Services
        from ivr.fastagi import FastAGIServer
        from ivr.flow import FlowLibrary
        from ivr.record import GroupCommitRecorder

        # CI runs at any hour: the calling-hours ceiling opens the whole day, as ALL_DAY does
        settings = Settings(
            compliance=Ceilings(calling_hours=CallingHours(start="00:00", end="24:00"))
        )
        if self.agi:
            services = Services(
                library=FlowLibrary.load(None),
                recorder=GroupCommitRecorder(self.store, lambda: dt.datetime.now(dt.UTC)),
                store=self.store,
                clock=lambda: dt.datetime.now(dt.UTC),
            )
            self.ivr = FastAGIServer(services, host="127.0.0.1", port=0)
            await self.ivr.start()
            url = f"agi://127.0.0.1:{self.ivr.port}"
        else:
            url = self.agi_url or "agi://127.0.0.1:1"  # nothing listens there
        client = AMIClient("127.0.0.1", self.ami_port, settings.ami.username, self.ast.secret)
        self.root = FloorRoot(
            self.store, settings, client, agi_url=url, tick_s=self.tick_s, alerts=self.alerts
        )
        self.core = self.root.core
        self.dialer = self.root.dialer
        await self.root.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.root.stop(grace_s=3.0)
        if self.ivr is not None:
            await self.ivr.close(grace=1.0)

    async def run(self, *, quiet_s: float = 3.0, timeout: float = 90.0) -> None:
        """Dial until nothing has been in flight for ``quiet_s`` seconds."""
        task = asyncio.create_task(self.dialer.run(until_idle=True, quiet_s=quiet_s))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            self.dialer.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            raise AssertionError("the campaign did not finish in time") from None
        await self.settle()

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait until every attempt row has its outcome: the tracker's writes are batched and
        may trail the calls' end by a few seconds on a loaded machine."""
        from sqlalchemy import select

        from dialer.store.models import Attempt

        def open_attempts() -> list[int]:
            with self.store.session() as s:
                return list(s.scalars(select(Attempt.id).where(Attempt.outcome.is_(None))))

        deadline = asyncio.get_running_loop().time() + timeout
        while left := await asyncio.to_thread(open_attempts):
            await self.core.batches.flush()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"attempts {left} still open after the run")
            await asyncio.sleep(0.2)


@pytest.fixture
async def real_floor(
    store: Store, asterisk: Asterisk, request: pytest.FixtureRequest
) -> AsyncIterator[RealFloor]:
    """The product on the switch. With ``DIALER_RECORD_AMI=<folder>`` the AMI traffic goes
    through a recording proxy and lands in ``<folder>/real-<test name>.txt``: the tool that
    made the ``tests/fixtures/ami/real-*.txt`` recordings."""
    folder = os.environ.get("DIALER_RECORD_AMI")
    if not folder:
        async with RealFloor(store, asterisk) as floor:
            yield floor
        return
    tap = AmiTap(asterisk.ami_port, record=Path(folder) / f"real-{request.node.name}.txt")
    await tap.start()
    try:
        async with RealFloor(store, asterisk, ami_port=tap.port) as floor:
            yield floor
    finally:
        await tap.close()
