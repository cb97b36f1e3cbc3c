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
