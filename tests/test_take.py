"""The dialler's one-step take (``hopper.take``) and its Originates prepared in the same
transaction (``dialer.floor.loop.lease_and_start``): the same contacts as the lease under every
rule, attempt rows committed with their ids before anything is sent, nothing behind the fence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from dialer.errors import StoreError
from dialer.floor.loop import lease_and_start
from dialer.lists.compliance import ContactState, NumberFacts, Policy
from dialer.lists.dnc import DncMatcher
from dialer.lists.hopper import lease, take
from dialer.store import Store
from dialer.store import workers as w
from dialer.store.models import Attempt, Campaign, Contact
from dialer.telephony.originate import OriginateRequest
from dialer.telephony.rows import AttemptRows
from tests.test_compliance import broken_rules
from tests.test_hopper import BASE, CN, INSTANTS, NY, at, random_world, setup


@pytest.mark.parametrize("purpose", ["service", "marketing"])
def test_take_starts_exactly_the_contacts_the_oracle_allows(
    store: Store, tmp_path: Path, purpose: str
) -> None:
    """At every instant: the contacts taken are those the independent oracle allows (the
    lease's own test), in priority order; each spent one attempt and holds no lease."""
    from dialer.lists.campaigns import parse_campaign

    cid, base = random_world(store, tmp_path, purpose, 21 if purpose == "service" else 22)
    for delta in INSTANTS:
        now = base + delta
        with store.session() as s:
            camp = s.get(Campaign, cid)
            assert camp is not None
            pol = Policy.of(parse_campaign({**BASE, "purpose": purpose}), daily_cap=2)
            dnc = DncMatcher.load(s)
            history: dict[str, list[tuple[dt.datetime, str | None]]] = {}
            for phone, t, o in s.execute(
                select(Attempt.phone, Attempt.created_at, Attempt.outcome)
            ):
                history.setdefault(phone, []).append((t, o))
            allowed, before = set(), {}
            for c in s.scalars(select(Contact).where(Contact.campaign_id == cid)):
                atts = history.get(c.phone, [])
                facts = NumberFacts(
                    dnc=dnc.blocks(c.phone, purpose),
                    attempt_times=tuple(t for t, _ in atts),
                    in_flight=any(o is None for _, o in atts),
                )
                if not broken_rules(ContactState.of(c), pol, now, facts):
                    allowed.add(c.phone)
                before[c.id] = c.attempts
            leased = {
                c.phone for c in lease(s, camp, now, 1000, "w", daily_cap=2, max_batches=1000)
            }
            s.rollback()
        with store.session() as s:
            camp = s.get(Campaign, cid)
            assert camp is not None
            got = take(s, camp, now, 1000, "w", daily_cap=2, max_batches=1000)
            assert {g.phone for g in got} == allowed == leased, now
            rows = {a.id: a for a in s.scalars(select(Attempt).where(Attempt.owner == "w"))}
            for g in got:
                a = rows[g.attempt_id]
                c = s.get(Contact, g.contact_id)
                assert c is not None and a.created_at == now and a.state == "created"
                assert a.seq == c.attempts == before[c.id] + 1
                assert c.lease_owner is None and c.last_attempt_at == now
            prios = [s.get(Contact, g.contact_id).priority for g in got]  # type: ignore[union-attr]
            assert prios == sorted(prios, reverse=True)
            s.rollback()


def test_a_number_on_a_call_from_another_campaign_is_not_taken(
    store: Store, tmp_path: Path
) -> None:
    cid = setup(store, tmp_path)
    other = setup(store, tmp_path, name="hop-twin")  # the same numbers
    now = at("2026-12-01T04:00:00+00:00")  # Shanghai open
    with store.session() as s:
        camp = s.get(Campaign, cid)
        assert camp is not None
        got = take(s, camp, now, 10, "w", daily_cap=3)
    assert [g.phone for g in got] == [CN[2], CN[0], CN[1]]
    with store.session() as s:
        twin = s.get(Campaign, other)
        assert twin is not None
        assert take(s, twin, now, 10, "w", daily_cap=3) == []  # each number on a live call


def test_a_message_spending_the_budget_meanwhile_rolls_the_take_back(
    store: Store, tmp_path: Path
) -> None:
    """A message's conditional UPDATE (the sequencer) takes a contact's last unit between the
    take's read and its write: the take writes nothing rather than overwrite the count."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL: the walk's row locks hold the message's UPDATE back")
    cid = setup(store, tmp_path, max_attempts=1)
    now = at("2026-12-01T04:00:00+00:00")
    spent: list[int] = []

    def message_first(conn: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("UPDATE contact") and not spent:
            spent.append(0)
            with store.engine.begin() as other:  # another connection commits first
                spent.append(
                    other.execute(
                        update(Contact)
                        .where(Contact.phone == CN[2], Contact.attempts == 0)
                        .values(attempts=1)
                    ).rowcount
                )

    event.listen(store.engine, "before_cursor_execute", message_first)
    try:
        with pytest.raises(StoreError), store.session() as s:
            camp = s.get(Campaign, cid)
            assert camp is not None
            take(s, camp, now, 2, "w", daily_cap=3)
    finally:
        event.remove(store.engine, "before_cursor_execute", message_first)
    assert spent == [0, 1]
    with store.session() as s:
        assert s.scalars(select(Attempt)).all() == []
        attempts = {p: n for p, n in s.execute(select(Contact.phone, Contact.attempts))}
    assert attempts[CN[2]] == 1 and attempts[CN[0]] == 0  # the message's unit, nothing else


def _rows(store: Store, owner: str, server: str) -> AttemptRows:
    return AttemptRows(
        store,
        agi_url="agi://127.0.0.1:4573",
        now=at("2026-12-01T04:00:01+00:00").timestamp,
        owner=owner,
        server=server,
        trail=False,
    )


def test_rows_and_originates_in_one_transaction_behind_the_fence(
    store: Store, tmp_path: Path
) -> None:
    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")
    t0 = at("2026-12-01T03:00:00+00:00")
    a, b = w.WorkerIdentity("a", host="h", pid=1), w.WorkerIdentity("b", host="h", pid=2)
    with store.session() as s:
        w.register(s, a, t0)
        w.register(s, b, t0)
        assert w.claim_switch(s, "pbx", b, t0)
    # the switch is b's: a takes nothing, writes nothing
    assert lease_and_start(store, _rows(store, "a", "pbx"), cid, now, 5, 3) == []
    with store.session() as s:
        assert s.scalars(select(Attempt)).all() == []
    got = lease_and_start(store, _rows(store, "b", "pbx"), cid, now, 5, 3)
    assert [x.phone for x in got] == [CN[2], CN[0], CN[1]]
    with store.session() as s:  # committed, each with the ids its Originate carries
        for attempt_id, _phone, req, _tz, _region in got:
            assert isinstance(req, OriginateRequest)
            row = s.get(Attempt, attempt_id)
            assert row is not None
            assert (row.channel_id, row.state, row.owner, row.server) == (
                req.channel_id,
                "dialing",
                "b",
                "pbx",
            )
            assert row.detail == {"other_channel_id": req.other_channel_id}
            assert row.originated_at == at("2026-12-01T04:00:01+00:00")
            assert req.variables()["DIALER_ATTEMPT"] == str(attempt_id)
    # without ``prepare`` (a preview): rows only, prepared when sent
    later = now + dt.timedelta(hours=11)  # New York and London open
    plain = lease_and_start(store, _rows(store, "b", "pbx"), cid, later, 1, 3, False)
    assert len(plain) == 1 and plain[0][2] is None
    with store.session() as s:
        row = s.get(Attempt, plain[0][0])
        assert row is not None and row.channel_id is None and row.state == "created"


def test_an_invalid_number_is_not_dialled(store: Store, tmp_path: Path) -> None:
    from dialer.telephony.rows import NotDialled

    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")
    with store.session() as s:
        s.execute(update(Contact).where(Contact.phone == CN[2]).values(phone="13800000003"))
    got = lease_and_start(store, _rows(store, "w", "pbx"), cid, now, 1, 3)
    [(attempt_id, _, req, _, _)] = got
    assert isinstance(req, NotDialled) and req.outcome.value == "invalid_number"
    with store.session() as s:
        row = s.get(Attempt, attempt_id)
        assert row is not None and row.channel_id is None  # left for the core to end
        assert s.scalar(select(Contact.attempts).where(Contact.phone == "13800000003")) == 1


def test_take_keeps_a_stored_campaign_within_the_calling_hours_ceiling(
    store: Store, tmp_path: Path
) -> None:
    """A row that says 00:00-24:00 (written by hand, or before the ceiling was lowered) still
    dials only inside the settings' calling hours (08:00-21:00 by default), each contact's own
    clock: at 06:00 in Shanghai (22:00 UTC the day before) nothing is taken."""
    from dialer.settings import Ceilings

    window = {"start": "00:00", "end": "24:00", "skip_holidays": False}
    cid = setup(store, tmp_path, calling_window=window)
    early = at("2026-11-30T22:00:00+00:00")  # 06:00 in Shanghai, 17:00 in New York

    def taken(**kw: Any) -> set[str]:
        with store.session() as s:
            camp = s.get(Campaign, cid)
            assert camp is not None
            return {st.phone for st in take(s, camp, early, 10, "w", daily_cap=3, **kw)}

    got = taken(ceilings=Ceilings())
    without = taken()  # (New York's are in flight now)
    # no Chinese number inside 08:00-21:00 at 06:00 Shanghai; New York (17:00) is open
    assert got == set(NY)
    assert set(CN) <= without  # the row's own window allowed them
