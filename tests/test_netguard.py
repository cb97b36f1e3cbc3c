"""Admission control: waiting connections make way, live ones stay, time-outs shrink."""

from __future__ import annotations

import logging

import pytest

from dialer.netguard import ConnectionGuard, ConnState, GuardLimits, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def guard(clock: Clock, **kw: float) -> ConnectionGuard:
    limits = GuardLimits(
        **{"max_connections": 4, "max_per_address": 3, "header_timeout_s": 10.0, **kw}  # type: ignore[arg-type]
    )
    return ConnectionGuard(limits, clock)


def test_a_new_connection_evicts_the_oldest_waiting_one_never_an_active_one() -> None:
    c = Clock()
    g = guard(c)
    for k in "abc":
        c.t += 1
        assert g.admit(k, "10.0.0.1").accepted
    g.activated("a")
    # per address: the oldest WAITING of that address goes, not the active one
    adm = g.admit("d", "10.0.0.1")
    assert adm.accepted and adm.evict == ("b",)
    assert g.state("a") is ConnState.ACTIVE and g.state("b") is None
    # in all: another address evicts the oldest waiting of any address
    assert g.admit("e", "10.0.0.2").accepted and len(g) == 4
    adm = g.admit("f", "10.0.0.3")
    assert adm.evict == ("c",)
    for k in ("d", "e", "f"):
        g.activated(k)
    refused = g.admit("g", "10.0.0.4")  # every connection is live: refused
    assert not refused.accepted and g.stats.refused == 1


def test_header_timeout_shrinks_with_load_for_those_already_waiting() -> None:
    c = Clock()
    g = guard(c, max_connections=10, max_per_address=10, header_timeout_min_s=1.0)
    assert g.header_timeout() == 10.0
    g.admit("a", "x")
    c.t = 5.0
    assert g.expired() == []
    for i in range(9):
        g.admit(i, "x")
    assert g.header_timeout() == pytest.approx(1.0)  # full
    assert g.expired() == ["a"]  # 5 s old: past the shrunk time-out
    c.t = 7.5  # 9 of 10 open: a 1.9 s time-out
    assert len(g.expired()) == 9 and len(g) == 0 and g.stats.timed_out == 10


def test_keep_alive_connection_waits_again_as_the_youngest() -> None:
    c = Clock()
    g = guard(c)
    g.admit("a", "x")
    g.activated("a")
    c.t = 1
    g.admit("b", "x")
    c.t = 2
    g.waiting("a")
    c.t = 3
    g.admit("c", "x")
    adm = g.admit("d", "x")  # per-address limit 3: the oldest waiting is b, not a
    assert adm.evict == ("b",)


def test_last_read_holds_the_evicted_and_timed_out_until_reaped_and_spares_a_late_head() -> None:
    c = Clock()
    limits = GuardLimits(max_connections=2, max_per_address=2, header_timeout_s=10.0)
    g: ConnectionGuard[str] = ConnectionGuard(limits, c, last_read=True)
    g.admit("a", "x")
    c.t = 1
    g.admit("b", "x")
    assert g.admit("c", "x").evict == ("a",)  # the oldest waiting makes way: held, not gone
    assert g.held_count == 1 and len(g) == 2
    c.t = 60
    assert g.expired() == []  # past the time-out: late, still waiting until the next sweep
    assert g.expired() == ["b", "c"]  # still late: held too
    assert len(g) == 0 and g.held_count == 3
    # the last read brought a's and c's headers: both are live sessions (beyond the limit
    # if need be); b sent nothing and is closed
    assert g.activated("a") and g.activated("c")
    assert g.reap() == ["b"]
    assert g.state("a") is ConnState.ACTIVE and g.state("c") is ConnState.ACTIVE
    assert g.stats.spared == 2 and g.held_count == 0 and len(g) == 2
    assert not g.activated("b")  # reaped: the server closes it, the guard forgets it
    assert g.admit("d", "x").accepted is False  # every connection is live: refused
    g.closed("a")
    assert g.admit("d", "x").accepted  # the per-address count followed the spared ones


def test_last_read_a_stall_makes_everyone_late_but_only_the_next_sweep_times_out() -> None:
    c = Clock()
    limits = GuardLimits(max_connections=10, max_per_address=10, header_timeout_s=10.0)
    g: ConnectionGuard[str] = ConnectionGuard(limits, c, last_read=True)
    g.admit("idle", "x")
    c.t = 2
    g.admit("asterisk", "x")  # its header is on the way when the server stalls
    c.t = 30  # the stall: both past their time-out when the sweeper runs again
    assert g.expired() == []
    g.activated("asterisk")  # read in the passes before the next sweep
    c.t = 30.25
    assert g.expired() == ["idle"] and g.reap() == ["idle"]
    assert g.state("asterisk") is ConnState.ACTIVE and g.stats.timed_out == 1


def test_without_last_read_the_evicted_are_gone_at_once() -> None:
    g: ConnectionGuard[str] = ConnectionGuard(GuardLimits(max_connections=1, max_per_address=1))
    g.admit("a", "x")
    assert g.admit("b", "x").evict == ("a",)
    assert g.held_count == 0 and g.reap() == [] and not g.activated("a")


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    c = Clock()
    rl = RateLimitedLog(logging.getLogger("t"), per_interval=2, interval_s=10, clock=c)
    caplog.set_level(logging.WARNING, logger="t")
    assert [rl.warning("k", "line %d", i) for i in range(5)] == [True, True, False, False, False]
    c.t = 11
    assert rl.warning("k", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "line 0",
        "line 1",
        "later (and 3 more like it not logged)",
    ]
