"""Answered calls end to end: the dialer core, the simulated PBX (its dialplan, app_queue with
simulated agents, AMD from the far side's audio) and our FastAGI IVR server, over loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sim_harness import (
    attempts,
    campaign,
    collector,
    kill_core,
    make_core,
    party_pbx,
    run_until,
    stop_cores,
)
from sqlalchemy import select

from dialer.outcomes import Outcome
from dialer.sim import SimPbx
from dialer.store import Store
from dialer.store.models import Attempt, CallEvent, Contact, IvrSession

ivr_engine = pytest.importorskip("ivr.engine")
ivr_fastagi = pytest.importorskip("ivr.fastagi")
ivr_flow = pytest.importorskip("ivr.flow")
ivr_record = pytest.importorskip("ivr.record")

QUEUE = "activation-agents"
AGENTS = ["PJSIP/agent101", "PJSIP/agent102", "PJSIP/agent103"]


@pytest.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    p = await party_pbx(talk_s=5.0)
    yield p
    await stop_cores()
    await p.stop()


async def dial(  # type: ignore[no-untyped-def]
    store: Store,
    pbx: SimPbx,
    phones: list[str],
    agi_port: int = 4573,
    trail: bool = False,
    **spec: Any,
):
    cid = campaign(store, name=f"c{len(phones)}{abs(hash(tuple(phones))) % 9999}", **spec)
    ids = attempts(store, cid, phones)
    core = make_core(store, pbx, trail=trail)
    core.agi_url = f"agi://127.0.0.1:{agi_port}"
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    for a in ids:
        await core.originate(a)
    await run_until(pbx, core, lambda: len(done) == len(ids), step=0.5, limit=300)
    await core.stop(grace_s=0)
    assert core.illegal_transitions == 0
    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(Attempt).where(Attempt.id.in_(ids)))}
    return [rows[a] for a in ids]


async def test_queue_agent_handled_and_customer_gone_before_the_agent(
    store: Store, pbx: SimPbx
) -> None:
    (handled,) = await dial(store, pbx, ["+8613800005111"], trail=True)
    assert handled.outcome == Outcome.AGENT_HANDLED
    assert handled.queue == QUEUE and handled.agent and handled.live_answer
    assert handled.answered_at <= handled.queued_at <= handled.bridged_at <= handled.ended_at
    assert handled.bridged_at - handled.queued_at < dt.timedelta(seconds=2)
    assert 0 < float(handled.detail["bridge_delay_s"]) < 2
    assert handled.next_attempt_at is None  # agent_handled has no retry: final
    with store.session() as s:
        trail = [
            e.kind
            for e in s.scalars(
                select(CallEvent).where(CallEvent.attempt_id == handled.id).order_by(CallEvent.id)
            )
        ]
    assert trail == ["ringing", "answered", "queued", "with_agent", "ended"]


async def test_queue_timeout_is_an_abandon_with_the_safe_harbour_message(
    store: Store, pbx: SimPbx
) -> None:
    for iface in AGENTS:
        pbx.engine.queues.pause_member(QUEUE, iface, True, "lunch")
    timeout, gone = await dial(store, pbx, ["+8613800006111", "+8613800006222"])
    assert timeout.outcome == Outcome.ABANDONED and timeout.bridged_at is None
    assert timeout.message_played_at is not None  # DIALER_MSG=played after the prompt
    assert timeout.message_played_at - timeout.queued_at >= dt.timedelta(seconds=2)
    assert timeout.detail.get("QUEUESTATUS") == "TIMEOUT"
    # a caller hanging up while queued is an abandon too (DESIGN section 9)
    assert gone.outcome == Outcome.ABANDONED and gone.message_played_at is None
    assert gone.next_attempt_at == gone.ended_at + dt.timedelta(days=3)  # retry.abandoned


async def test_amd_machine_human_and_notsure(store: Store, pbx: SimPbx) -> None:
    machine, human, silent = await dial(
        store, pbx, ["+8613800007777", "+8613800007888", "+8613800007111"], amd="hangup"
    )
    assert machine.outcome == Outcome.MACHINE and machine.amd_status == "MACHINE"
    assert not machine.live_answer and machine.queued_at is None
    assert human.amd_status == "HUMAN" and human.live_answer
    assert human.outcome == Outcome.AGENT_HANDLED
    assert human.greeting_end_at > human.answered_at  # AMD took its time
    # no audio at all: NOTSURE after the 5 s analysis, treated as a live answer
    assert silent.amd_status == "NOTSURE" and silent.live_answer
    assert silent.outcome == Outcome.AGENT_HANDLED
    assert silent.greeting_end_at - silent.answered_at >= dt.timedelta(seconds=4.5)


async def test_amd_message_mode_leaves_the_message_then_hangs_up(store: Store, pbx: SimPbx) -> None:
    (machine,) = await dial(store, pbx, ["+8613800009777"], amd="message")
    assert machine.outcome == Outcome.MACHINE and machine.queued_at is None
    # the machine-message prompt ran before the hang-up
    assert machine.ended_at - machine.greeting_end_at >= dt.timedelta(seconds=1)


async def test_ivr_flow_completed_and_customer_hangup(store: Store, pbx: SimPbx) -> None:
    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(pbx.clock.epoch(), dt.UTC)

    services = ivr_engine.Services(
        library=ivr_flow.FlowLibrary.load(None),
        recorder=ivr_record.StoreRecorder(store, now),
        store=store,
        clock=now,
    )
    server = ivr_fastagi.FastAGIServer(services, host="127.0.0.1", port=0)
    await server.start()
    try:
        silent, gone, agent = await dial(
            store,
            pbx,
            ["+8613800008111", "+8613800008222", "+8613800008990"],
            agi_port=server.port,
            mode="broadcast",
            flow="notice",
            queue=None,
        )
    finally:
        await server.close(grace=1.0)
    assert silent.outcome == Outcome.COMPLETED and silent.result == "notified"
    assert gone.outcome == Outcome.CUSTOMER_HANGUP
    # the flow transferred to its queue (an IVR transfer, not hold-limited) and an agent took it
    assert agent.outcome == Outcome.AGENT_HANDLED and agent.result == "transferred"
    assert agent.queue == "service-agents" and agent.bridged_at is not None
    with store.session() as s:
        statuses = {
            r.attempt_id: r.status
            for r in s.scalars(
                select(IvrSession).where(IvrSession.attempt_id.in_([silent.id, gone.id]))
            )
        }
    assert statuses == {silent.id: "completed", gone.id: "hangup"}


async def test_a_dialer_killed_mid_calls_is_recovered_by_the_next_one(
    store: Store, pbx: SimPbx
) -> None:
    """kill -9 of the dialer with calls live: the next process reads the open attempts from the
    store, resyncs, follows the live calls to their real outcome and ends the gone ones
    `unknown`. Nothing is dialled again."""
    cid = campaign(store, name="recover")
    ids = attempts(store, cid, ["+8613800010480", "+8613800010111", "+8613800010222"])
    first = make_core(store, pbx)
    await first.start()
    await first.wait_ready(5)
    for a in ids:
        await first.originate(a)
    await pbx.clock.advance(1.5)  # rung, answered; nobody has hung up yet
    await asyncio.sleep(0.05)
    assert first.live_calls() == 3
    await kill_core(first)  # its connection goes, its memory goes, nothing is written
    await pbx.clock.advance(2)  # ...222 hangs up while no dialer is running
    second = make_core(store, pbx)
    done = collector(second)
    await second.start()
    assert second.recovered == 3
    await second.wait_ready(5)
    await run_until(pbx, second, lambda: len(done) == 3, step=0.5)
    await second.stop(grace_s=0)
    by = {f.attempt_id: f for f in done}
    assert by[ids[0]].outcome is Outcome.NO_ANSWER  # still ringing at the resync: followed
    assert by[ids[1]].outcome is Outcome.AGENT_HANDLED and by[ids[1]].facts.resynced
    assert by[ids[2]].outcome is Outcome.UNKNOWN  # ended with no dialer watching
    newchannels = [e.get("Uniqueid") for e in pbx.events if e.name == "Newchannel"]
    assert len(newchannels) == len(set(newchannels))


async def _ivr_server(store: Store, pbx: SimPbx) -> Any:
    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(pbx.clock.epoch(), dt.UTC)

    services = ivr_engine.Services(
        library=ivr_flow.FlowLibrary.load(None),
        recorder=ivr_record.StoreRecorder(store, now),
        store=store,
        clock=now,
    )
    server = ivr_fastagi.FastAGIServer(services, host="127.0.0.1", port=0)
    await server.start()
    return server


def _sessions_done(store: Store, ids: list[int]) -> bool:
    with store.session() as s:
        rows = list(s.scalars(select(IvrSession).where(IvrSession.attempt_id.in_(ids))))
    return len(rows) == len(ids) and all(r.status == "completed" for r in rows)


async def _advance_until(pbx: SimPbx, done: Any, limit: float = 300.0) -> None:
    t = 0.0
    while not done():
        assert t < limit, f"not done after {limit} s of PBX time"
        await pbx.clock.advance(0.5)
        await asyncio.sleep(0.01)
        t += 0.5


def _called_again(store: Store, ids: list[int]) -> list[int]:
    """Attempts whose contact is due again (a retry scheduled, or the attempt left open)."""
    with store.session() as s:
        rows = list(s.scalars(select(Attempt).where(Attempt.id.in_(ids))))
        due = []
        for r in rows:
            contact = s.get(Contact, r.contact_id)
            if r.outcome is None or (contact is not None and contact.next_attempt_at is not None):
                due.append(r.id)
        return due


@pytest.mark.parametrize("fault", ["restart", "ami_reconnect"])
async def test_no_customer_is_called_again_after_a_completed_ivr_session(
    store: Store, pbx: SimPbx, fault: str
) -> None:
    """Issue 17, item 1: the IVR finished its notice while no dialer watched (killed, or its
    AMI connection down); the switch no longer shows the call. The store's IVR record gives
    the outcome (completed, notified), so a campaign that retries ``unknown`` calls nobody
    again."""
    server = await _ivr_server(store, pbx)
    try:
        cid = campaign(
            store,
            name=f"ivr-{fault}",
            mode="broadcast",
            flow="notice",
            queue=None,
            retry={"unknown": "1m", "customer_hangup": "1d"},
        )
        phones = ["+8613800020111", "+8613800021111", "+8613800022111"]
        ids = attempts(store, cid, phones)
        first = make_core(store, pbx)
        first.agi_url = f"agi://127.0.0.1:{server.port}"
        done = collector(first)
        await first.start()
        await first.wait_ready(5)
        for a in ids:
            await first.originate(a)
        await _advance_until(pbx, lambda: server.stats.sessions == 3)  # all in the flow
        if fault == "restart":
            await kill_core(first)  # kill -9: nothing more is written by it
        else:
            pbx.faults.refuse_for(3600.0)  # AMI down until we say so
            pbx.faults.drop_all()
        # the notice plays to its end and the customers hang up while no dialer watches
        await _advance_until(pbx, lambda: _sessions_done(store, ids) and not pbx.engine.channels)
        if fault == "restart":
            core = make_core(store, pbx)
            core.agi_url = first.agi_url
            done = collector(core)
            await core.start()
            assert core.recovered == 3
        else:
            core = first
            pbx.faults.refuse_for(0.0)
        await core.wait_ready(10)
        await run_until(pbx, core, lambda: len(done) == 3, step=0.5)
        await core.stop(grace_s=0)
    finally:
        await server.close(grace=1.0)
    assert [f.outcome for f in done] == [Outcome.COMPLETED] * 3
    assert core.recovered_from_store == 3
    with store.session() as s:
        rows = list(s.scalars(select(Attempt).where(Attempt.id.in_(ids))))
    assert {(r.outcome, r.result) for r in rows} == {("completed", "notified")}
    assert _called_again(store, ids) == []  # 0 customers called again
    originates = [
        e for e in pbx.events if e.name == "Newchannel" and e.get("Channel", "").endswith(";1")
    ]
    assert len(originates) == 3  # nothing was dialled twice


async def test_unknown_only_where_neither_switch_nor_store_knows(store: Store, pbx: SimPbx) -> None:
    """No IVR session (an agent campaign) and no trace on the switch: still ``unknown``."""
    cid = campaign(store, name="no-record")
    ids = attempts(store, cid, ["+8613800023222"])  # answers, hangs up a second later
    first = make_core(store, pbx)
    await first.start()
    await first.wait_ready(5)
    await first.originate(ids[0])
    await pbx.clock.advance(1.5)
    await asyncio.sleep(0.05)
    await kill_core(first)
    await _advance_until(pbx, lambda: not pbx.engine.channels)
    second = make_core(store, pbx)
    done = collector(second)
    await second.start()
    await second.wait_ready(5)
    await run_until(pbx, second, lambda: len(done) == 1, step=0.5)
    await second.stop(grace_s=0)
    assert done[0].outcome is Outcome.UNKNOWN and second.recovered_from_store == 0
