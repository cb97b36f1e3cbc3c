"""The batch writer of finished attempts (``dialer.telephony.endings``, Core statements) writes
exactly what ``hopper.finish_attempt`` (the ORM's way, one attempt at a time) writes: the same
attempt and contact rows for every outcome, fact and retry rule, a second outcome refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from dialer.lists.hopper import AttemptFacts, finish_attempt, take
from dialer.outcomes import Outcome
from dialer.store import Store, open_store
from dialer.store.models import Attempt, Campaign, Contact
from dialer.telephony import endings
from tests.test_hopper import at, setup

NOW = at("2026-12-01T04:00:00+00:00")  # Shanghai open: three contacts
END = NOW + dt.timedelta(seconds=40)
OUTCOMES = [Outcome.BUSY, Outcome.ABANDONED, Outcome.INVALID_NUMBER]


def _world(store: Store, tmp_path: Path, *, agent: bool) -> list[int]:
    cid = setup(store, tmp_path)
    with store.session() as s:
        camp = s.get(Campaign, cid)
        assert camp is not None
        started = [t.attempt_id for t in take(s, camp, NOW, 3, "w", daily_cap=3)]
        if agent:  # a preview's agent, kept when the call's facts name none
            s.execute(update(Attempt).values(agent="agent7", queue="q2"))
    return started


def _rows(store: Store) -> tuple[list[Any], list[Any]]:
    with store.session() as s:
        attempts = [
            {k: v for k, v in vars(a).items() if not k.startswith("_")}
            for a in s.scalars(select(Attempt).order_by(Attempt.id))
        ]
        contacts = [  # but the instant of the import
            {k: v for k, v in vars(c).items() if not k.startswith("_") and k != "created_at"}
            for c in s.scalars(select(Contact).order_by(Contact.id))
        ]
    return attempts, contacts


@pytest.mark.parametrize("agent", [False, True])
@pytest.mark.parametrize("rotate", [0, 1, 2])
def test_the_batch_writes_what_finish_attempt_writes(
    tmp_path: Path, agent: bool, rotate: int
) -> None:
    outcomes = OUTCOMES[rotate:] + OUTCOMES[:rotate]
    facts = [
        AttemptFacts(hangup_cause=17, ended_at=END, detail={"end_reason": "busy"}),
        AttemptFacts(
            live_answer=True,
            answered_at=NOW + dt.timedelta(seconds=5),
            queued_at=NOW + dt.timedelta(seconds=6),
            ended_at=END,
            result="promised",
            detail={"end_reason": "abandoned", "ringing_at": 1.5},
        ),
        AttemptFacts(originate_reason=0, ended_at=END),
    ]
    got = []
    for way in ("orm", "batch"):
        store = open_store(f"sqlite:///{tmp_path / way}.db")
        (tmp_path / way).mkdir()
        ids = _world(store, tmp_path / way, agent=agent)
        with store.session() as s:
            if way == "orm":
                for attempt_id, outcome, f in zip(ids, outcomes, facts, strict=True):
                    a = s.get(Attempt, attempt_id)
                    assert a is not None
                    finish_attempt(s, a, outcome, END, f)
            else:
                rows = endings.read_attempts(s, ids)
                done = endings.end_attempts(
                    s,
                    [
                        endings.Ending(rows[i], o, END, f)
                        for i, o, f in zip(ids, outcomes, facts, strict=True)
                    ],
                )
                assert sorted(done) == sorted(ids)
        got.append(_rows(store))
        store.dispose()
    assert got[0] == got[1]
    attempts, contacts = got[1]
    assert {a["outcome"] for a in attempts} == {o.value for o in OUTCOMES}
    assert all(a["state"] == "ended" and a["ended_at"] == END for a in attempts)
    assert all(a["agent"] == ("agent7" if agent else None) for a in attempts)


def test_a_second_outcome_is_not_written(store: Store, tmp_path: Path) -> None:
    ids = _world(store, tmp_path, agent=False)
    with store.session() as s:
        rows = endings.read_attempts(s, ids[:1])
        first = endings.Ending(rows[ids[0]], Outcome.BUSY, END, AttemptFacts(ended_at=END))
        again = endings.Ending(rows[ids[0]], Outcome.FAILED, END, AttemptFacts(ended_at=END))
        assert list(endings.end_attempts(s, [first, again])) == [ids[0]]  # once in a batch
    with store.session() as s:
        rows = endings.read_attempts(s, ids[:1])
        late = endings.Ending(rows[ids[0]], Outcome.FAILED, END, AttemptFacts(ended_at=END))
        assert endings.end_attempts(s, [late]) == {}  # and never over a written one
        assert s.get(Attempt, ids[0]).outcome == "busy"  # type: ignore[union-attr]


def test_a_disposition_saved_during_the_call_still_decides(store: Store, tmp_path: Path) -> None:
    """A finish the columns cannot carry (an agent's disposition) goes the ORM's way."""
    ids = _world(store, tmp_path, agent=False)
    with store.session() as s:
        a = s.get(Attempt, ids[0])
        assert a is not None
        a.detail = {"disposition": {"code": "not-interested"}}
    with store.session() as s:
        rows = endings.read_attempts(s, ids)
        done = endings.end_attempts(
            s,
            [endings.Ending(rows[i], Outcome.AGENT_HANDLED, END, AttemptFacts()) for i in ids],
        )
        assert sorted(done) == sorted(ids)
        a = s.get(Attempt, ids[0])
        assert a is not None and a.outcome == "agent_handled"
        assert a.detail == {"disposition": {"code": "not-interested"}}
