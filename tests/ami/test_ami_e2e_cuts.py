"""The PBX cuts the AMI connection at random moments of runs with hundreds of calls.

Oracle: the simulated PBX records every event it emitted, whether or not our client was
connected to read it. Feeding that complete record to a fresh tracker gives the outcome each
attempt really had. The dialer, which lost whatever was emitted while it was disconnected,
must end every attempt exactly once, with that same outcome, or with ``unknown`` only when
the call ended inside a disconnection (the PBX kept no trace of it by the resync), or never
reached the PBX at all. No Originate may run twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sim_harness import attempts, campaign, collector, make_core, party_pbx, run_until, stop_cores
from sqlalchemy import select

from dialer.outcomes import Outcome
from dialer.sim import SimPbx
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.ami.messages import Event, Headers
from dialer.telephony.core import FinishedAttempt
from dialer.telephony.tracker import CallPlan, CallTracker, Finished

SUFFIXES = ["486", "503", "480", "404", "111", "111", "222", "000"]


@pytest.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    p = await party_pbx(talk_s=4.0)
    yield p
    await stop_cores()
    await p.stop()


def oracle(pbx: SimPbx, rows: list[Attempt], plan: CallPlan) -> dict[int, Finished]:
    t = CallTracker()
    for r in rows:
        t.register(
            r.id,
            r.channel_id or f"never-{r.id}",
            other_channel_id=(r.detail or {}).get("other_channel_id"),
            plan=plan,
            now=0.0,
        )
    out: dict[int, Finished] = {}
    for ev in pbx.events:
        msg = Event(ev.name, Headers([("Event", ev.name), *ev.fields]))
        for u in t.feed(msg, ev.timestamp):
            if isinstance(u, Finished):
                out[u.attempt_id] = u
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cuts_lose_nothing_dial_nothing_twice_and_reconcile(
    store: Store, pbx: SimPbx, seed: int
) -> None:
    rng = random.Random(seed)
    cid = campaign(store)
    phones = [f"+86138{seed}{i:04d}{rng.choice(SUFFIXES)}" for i in range(200)]
    ids = attempts(store, cid, phones)
    core = make_core(store, pbx)
    done: list[FinishedAttempt] = collector(core)
    # disconnection windows in PBX time: from the cut to the end of the resync
    windows: list[list[float]] = []
    core.client.add_disconnect_listener(lambda: windows.append([pbx.clock.epoch(), 0.0]))
    resync = core.client.on_connect
    assert resync is not None

    async def timed_resync(c: object) -> None:
        await resync(c)  # type: ignore[arg-type]
        if windows and not windows[-1][1]:
            windows[-1][1] = pbx.clock.epoch()

    core.client.on_connect = timed_resync  # type: ignore[assignment]
    await core.start()
    await core.wait_ready(5)
    statuses: Counter[str] = Counter()

    async def dial_all() -> None:
        for a in ids:
            statuses[(await core.originate(a)).value] += 1

    def maybe_cut(_t: float) -> None:
        if rng.random() < 0.15:
            pbx.faults.drop_all()

    dialer = asyncio.create_task(dial_all())
    while not dialer.done():  # cut while Originates are in flight, too
        await asyncio.sleep(rng.random() * 0.01)
        if rng.random() < 0.1:
            pbx.faults.drop_all()
        await pbx.clock.advance(0.05)
    await dialer
    await run_until(pbx, core, lambda: len(done) == len(ids), step=0.5, on_step=maybe_cut)
    await core.stop(grace_s=0)

    assert core.illegal_transitions == 0
    by_id = {f.attempt_id: f for f in done}
    assert len(done) == len(ids) == len(by_id)  # exactly one outcome each, none lost
    assert sum(statuses.values()) == len(ids)
    newchannels = Counter(e.get("Uniqueid") for e in pbx.events if e.name == "Newchannel")
    assert newchannels and max(newchannels.values()) == 1  # no Originate ran twice
    assert len(windows) >= 5, windows
    with store.session() as s:
        rows = list(s.scalars(select(Attempt).where(Attempt.id.in_(ids))))
    truth = oracle(pbx, rows, CallPlan(queue="activation-agents", ring_timeout_s=25))
    unknown = mismatched = 0
    for r in rows:
        got = by_id[r.id]
        assert r.outcome == got.outcome.value and r.state == "ended"
        real = truth.get(r.id)
        if got.outcome is Outcome.UNKNOWN:
            unknown += 1
            if real is not None:  # it existed: it must have ended while we were away
                assert any(a - 0.5 <= real.ended_at <= (b or a) + 0.5 for a, b in windows), (
                    r.phone,
                    real,
                    windows,
                )
            continue
        assert real is not None, (r.phone, got)
        if got.outcome is not real.outcome:
            mismatched += 1
        assert got.outcome is real.outcome, (r.phone, got.outcome, real.outcome, got.facts)
    assert unknown < len(ids) // 3
    print(f"seed={seed} cuts={len(windows)} statuses={dict(statuses)} unknown={unknown}")
