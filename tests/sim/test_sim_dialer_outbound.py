"""The dialer's contexts (config/asterisk/extensions_dialer.conf) on the simulated PBX."""

from __future__ import annotations

import asyncio
import os

from simpbx_helpers import FastAgi, RawAmi, names, outbound, varsets

from dialer.sim import SimPbx, VirtualClock
from dialer.sim.engine import OriginateRequest


def with_vars(req: OriginateRequest, **kw: str) -> OriginateRequest:
    vs = dict(req.variables)
    vs.update(kw)
    return OriginateRequest(**{**req.__dict__, "variables": tuple(vs.items())})


async def test_amd_machine_message_branch() -> None:
    sc = {
        "personas": [
            {"match": "0001002", "answer_after_s": 3, "greeting": "machine", "greeting_s": 7}
        ]
    }
    pbx = SimPbx(clock=VirtualClock(), scenario=sc, record=True)
    req = with_vars(
        outbound("+8613800001002", "m-1"),
        DIALER_AMD="message",
        DIALER_MSG_MACHINE="dialer/hello-this-is&dialer/bank-name",
    )
    pbx.engine.spawn(pbx.engine.originate(req))
    await pbx.clock.advance(30)
    v = varsets(pbx.events, "m-1")
    assert v["AMDSTATUS"] == "MACHINE" and v["AMDCAUSE"].startswith("LONGGREETING")
    apps = [
        e.get("AppData") for e in pbx.events if e.name == "Newexten" and e.get("Uniqueid") == "m-1"
    ]
    assert "dialer/hello-this-is&dialer/bank-name" in apps  # the playlist the dialer sent
    await pbx.stop()


async def test_human_goes_on_to_flow_and_ivr_transfer_to_queue() -> None:
    sc = {"personas": [{"match": "0001001", "answer_after_s": 2}]}
    pbx = SimPbx(clock=VirtualClock(), scenario=sc, record=True)

    async def script(cmd):  # type: ignore[no-untyped-def]
        await cmd("ANSWER")
        await cmd("SET VARIABLE IVR_RESULT done")
        await cmd("SET VARIABLE IVR_NEXT queue:fraud-agents")

    agi = FastAgi(script)
    port = await agi.start()
    req = with_vars(
        outbound("+8613800001001", "h-1", port, flow="card_activation"), DIALER_AMD="hangup"
    )
    pbx.engine.spawn(pbx.engine.originate(req))
    await pbx.clock.advance(20)
    v = varsets(pbx.events, "h-1")
    assert v["AMDSTATUS"] == "HUMAN" and v["AGISTATUS"] == "SUCCESS"
    joins = [e for e in pbx.events if e.name == "QueueCallerJoin"]
    assert joins and joins[0].get("Queue") == "fraud-agents"
    assert "AgentConnect" in names(pbx.events, "h-1")
    # the flow got the attempt id in its script URL
    starts = [e for e in pbx.events if e.name == "Newexten" and e.get("Application") == "AGI"]
    assert starts[0].get("AppData") == f"agi://127.0.0.1:{port}/card_activation?attempt=1"
    await agi.stop()
    await pbx.stop()


async def test_auto_running_clock_with_a_raw_client() -> None:
    """A client that cannot drive the clock: the PBX jumps time whenever it is idle."""
    clock = VirtualClock()
    secret = os.environ.get("DIALER_AMI_SECRET", "test-only-ami-secret")
    pbx = SimPbx(clock=clock, secret=secret)
    await pbx.start()
    clock.start_auto()
    c = await RawAmi.connect(pbx.port)
    await c.login(secret)
    c.send(
        ("Action", "Originate"),
        ("Channel", "Local/+8613800000480@customer"),
        ("Context", "park"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Async", "true"),
        ("Timeout", "30000"),
        ("ChannelId", "auto-1"),
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not c.events("OriginateResponse") and loop.time() - t0 < 5:
        await c.pump(0.02)
    orr = c.events("OriginateResponse")
    assert orr and orr[0]["Reason"] == "3"
    assert clock.now() >= 30 and loop.time() - t0 < 5
    clock.stop_auto()
    await c.close()
    await pbx.stop()


SORRY = "dialer/ivr-apology&dialer/digit-9&dialer/digit-5"


async def _after_the_flow(script, number: str, *, queue: str = "fraud-agents", **persona):  # type: ignore[no-untyped-def]
    """Run the shipped dialplan with ``script`` as the FastAGI side; return the channel's
    variables, the applications it ran after AGI(), and the queues joined."""
    sc = {"personas": [{"match": number[-7:], "answer_after_s": 2, **persona}]}
    pbx = SimPbx(clock=VirtualClock(), scenario=sc, record=True)
    agi = FastAgi(script)
    port = await agi.start()
    req = with_vars(outbound(number, "f-1", port, flow="notice", queue=queue), DIALER_SORRY=SORRY)
    pbx.engine.spawn(pbx.engine.originate(req))
    await pbx.clock.advance(90)
    v = varsets(pbx.events, "f-1")
    apps = [
        f"{e.get('Application')}:{e.get('AppData')}"
        for e in pbx.events
        if e.name == "Newexten" and e.get("Uniqueid") == "f-1"
    ]
    after = apps[[a.split(":")[0] for a in apps].index("AGI") + 1 :]
    joined = [e.get("Queue") for e in pbx.events if e.name == "QueueCallerJoin"]
    await agi.stop()
    await pbx.stop()
    return v, [a for a in after if not a.startswith(("GotoIf", "Set"))], joined


async def test_a_flow_that_failed_mid_way_hands_the_caller_to_the_campaigns_queue() -> None:
    async def script(cmd):  # type: ignore[no-untyped-def]
        await cmd("ANSWER")
        await cmd('STREAM FILE dialer/notice-body ""')
        await cmd("SET VARIABLE IVR_RESULT notified")
        await cmd("SET VARIABLE IVR_RESCUE queue")
        await cmd("SET VARIABLE IVR_NEXT failed")

    v, after, joined = await _after_the_flow(script, "+8613800001011")
    assert v["DIALER_IVR"] == "failed" and v["AGISTATUS"] == "SUCCESS"
    assert joined == ["fraud-agents"] and after[0] == "Queue:fraud-agents,,,,60"


async def test_a_flow_that_failed_mid_way_without_a_hand_over_plays_the_apology() -> None:
    async def script(cmd):  # type: ignore[no-untyped-def]
        await cmd("ANSWER")
        await cmd("SET VARIABLE IVR_RESCUE apology")
        await cmd("SET VARIABLE IVR_NEXT failed")

    v, after, joined = await _after_the_flow(script, "+8613800001012")
    assert v["DIALER_IVR"] == "failed" and joined == []
    assert after == [f"Playback:{SORRY}", "Hangup:"]


async def test_a_fastagi_connection_closed_mid_flow_is_rescued() -> None:
    """The IVR's socket closes before it steered the call, the channel still up: Asterisk 22
    ends AGI() with AGISTATUS=SUCCESS (res_agi.c run_agi: "Program terminated"), and with no
    IVR_NEXT the dialplan rescues the caller; no queue: the apology."""

    async def script(cmd):  # type: ignore[no-untyped-def]
        await cmd("ANSWER")
        await cmd('STREAM FILE dialer/notice-body ""')

    v, after, joined = await _after_the_flow(script, "+8613800001013", queue="")
    assert v["AGISTATUS"] == "SUCCESS" and v["DIALER_IVR"] == "failed"
    assert after == [f"Playback:{SORRY}", "Hangup:"]


async def test_a_caller_who_hangs_up_in_the_flow_ends_the_dialplan_there() -> None:
    """AGISTATUS=HANGUP: AGI() returns -1 and nothing after it runs - a caller who left is
    no IVR failure (no DIALER_IVR mark, nothing played to nobody)."""

    async def script(cmd):  # type: ignore[no-untyped-def]
        await cmd("ANSWER")
        await cmd("WAIT FOR DIGIT 20000")

    v, after, joined = await _after_the_flow(script, "+8613800001014", hangup_after_s=3)
    assert v["AGISTATUS"] == "HANGUP" and "DIALER_IVR" not in v
    assert after == [] and joined == []
