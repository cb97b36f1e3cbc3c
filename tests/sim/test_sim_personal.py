"""A personal callback, agent first, in the simulated PBX through the shipped dialplan: an
Originate rings a simulated agent's phone into ``dialer-personal``, where the answered channel
waits; the customer's Originate with ``DIALER_AGENT`` = that channel is bridged to it
(``Bridge(...,x)``: the agent's channel ends with the bridge). An agent gone by then: the
customer hears the safe-harbour message. And app_queue's penalty bounds and ``joinempty``
condition lists, which a dialplan may use to reach one member."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simpbx_helpers import outbound, varsets

from dialer.sim import SimPbx, VirtualClock
from dialer.sim.engine import OriginateRequest, OriginateResult

QUEUES = """\
[general]
persistentmembers = no
autofill = yes

[sales]
strategy = ringall
joinempty = yes
member => PJSIP/p1,1,P1
member => PJSIP/p2,2,P2{paused}

[narrow]
strategy = ringall
joinempty = penalty,paused,inuse,ringing,unavailable,invalid,unknown,wrapup
member => PJSIP/p1,1,P1
member => PJSIP/p2,2,P2{paused}
"""


def sim(tmp_path: Path, *, p2_paused: bool = False) -> SimPbx:
    qconf = tmp_path / "queues.conf"
    qconf.write_text(QUEUES.format(paused=",,,,yes" if p2_paused else ""), encoding="utf-8")
    return SimPbx(clock=VirtualClock(), queues=qconf, record=True)


def agent_leg(iface: str, cid: str) -> OriginateRequest:
    return OriginateRequest(
        channel=iface,
        context="dialer-personal",
        exten="s",
        priority="1",
        timeout_ms=20000,
        callerid=("95588", "95588"),
        channel_id=cid,
        variables=(("DIALER_CAMPAIGN", "test"), ("DIALER_AGENT_WAIT", "40")),
        action_id="agent-1",
        is_async=True,
    )


async def ring(pbx: SimPbx, req: OriginateRequest, for_s: float = 3) -> OriginateResult:
    task = pbx.engine.spawn(pbx.engine.originate(req))
    await pbx.clock.advance(for_s)
    assert task.done()
    result: OriginateResult = task.result()
    return result


def customer_leg(agent_channel: str) -> OriginateRequest:
    req = outbound("+8613800006666", "pc-1", queue="sales", hold=2)
    return dataclasses.replace(req, variables=(*req.variables, ("DIALER_AGENT", agent_channel)))


async def test_the_agents_phone_rings_first_then_the_customer_is_bridged_to_it(
    tmp_path: Path,
) -> None:
    pbx = sim(tmp_path)
    e = pbx.engine
    agent = await ring(pbx, agent_leg("PJSIP/p1", "ag-1"))
    assert agent.success and agent.channel is not None  # the simulated agent answered
    name = agent.channel.name
    assert name.startswith("PJSIP/p1-")
    statuses = [e.get("Status") for e in pbx.events if e.name == "QueueMemberStatus"]
    assert statuses[:2] == ["6", "6"] and "2" in statuses  # ringing, then in use (both queues)
    assert agent.channel.alive  # waiting in dialer-personal
    e.spawn(e.originate(customer_leg(name)))
    await pbx.clock.advance(10)
    entered = [ev.get("Channel") for ev in pbx.events if ev.name == "BridgeEnter"]
    assert entered[0] == name and entered[1].startswith("Local/+8613800006666@customer")
    assert not any(ev.name in ("QueueCallerJoin", "AgentCalled") for ev in pbx.events)
    await pbx.clock.advance(60)  # the simulated agent talks 30 s, then hangs up
    assert not agent.channel.alive
    assert varsets(pbx.events, "pc-1")["BRIDGERESULT"] == "SUCCESS"
    assert "DIALER_MSG" not in varsets(pbx.events, "pc-1")  # no safe-harbour message
    ends = [ev.name for ev in pbx.events if ev.get("Uniqueid") == "pc-1"]
    assert ends[-1] == "Hangup"
    await pbx.stop()


async def test_an_agent_gone_before_the_answer_leaves_the_safe_harbour_message(
    tmp_path: Path,
) -> None:
    pbx = sim(tmp_path)
    e = pbx.engine
    agent = await ring(pbx, agent_leg("PJSIP/p1", "ag-2"))
    assert agent.channel is not None
    name = agent.channel.name
    e.request_hangup(agent.channel, 16)  # the agent hangs up while the customer rings
    await pbx.clock.advance(1)
    e.spawn(e.originate(customer_leg(name)))
    await pbx.clock.advance(30)
    seen = varsets(pbx.events, "pc-1")
    assert seen["BRIDGERESULT"] == "NONEXISTENT" and seen["DIALER_MSG"] == "played"
    await pbx.stop()


async def test_a_phone_nobody_answers_rings_out_and_no_member_is_a_phone_to_dial_blindly(
    tmp_path: Path,
) -> None:
    pbx = sim(tmp_path)
    pbx.engine.queues.default_behaviour = dataclasses.replace(
        pbx.engine.queues.default_behaviour, answers=lambda r: False
    )
    pbx.engine.spawn(pbx.engine.originate(agent_leg("PJSIP/p2", "ag-3")))
    await pbx.clock.advance(25)
    (resp,) = [ev for ev in pbx.events if ev.name == "OriginateResponse"]
    assert (resp.get("Response"), resp.get("Reason")) == ("Failure", "3")  # rang out
    unknown = await ring(pbx, agent_leg("PJSIP/nobody", "ag-4"))
    assert not unknown.success  # not a member of any queue: no simulated phone
    await pbx.stop()


async def penalty_call(tmp_path: Path, penalty: str, *, p2_paused: bool) -> SimPbx:
    pbx = sim(tmp_path, p2_paused=p2_paused)
    req = outbound("+8613800006666", "pc-1", queue="narrow", hold=10)
    bounds = (("QUEUE_MIN_PENALTY", penalty), ("QUEUE_MAX_PENALTY", penalty))
    pbx.engine.spawn(
        pbx.engine.originate(dataclasses.replace(req, variables=(*req.variables, *bounds)))
    )
    await pbx.clock.advance(20)
    return pbx


async def test_penalty_bounds_ring_only_the_members_in_range(tmp_path: Path) -> None:
    for penalty, agent in (("2", "PJSIP/p2"), ("1", "PJSIP/p1")):
        pbx = await penalty_call(tmp_path, penalty, p2_paused=False)
        connects = [
            (e.get("Queue"), e.get("Interface")) for e in pbx.events if e.name == "AgentConnect"
        ]
        assert connects == [("narrow", agent)]
        assert {e.get("Interface") for e in pbx.events if e.name == "AgentCalled"} == {agent}
        await pbx.stop()


async def test_joinempty_conditions_refuse_a_caller_whose_only_member_is_paused(
    tmp_path: Path,
) -> None:
    pbx = await penalty_call(tmp_path, "2", p2_paused=True)
    assert not any(e.name == "QueueCallerJoin" for e in pbx.events)
    assert varsets(pbx.events, "pc-1")["QUEUESTATUS"] == "JOINEMPTY"
    await pbx.stop()
