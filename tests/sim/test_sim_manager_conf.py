"""The AMI user's read classes, as Asterisk applies them: the shipped least-privilege user
never receives DTMF (callers' verification digits), and the dialer's tracker needs no more
than the classes it is given (every SimFloor run - demo, runner and console end-to-end tests
- uses the shipped manager.conf)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from simpbx_helpers import SECRET, RawAmi

from dialer.sim import SimPbx, VirtualClock
from dialer.sim.ami_server import DEFAULT_READ, read_classes
from dialer.sim.pbx import DEFAULT_MANAGER_CONF


def test_shipped_user_reads_only_what_the_tracker_uses(tmp_path: Path) -> None:
    assert read_classes(DEFAULT_MANAGER_CONF, "dialer") == {"call", "agent", "dialplan"}
    conf = tmp_path / "manager.conf"
    conf.write_text("[general]\nenabled = yes\n[a]\nread = all ; everything\n[b]\nwrite = call\n")
    assert read_classes(conf, "a") == DEFAULT_READ
    assert read_classes(conf, "b") == frozenset()


async def test_dtmf_never_reaches_the_shipped_user() -> None:
    pbx = SimPbx(
        clock=VirtualClock(), secret=SECRET, manager_conf=DEFAULT_MANAGER_CONF, record=True
    )
    await pbx.start(ami_port=0)
    ami = await RawAmi.connect(pbx.port)
    try:
        assert (await ami.login()).get("Response") == "Success"
        await ami.pump()
        cid = str(uuid.uuid4())
        ami.send(
            ("Action", "Originate"),
            ("ActionID", "o-1"),
            ("Channel", "Local/+8613800138888@customer"),
            ("Context", "park"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("ChannelId", cid),
            ("OtherChannelId", cid + "-2"),
        )
        await ami.pump()
        await pbx.clock.advance(5)
        [party] = [c for c in pbx.engine.channels.values() if c.uniqueid == cid + "-2"]
        typing = asyncio.create_task(pbx.engine.send_dtmf(party, "1234"))  # digits on the line
        await pbx.clock.advance(5)
        await typing
        await ami.pump()
        assert any(e.name == "DTMFBegin" for e in pbx.events)  # the switch saw them
        names = {m.get("Event") for m in ami.messages}
        assert {"Newchannel", "OriginateResponse"} <= names  # call class arrives
        assert not {n for n in names if n and n.startswith("DTMF")}
        assert "FullyBooted" not in names  # system class is not granted either
    finally:
        await ami.close()
        await pbx.stop()
