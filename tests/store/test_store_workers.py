"""Workers and switches over one store: ids, heartbeats, switch owners, adopted attempts."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import select

from dialer.errors import WorkerConflict
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.store import Store, open_store
from dialer.store import workers as w
from dialer.store.models import Attempt
from dialer.telephony.rows import AttemptRows, NotDialled

T0 = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)
DEAD = w.DEFAULT_DEAD_AFTER


@pytest.fixture
def st(store_url: str) -> Iterator[Store]:
    store = open_store(store_url)
    yield store
    store.dispose()


def ident(wid: str) -> w.WorkerIdentity:
    return w.WorkerIdentity(wid, host="h", pid=1)


def test_one_live_process_per_worker_id(st: Store) -> None:
    a1, a2 = ident("a"), ident("a")
    with st.session() as s:
        w.register(s, a1, T0)
    with pytest.raises(WorkerConflict, match="alive"), st.session() as s:
        w.register(s, a2, T0 + dt.timedelta(seconds=5))
    later = T0 + DEAD + dt.timedelta(seconds=1)  # a1 stopped beating: a restart takes over
    with st.session() as s:
        w.register(s, a2, later)
    with st.session() as s:
        assert not w.heartbeat(s, a1, later, {})  # the old instance learns it lost the id
        assert w.heartbeat(s, a2, later, {"switches": {}})
    with st.session() as s:
        w.stopped(s, a2, later)
    with st.session() as s:  # a clean stop frees the id at once
        w.register(s, ident("a"), later)


def test_a_switch_has_one_owner_until_that_owner_dies_or_stops(st: Store) -> None:
    a, b = ident("a"), ident("b")
    with st.session() as s:
        w.register(s, a, T0)
        w.register(s, b, T0)
        assert w.claim_switch(s, "pbx1", a, T0)
        assert w.claim_switch(s, "pbx1", a, T0)  # again: still ours
        assert not w.claim_switch(s, "pbx1", b, T0)
        assert w.claim_switch(s, "pbx2", b, T0)
    t1 = T0 + DEAD / 2
    with st.session() as s:
        w.heartbeat(s, b, t1, {})
    t2 = T0 + DEAD + dt.timedelta(seconds=1)  # a is dead, b beat at t1
    with st.session() as s:
        assert not w.claim_switch(s, "pbx2", a, t2)
        assert not w.claim_switch(s, "pbx3", b, t2, takeover_only=True)  # nobody served it
        assert w.claim_switch(s, "pbx1", b, t2, takeover_only=True)  # a died: failover
        health = {h.id: h for h in w.health(s, t2)}
    assert health["b"].alive and health["b"].switches == ("pbx1", "pbx2")
    assert not health["a"].alive and health["a"].switches == ()
    assert health["a"].to_json(t2)["state"] == "dead"
    with st.session() as s:
        w.register(s, a, t2)
        w.stopped(s, b, t2)
    with st.session() as s:
        assert not w.claim_switch(s, "pbx2", a, t2, takeover_only=True)  # a clean stop
        assert w.claim_switch(s, "pbx2", a, t2)  # freed by the clean stop
        assert w.switch_owners(s, ["pbx1", "pbx2", "pbx3"]) == {
            "pbx1": None,
            "pbx2": "a",
            "pbx3": None,
        }


def test_open_attempts_of_dead_workers_are_adopted_on_their_switch_only(st: Store) -> None:
    a, b, c = ident("a"), ident("b"), ident("c")
    with st.session() as s:
        camp, _ = apply_campaign(
            s,
            parse_campaign(
                {
                    "name": "x",
                    "state": "running",
                    "purpose": "service",
                    "mode": "progressive",
                    "queue": "q",
                }
            ),
            source=None,
            actor="t",
        )
        for wk in (a, b, c):
            w.register(s, wk, T0)
        rows = {
            "a-pbx1": Attempt(owner="a", server="pbx1"),
            "a-pbx2": Attempt(owner="a", server="pbx2"),
            "a-pbx1-done": Attempt(owner="a", server="pbx1", outcome="busy"),
            "c-pbx1": Attempt(owner="c", server="pbx1"),
            "none-pbx1": Attempt(owner=None, server="pbx1"),
        }
        for n, r in enumerate(rows.values()):
            r.campaign_id, r.phone, r.detail, r.channel_id = camp.id, f"+86138{n:08d}", {}, f"c{n}"
            s.add(r)
        s.flush()
        ids = {k: r.id for k, r in rows.items()}
    t1 = T0 + DEAD + dt.timedelta(seconds=1)
    with st.session() as s:
        w.heartbeat(s, b, t1, {})
        w.heartbeat(s, c, t1, {})
        assert w.adopt_open_attempts(s, "pbx1", b, t1) == 2
        assert w.adopt_open_attempts(s, "pbx1", b, t1) == 0  # once
        owners = dict(s.execute(select(Attempt.id, Attempt.owner)).all())
    assert owners[ids["a-pbx1"]] == owners[ids["none-pbx1"]] == "b"
    assert owners[ids["a-pbx2"]] == "a"  # another switch: whoever reaches pbx2 adopts it
    assert owners[ids["a-pbx1-done"]] == "a"  # finished: nothing to reconcile
    assert owners[ids["c-pbx1"]] == "c"  # c is alive and follows its own call


def test_two_workers_claiming_at_once_never_both_win(pg_url: str) -> None:
    """Several workers run on PostgreSQL: the claim's row lock decides."""
    stores = [open_store(pg_url) for _ in range(2)]
    try:
        with stores[0].session() as s:
            w.register(s, ident("a"), T0)
            w.register(s, ident("b"), T0)
            w.claim_switch(s, "pbx1", ident("dead"), T0 - 2 * DEAD)
        barrier = threading.Barrier(2)
        won: dict[str, bool] = {}

        def claim(store: Store, wid: str) -> None:
            with store.session() as s:
                barrier.wait(5)  # both in a transaction; one waits for the other's row lock
                won[wid] = w.claim_switch(s, "pbx1", ident(wid), T0)

        threads = [
            threading.Thread(target=claim, args=(st, n)) for st, n in zip(stores, "ab", strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(won.values()) == [False, True]
        with stores[0].session() as s:
            assert w.switch_owners(s, ["pbx1"]) == {"pbx1": "a" if won["a"] else "b"}
    finally:
        for st in stores:
            st.dispose()


# -- the fence: a worker judged dead while only slow never dials on a switch taken over ------

CAMPAIGN = {
    "state": "running",
    "purpose": "service",
    "mode": "progressive",
    "queue": "q",
    "channel": "Local/{number}@customer",
    "caller_id": "95588",
}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=hs.lists(hs.sampled_from(["create", "prepare", "takeover"]), max_size=8))
def test_no_open_attempt_on_a_switch_is_left_to_a_worker_that_lost_it(
    st: Store, steps: list[str]
) -> None:
    """Seen on real Asterisk under load: w1 stalled past ``dead_after``, w2 took its switch
    over (adopting its open attempts) while w1 still dialled there; w1 then died for real and
    the call it had sent after the takeover was followed by nobody, its contact never done.

    Any interleaving of w1 writing and preparing attempts with w2's takeover: every attempt
    left open with a channel on the switch belongs to the switch's owner (who follows it),
    and each of w1's preparations is refused (never sent) exactly when it came after."""
    n = uuid.uuid4().hex[:12]  # one switch and campaign per example: the store is shared
    pbx, a, b = f"pbx-{n}", ident(f"a-{n}"), ident(f"b-{n}")
    with st.session() as s:
        camp, _ = apply_campaign(
            s, parse_campaign({**CAMPAIGN, "name": f"c-{n}"}), source=None, actor="t"
        )
        w.register(s, a, T0)
        w.register(s, b, T0)
        assert w.claim_switch(s, pbx, a, T0)
        camp_id = camp.id
    rows = AttemptRows(
        st, agi_url="agi://127.0.0.1:4573", now=T0.timestamp, owner=a.id, server=pbx, trail=False
    )
    later = T0 + DEAD + dt.timedelta(seconds=1)  # a has not beaten since T0: b judges it dead
    made: list[int] = []
    taken = False
    for step in steps:
        if step == "create":
            with st.session() as s:
                phone = f"+86139{len(made):08d}"
                row = Attempt(campaign_id=camp_id, phone=phone, detail={}, owner=a.id)
                s.add(row)
                s.flush()
                made.append(row.id)
        elif step == "prepare" and made:
            [got] = rows.prepare_many([made[-1]])  # a again: an exception (dialled already)
            assert isinstance(got, NotDialled) is taken, got
        elif step == "takeover":
            with st.session() as s:
                w.heartbeat(s, b, later, {})
                taken = w.claim_switch(s, pbx, b, later, takeover_only=True)
                w.adopt_open_attempts(s, pbx, b, later)
    with st.session() as s:
        owner = w.switch_owners(s, [pbx])[pbx]
        left = s.execute(
            select(Attempt.id, Attempt.owner).where(
                Attempt.server == pbx, Attempt.outcome.is_(None), Attempt.channel_id.is_not(None)
            )
        ).all()
    assert owner == (b.id if taken else a.id)
    assert [(i, o) for i, o in left if o != owner] == []


def test_a_process_killed_on_this_host_frees_its_id_at_once(st: Store) -> None:
    """``kill -9`` leaves a fresh heartbeat; a restart on the same host sees the pid is gone
    and takes the id over without waiting it out (a live pid there still refuses)."""
    import socket
    import subprocess

    host = socket.gethostname()
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["sleep", "30"])
    dead.kill()
    dead.wait()
    try:
        with st.session() as s:
            w.register(s, w.WorkerIdentity("live", host=host, pid=alive.pid), T0)
            w.register(s, w.WorkerIdentity("killed", host=host, pid=dead.pid), T0)
        soon = T0 + dt.timedelta(seconds=1)
        with pytest.raises(WorkerConflict, match="alive"), st.session() as s:
            w.register(s, w.WorkerIdentity("live", host=host), soon)
        with st.session() as s:
            w.register(s, w.WorkerIdentity("killed", host=host), soon)
        with pytest.raises(WorkerConflict, match="alive"), st.session() as s:
            # on another host a pid means nothing here: the heartbeat rules
            w.register(s, w.WorkerIdentity("other", host="elsewhere", pid=dead.pid), T0)
            w.register(s, w.WorkerIdentity("other", host=host), soon)
    finally:
        alive.kill()
        alive.wait()
