"""A raw-socket AMI client against the simulated PBX: the four test numbers and an answer."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from simpbx_helpers import RawAmi

from dialer.sim import SimPbx

# last three digits -> (OriginateResponse Response, Reason, Hangup cause of ;1, of ;2)
EXPECTED = {
    "486": ("Failure", "5", "0", "17"),
    "503": ("Failure", "8", "0", "34"),
    "480": ("Failure", "3", "19", "19"),
    "404": ("Failure", "0", "1", "1"),
}


def originate(ami: RawAmi, number: str, cid: str, timeout_ms: int = 30000) -> None:
    ami.send(
        ("Action", "Originate"),
        ("ActionID", f"o-{cid}"),
        ("Channel", f"Local/{number}@customer"),
        ("Context", "park"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Async", "true"),
        ("Timeout", str(timeout_ms)),
        ("CallerID", '"Bank" <95588>'),
        ("ChannelId", cid),
        ("OtherChannelId", cid + "-2"),
        ("Variable", "DIALER_ATTEMPT=7"),
        ("Variable", "DIALER_LANG=zh"),
    )


@pytest.mark.parametrize("suffix", sorted(EXPECTED))
async def test_deterministic_numbers(pbx: SimPbx, ami: RawAmi, suffix: str) -> None:
    cid = str(uuid.uuid4())
    originate(ami, f"+8613800000{suffix}", cid)
    await ami.pump()
    await pbx.clock.advance(31)
    await ami.pump()
    resp = [m for m in ami.messages if m.get("ActionID") == f"o-{cid}" and "Response" in m]
    assert (
        resp[0]["Response"] == "Success" and resp[0]["Message"] == "Originate successfully queued"
    )
    orr = ami.events("OriginateResponse")
    assert len(orr) == 1
    want_resp, want_reason, cause1, cause2 = EXPECTED[suffix]
    assert orr[0]["Response"] == want_resp and orr[0]["Reason"] == want_reason
    assert orr[0]["Uniqueid"] == cid
    newch = ami.events("Newchannel")
    assert [n["Uniqueid"] for n in newch] == [cid, cid + "-2"]
    assert newch[0]["Channel"].endswith(";1") and newch[1]["Channel"].endswith(";2")
    hang = {h["Uniqueid"]: h for h in ami.events("Hangup")}
    assert hang[cid]["Cause"] == cause1
    assert hang[cid + "-2"]["Cause"] == cause2
    # events of the call come before its OriginateResponse
    idx = ami.messages.index(orr[0])
    assert ami.messages.index(newch[0]) < idx
    # variables on both legs
    varsets = [(v["Uniqueid"], v["Variable"]) for v in ami.events("VarSet")]
    assert (cid, "DIALER_ATTEMPT") in varsets and (cid + "-2", "DIALER_ATTEMPT") in varsets
    if suffix == "480":
        assert not ami.events("DialEnd")  # no DialEnd on originate timeout (recorded)
        assert pbx.clock.now() >= 30


async def test_answering_number_stays_up(pbx: SimPbx, ami: RawAmi) -> None:
    cid = str(uuid.uuid4())
    originate(ami, "+8613800000123", cid)
    await pbx.clock.advance(10)
    await ami.pump()
    orr = ami.events("OriginateResponse")
    assert orr and orr[0]["Response"] == "Success" and orr[0]["Reason"] == "4"
    assert orr[0]["Channel"].endswith(";1") and orr[0]["Uniqueid"] == cid
    assert [d["DialStatus"] for d in ami.events("DialEnd")] == ["ANSWER"]
    assert not ami.events("Hangup")
    # park answers and waits 30 s, then hangs up normally
    await pbx.clock.advance(30)
    await ami.pump()
    causes = sorted(h["Cause"] for h in ami.events("Hangup"))
    assert causes == ["16", "16"]


async def test_hangup_action_by_channel_id(pbx: SimPbx, ami: RawAmi) -> None:
    cid = str(uuid.uuid4())
    originate(ami, "+8613800000480", cid)
    await pbx.clock.advance(2)
    ami.send(Action="Hangup", ActionID="h1", Channel=cid, Cause="21")
    await ami.pump()
    await pbx.clock.advance(1)
    await ami.pump()
    resp = [m for m in ami.messages if m.get("ActionID") == "h1"][0]
    assert resp["Message"] == "Channel Hungup"
    orr = ami.events("OriginateResponse")[0]
    assert orr["Reason"] == "0" and orr["Uniqueid"] == cid
    assert {h["Cause"] for h in ami.events("Hangup")} == {"21"}
    assert [d["DialStatus"] for d in ami.events("DialEnd")] == ["NOANSWER"]


async def test_prefix_collision_fails(pbx: SimPbx, ami: RawAmi) -> None:
    originate(ami, "+8613800000123", "conc-10")
    await pbx.clock.advance(5)
    originate(ami, "+8613800000124", "conc-1")
    await pbx.clock.advance(1)
    await ami.pump()
    orr = {o["Uniqueid"]: o for o in ami.events("OriginateResponse")}
    assert orr["conc-10"]["Response"] == "Success"
    assert orr["conc-1"]["Response"] == "Failure" and orr["conc-1"]["Reason"] == "0"


async def test_login_rules(pbx: SimPbx) -> None:
    c = await RawAmi.connect(pbx.port)
    assert c.banner == "Asterisk Call Manager/11.0.0"
    c.send(Action="Ping", ActionID="p1")
    msgs = await c.pump()
    assert msgs[0] == {"Response": "Error", "ActionID": "p1", "Message": "Permission denied"}
    c.send(Action="Login", ActionID="l1", Username="dialer", Secret="wrong")
    assert await c.pump() == []  # the failure comes after ~1 s of PBX time
    t0 = pbx.clock.now()
    await pbx.clock.advance(1.0)
    msgs = await c.pump()
    assert msgs[0]["Message"] == "Authentication failed"
    assert pbx.clock.now() - t0 >= 1.0
    assert c.reader.at_eof()
    # idle unauthenticated connection closed after authtimeout
    c2 = await RawAmi.connect(pbx.port)
    await pbx.clock.advance(29)
    await c2.pump()
    assert not c2.reader.at_eof()
    await pbx.clock.advance(2)
    await c2.pump()
    assert c2.reader.at_eof()
    await c.close()
    await c2.close()


async def test_faults_drop_and_refuse(pbx: SimPbx) -> None:
    a = await RawAmi.connect(pbx.port)
    b = await RawAmi.connect(pbx.port)
    await a.login()
    await b.login()
    assert pbx.faults.drop(0)
    await a.pump()
    assert a.reader.at_eof()
    await b.pump()
    assert not b.reader.at_eof()
    pbx.faults.refuse_for(10)
    reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
    assert await reader.read(100) == b""  # refused: closed without a banner
    writer.close()
    await pbx.clock.advance(11)
    d = await RawAmi.connect(pbx.port)
    assert d.banner.startswith("Asterisk Call Manager")
    assert pbx.faults.drop_all() == 2
    await b.pump()
    assert b.reader.at_eof()
    for x in (a, b, d):
        await x.close()


async def test_misc_actions(pbx: SimPbx, ami: RawAmi) -> None:
    ami.send(Action="Bogus", ActionID="b1")
    ami.send(Action="Originate", ActionID="o1", Context="ivr", Exten="s", Priority="1")
    ami.send(Action="Originate", ActionID="o2", Channel="Local/1@customer", Timeout="x")
    ami.send(Action="CoreShowChannels", ActionID="c1")
    ami.send(Action="Getvar", ActionID="g1", Variable="EPOCH")
    await ami.pump()
    by = {m.get("ActionID"): m for m in ami.messages if "Response" in m}
    assert by["b1"]["Message"].startswith("Invalid/unknown command: Bogus.")
    assert by["o1"]["Message"] == "Channel not specified"
    assert by["o2"]["Message"] == "Invalid timeout"
    assert ami.events("CoreShowChannelsComplete")[0]["ListItems"] == "0"
    assert by["g1"]["Value"].isdigit()


async def test_variable_header_with_commas_sets_several(pbx: SimPbx, ami: RawAmi) -> None:
    ami.send(
        ("Action", "Originate"),
        ("Channel", "Local/+8613800000123@customer"),
        ("Context", "park"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Async", "true"),
        ("ChannelId", "v-1"),
        ("Variable", "A=1,B=2"),
        ("Variable", "C=3"),
    )
    await pbx.clock.advance(1)
    await ami.pump()
    one = [(v["Variable"], v["Value"]) for v in ami.events("VarSet") if v["Uniqueid"] == "v-1"]
    two = [(v["Variable"], v["Value"]) for v in ami.events("VarSet") if v["Uniqueid"] == "v-1;2"]
    assert one == [("C", "3"), ("B", "2"), ("A", "1")]  # the ;1 leg lists them last-first
    assert two == [("A", "1"), ("B", "2"), ("C", "3")]


async def test_refuse_by_unlistening(pbx: SimPbx) -> None:
    a = await RawAmi.connect(pbx.port)
    await a.login()
    pbx.faults.refuse_for(5, mode="unlisten")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", pbx.port)
    a.send(Action="Ping", ActionID="p")  # the existing connection still works
    assert (await a.pump())[0]["Ping"] == "Pong"
    await pbx.clock.advance(6)
    b = await RawAmi.connect(pbx.port)
    assert b.banner == "Asterisk Call Manager/11.0.0"
    for c in (a, b):
        await c.close()


async def test_scenario_faults_on_schedule() -> None:
    from dialer.sim import VirtualClock

    sc = {"faults": [{"at_s": 5, "drop": "all"}, {"at_s": 8, "refuse_s": 4}]}
    p = SimPbx(clock=VirtualClock(), scenario=sc, secret="x")
    await p.start()
    a = await RawAmi.connect(p.port)
    await p.clock.advance(6)
    await a.pump()
    assert a.reader.at_eof()  # dropped at t=5
    await p.clock.advance(3)  # t=9: refusing
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", p.port)
    await p.clock.advance(4)  # t=13: listening again
    b = await RawAmi.connect(p.port)
    assert b.banner.startswith("Asterisk Call Manager")
    for c in (a, b):
        await c.close()
    await p.stop()
