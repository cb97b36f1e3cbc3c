"""The dialer core against the simulated PBX over loopback (real sockets, virtual PBX time)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sim_harness import SECRET, attempts, campaign, collector, make_core, run_until, stop_cores
from sqlalchemy import select

from dialer.outcomes import Outcome
from dialer.sim import SimPbx, VirtualClock
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.core import OriginateStatus

#: the simulated called party's deterministic numbers (config/asterisk/sim/customer.conf)
BY_SUFFIX = {
    "486": Outcome.BUSY,
    "503": Outcome.CONGESTION,
    "480": Outcome.NO_ANSWER,
    "404": Outcome.INVALID_NUMBER,
}
DELAY = {
    Outcome.BUSY: dt.timedelta(minutes=10),
    Outcome.CONGESTION: dt.timedelta(minutes=5),
    Outcome.NO_ANSWER: dt.timedelta(hours=2),
}


@pytest.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    p = SimPbx(clock=VirtualClock(), secret=SECRET, record=True)
    await p.start(ami_port=0)
    yield p
    await stop_cores()
    await p.stop()


def originated(pbx: SimPbx) -> Counter[str]:
    """How many times the PBX created each ;1 channel id (an Originate run twice shows 2)."""
    return Counter(e.get("Uniqueid") or "" for e in pbx.events if e.name == "Newchannel")


async def test_every_failure_class_and_next_attempt(store: Store, pbx: SimPbx) -> None:
    cid = campaign(store)
    phones = [f"+8613800001{s}" for s in BY_SUFFIX]
    ids = attempts(store, cid, phones)
    core = make_core(store, pbx)
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    for a in ids:
        assert await core.originate(a) is OriginateStatus.QUEUED
    await run_until(pbx, core, lambda: len(done) == len(ids))
    await core.stop(grace_s=0)
    with store.session() as s:
        rows = {r.phone: r for r in s.scalars(select(Attempt))}
    for phone in phones:
        row = rows[phone]
        want = BY_SUFFIX[phone[-3:]]
        assert row.outcome == want.value and row.state == "ended"
        assert row.channel_id and row.originated_at and row.ended_at
        assert row.answered_at is None and not row.live_answer
        if want in DELAY:
            assert row.next_attempt_at == row.ended_at + DELAY[want]
        else:  # invalid_number has no retry entry: final
            assert row.next_attempt_at is None
    assert rows[phones[0]].hangup_cause == 17 and rows[phones[0]].originate_reason == 5
    assert rows[phones[2]].ended_at - rows[phones[2]].originated_at >= dt.timedelta(seconds=25)
    assert all(n == 1 for n in originated(pbx).values())


async def test_a_number_that_cannot_be_dialled_is_ended_not_left_open(
    store: Store, pbx: SimPbx
) -> None:
    cid = campaign(store)
    [a] = attempts(store, cid, ["13800000000"])  # not E.164
    core = make_core(store, pbx)
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    assert await core.originate(a) is OriginateStatus.REJECTED
    await core.stop(grace_s=0)
    assert [f.outcome for f in done] == [Outcome.INVALID_NUMBER]
    assert not [e for e in pbx.events if e.name == "Newchannel"]  # nothing was dialled
    with store.session() as s:
        row = s.get(Attempt, a)
        assert row is not None and row.outcome == "invalid_number" and row.channel_id is None


async def test_answered_call_is_followed_to_its_end(store: Store, pbx: SimPbx) -> None:
    """Default called party and agents: answered, queued, bridged, ended; and a Chinese
    value set on the live channel comes back through the adapter intact."""
    cid = campaign(store)
    [a] = attempts(store, cid, ["+8613800002000"])
    core = make_core(store, pbx)
    core.event_filters = ()  # every event: a variable the dialer never reads comes back too
    done = collector(core)
    seen: list[str] = []
    names: list[str] = []
    core.subscribe(lambda e: seen.append(e.name))
    core.subscribe(
        lambda e: (
            names.append(e.headers["Value"])
            if e.name == "VarSet" and e.get("Variable") == "CUSTOMER_NAME"
            else None
        )
    )
    await core.start()
    await core.wait_ready(5)
    await core.originate(a)
    await run_until(pbx, core, lambda: core.counts()["with_agent"] == 1)
    [call] = core.tracker.live()
    res = await core.client.action(
        "Setvar",
        [("Channel", call.channel_id), ("Variable", "CUSTOMER_NAME"), ("Value", "张伟明")],
    )
    assert res.response.ok
    await run_until(pbx, core, lambda: bool(done))
    await core.stop(grace_s=0)
    [f] = done
    assert f.facts.answered_at is not None and f.facts.live_answer
    assert f.outcome is Outcome.AGENT_HANDLED and f.facts.agent
    assert names == ["张伟明"]
    assert "OriginateResponse" in seen  # forwarded to subscribers, not swallowed


async def test_graceful_stop_ends_live_calls_interrupted(store: Store, pbx: SimPbx) -> None:
    cid = campaign(store)
    ids = attempts(store, cid, ["+8613800003480", "+8613800003481"])  # rings out / answers
    core = make_core(store, pbx)
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    for a in ids:
        await core.originate(a)
    await pbx.clock.advance(1)
    await asyncio.sleep(0.05)
    assert sum(core.counts().values()) == 2
    channel_ids = [c.channel_id for c in core.tracker.live()]
    await core.stop(grace_s=0.2)
    assert sorted(f.outcome for f in done) == [Outcome.INTERRUPTED] * 2
    # the two calls were still ringing: cancelled at the PBX, not left to be answered
    await pbx.clock.advance(1)
    hung = {e.get("Uniqueid") for e in pbx.events if e.name == "Hangup"}
    assert set(channel_ids) <= hung
    with pytest.raises(Exception, match="stopping"):
        await core.originate(ids[0])
    with store.session() as s:
        assert {r.outcome for r in s.scalars(select(Attempt))} == {"interrupted"}


async def test_originate_waits_at_the_gate_through_an_outage(store: Store, pbx: SimPbx) -> None:
    """The PBX refuses connections for a while: nothing is dialled until the client is back,
    logged in and resynced; then the Originate goes out exactly once."""
    cid = campaign(store)
    [a] = attempts(store, cid, ["+8613800009486"])
    core = make_core(store, pbx)
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    pbx.faults.refuse_for(3.0)
    pbx.faults.drop_all()
    task = asyncio.create_task(core.originate(a))
    await asyncio.sleep(0.3)  # the client retries and is refused meanwhile
    assert not task.done() and not core.ready
    assert not [e for e in pbx.events if e.name == "Newchannel"]
    await pbx.clock.advance(4)
    assert await asyncio.wait_for(task, 5) is OriginateStatus.QUEUED
    assert core.client.connections >= 2 and core.last_resync["channels"] == 0
    st = core.stats()
    assert st["ami_ready"] and st["originates_sent"] == 1 and st["ami_connections"] >= 2
    await run_until(pbx, core, lambda: bool(done))
    await core.stop(grace_s=0)
    assert [f.outcome for f in done] == [Outcome.BUSY]
    assert all(n == 1 for n in originated(pbx).values())


async def test_facts_share_the_pbx_time_base_when_clocks_differ(store: Store, pbx: SimPbx) -> None:
    """Our clock is an hour behind the PBX's: the call's timestamps still line up."""
    cid = campaign(store)
    [a] = attempts(store, cid, ["+8613800012000"])
    core = make_core(store, pbx, clock=lambda: pbx.clock.epoch() - 3600)
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    await pbx.clock.advance(0.1)  # a stamped event or two (FullyBooted) to learn the offset
    await core.originate(a)
    await run_until(pbx, core, lambda: bool(done))
    await core.stop(grace_s=0)
    [f] = done
    assert f.facts.answered_at is not None
    assert 0 < f.facts.answered_at - f.facts.originated_at < 10
    assert abs(core.now() - pbx.clock.epoch()) < 1
