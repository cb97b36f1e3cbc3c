"""The dialer core's store side without a PBX: batching survives a poisoned update."""

from __future__ import annotations

import dataclasses

from sim_harness import attempts, campaign

from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.core import DialerCore, FinishedAttempt
from dialer.telephony.tracker import Finished


def finished(attempt_id: int, **over: object) -> Finished:
    base = Finished(
        attempt_id=attempt_id,
        outcome=Outcome.BUSY,
        end_reason="hangup",
        originated_at=1e9,
        ringing_at=None,
        answered_at=None,
        greeting_end_at=None,
        queued_at=None,
        bridged_at=None,
        message_played_at=None,
        ended_at=1e9 + 5,
        originate_reason=5,
        hangup_cause=17,
        amd_status=None,
        queue=None,
        agent=None,
        result=None,
        live_answer=False,
        resynced=False,
        detail={},
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


async def test_a_poisoned_update_is_dropped_and_the_rest_written(store: Store) -> None:
    cid = campaign(store, name="poison")
    good, bad = attempts(store, cid, ["+8613800011486", "+8613800011487"])
    core = DialerCore(store, AMIClient("127.0.0.1", 9, "u", "s"), agi_url="agi://x")
    got: list[FinishedAttempt] = []
    core.on_finished(got.append)
    core._apply([finished(bad, detail={"not_json": object()}), finished(good)])
    await core._flush()
    assert [f.attempt_id for f in got] == [good]
    assert core.batches.write_errors == 1
    with store.session() as s:
        g, b = s.get(Attempt, good), s.get(Attempt, bad)
        assert g is not None and g.outcome == "busy" and g.hangup_cause == 17
        assert b is not None and b.outcome is None  # not half-written
    core._db.shutdown()


async def test_only_the_owner_writes_an_outcome(store: Store) -> None:
    """A worker cut off long enough for another to take its switch over must not end the
    calls the new owner now follows."""
    cid = campaign(store, name="owned")
    mine, taken = attempts(store, cid, ["+8613800011488", "+8613800011489"])
    with store.session() as s:
        for aid, owner in ((mine, "w1"), (taken, "w2")):
            row = s.get(Attempt, aid)
            assert row is not None
            row.owner, row.server = owner, "pbx1"
    core = DialerCore(
        store, AMIClient("127.0.0.1", 9, "u", "s"), agi_url="agi://x", owner="w1", server="pbx1"
    )
    got: list[FinishedAttempt] = []
    core.on_finished(got.append)
    core._apply([finished(mine), finished(taken, outcome=Outcome.INTERRUPTED)])
    await core._flush()
    assert [f.attempt_id for f in got] == [mine]
    with store.session() as s:
        assert s.get(Attempt, taken).outcome is None  # type: ignore[union-attr]
        assert s.get(Attempt, mine).outcome == "busy"  # type: ignore[union-attr]
    core._db.shutdown()
