"""A personal callback in the simulated PBX, through the shipped dialplan: its agent first (the
personal queue restricted by QUEUE_MIN/MAX_PENALTY to that member), any agent of the campaign
when that agent is not free (joinempty), as app_queue does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simpbx_helpers import outbound, varsets

from dialer.sim import SimPbx, VirtualClock

QUEUES = """\
[general]
persistentmembers = no

[sales]
strategy = ringall
joinempty = yes
member => PJSIP/p1,0,P1
member => PJSIP/p2,0,P2{paused}

[dialer-personal]
strategy = ringall
joinempty = penalty,paused,inuse,ringing,unavailable,invalid,unknown,wrapup
member => PJSIP/p1,1,P1
member => PJSIP/p2,2,P2{paused}
"""


async def call(tmp_path: Path, *, personal: str | None, p2_paused: bool) -> SimPbx:
    qconf = tmp_path / "queues.conf"
    qconf.write_text(QUEUES.format(paused=",,,,yes" if p2_paused else ""), encoding="utf-8")
    pbx = SimPbx(clock=VirtualClock(), queues=qconf, record=True)
    req = outbound("+8613800006666", "pc-1", queue="sales", hold=10)
    if personal is not None:
        req = dataclasses.replace(
            req,
            variables=(
                *req.variables,
                ("DIALER_PERSONAL_QUEUE", "dialer-personal"),
                ("DIALER_PERSONAL_PENALTY", personal),
            ),
        )
    pbx.engine.spawn(pbx.engine.originate(req))
    await pbx.clock.advance(20)
    return pbx


def connects(pbx: SimPbx) -> list[tuple[str, str]]:
    return [(e.get("Queue"), e.get("Interface")) for e in pbx.events if e.name == "AgentConnect"]


def rung(pbx: SimPbx) -> set[str]:
    return {str(e.get("Interface")) for e in pbx.events if e.name == "AgentCalled"}


async def test_the_personal_queue_rings_only_the_agent_in_the_penalty_range(
    tmp_path: Path,
) -> None:
    for penalty, agent in (("2", "PJSIP/p2"), ("1", "PJSIP/p1")):
        pbx = await call(tmp_path, personal=penalty, p2_paused=False)
        assert connects(pbx) == [("dialer-personal", agent)]
        assert rung(pbx) == {agent}  # ringall: the other member is never rung
        await pbx.stop()


async def test_an_agent_not_free_sends_the_call_to_any_agent_of_the_campaign(
    tmp_path: Path,
) -> None:
    pbx = await call(tmp_path, personal="2", p2_paused=True)
    assert connects(pbx) == [("sales", "PJSIP/p1")]
    joins = [e.get("Queue") for e in pbx.events if e.name == "QueueCallerJoin"]
    assert joins == ["sales"]  # the personal queue refused the join: no abandon there
    assert "DIALER_MSG" not in varsets(pbx.events, "pc-1")  # no safe-harbour message
    await pbx.stop()


async def test_without_a_personal_agent_the_campaign_queue_as_before(tmp_path: Path) -> None:
    pbx = await call(tmp_path, personal=None, p2_paused=False)
    assert [q for q, _ in connects(pbx)] == ["sales"]
    assert rung(pbx) == {"PJSIP/p1", "PJSIP/p2"}
    await pbx.stop()
