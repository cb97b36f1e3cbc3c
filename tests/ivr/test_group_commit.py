"""The FastAGI server's group-commit recorder: the same record as one transaction per write,
written in far fewer transactions; a session's end is in the store before its flow returns;
a bad write costs only itself."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from ivr_fakepbx import FakeAsterisk, Persona, header, run_tcp
from ivr_testkit import ID_LAST6, clock, seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import IvrSession, IvrStep
from ivr.context import CallContext
from ivr.engine import Services
from ivr.fastagi import FastAGIServer
from ivr.flow import FlowLibrary
from ivr.record import GroupCommitRecorder, StoreRecorder

#: flow, persona: completed, a hang-up mid-flow, a caller who presses nothing
CALLS: list[tuple[str, Persona]] = [
    ("card_activation", Persona(answers=[ID_LAST6, "1"])),
    ("repayment_reminder", Persona(answers=["1"], hangup_after=6)),
    ("satisfaction_survey", Persona(answers=[])),
    ("card_activation", Persona(answers=["000000", "000000", "000000"])),
]


def record(store: Store) -> list[tuple[Any, ...]]:
    """Each session's row and steps, without ids and times."""
    out = []
    with store.session() as s:
        for row in s.scalars(select(IvrSession).order_by(IvrSession.attempt_id)):
            steps = s.scalars(
                select(IvrStep).where(IvrStep.session_id == row.id).order_by(IvrStep.seq)
            )
            out.append(
                (
                    row.flow,
                    row.status,
                    row.result,
                    row.next,
                    row.data,
                    [(x.seq, x.node, x.kind, x.outcome, x.detail) for x in steps],
                )
            )
    return out


async def serve_calls(store: Store, recorder: Any, library: FlowLibrary, copies: int) -> None:
    services = Services(library=library, recorder=recorder, store=store, clock=clock)
    srv = FastAGIServer(services, port=0)
    await srv.start()
    try:
        calls = []
        for k in range(copies):
            for i, (flow, persona) in enumerate(CALLS):
                aid = seed_attempt(store, flow, phone=f"+86138{k:04d}{i:04d}")
                pbx = FakeAsterisk(dataclasses.replace(persona, answers=list(persona.answers)))
                script = f"{flow}?attempt={aid}"
                calls.append(run_tcp(srv.port, pbx, header(script, port=srv.port)))  # type: ignore[arg-type]
        await asyncio.gather(*calls)
    finally:
        await srv.close(grace=5)


async def test_same_record_as_one_transaction_per_write(
    store: Store, library: FlowLibrary, tmp_path: Any
) -> None:
    from dialer.store import open_store

    reference = open_store(f"sqlite:///{tmp_path / 'reference.db'}")
    try:
        await serve_calls(reference, StoreRecorder(reference, clock), library, copies=3)
        grouped = GroupCommitRecorder(store, clock, window_s=0.02)
        await serve_calls(store, grouped, library, copies=3)
        expected = record(reference)
        assert len(expected) == 3 * len(CALLS)
        assert {r[1] for r in expected} == {"completed", "hangup"}
        assert record(store) == expected
        # 12 sessions of 4-8 writes each, in far fewer transactions than writes
        steps = sum(len(r[5]) for r in expected)
        assert grouped.groups < (steps + 2 * len(expected)) / 2
        assert grouped.dropped_steps == 0
    finally:
        reference.dispose()


def test_finish_returns_once_committed_and_a_bad_step_costs_only_itself(store: Store) -> None:
    rec = GroupCommitRecorder(store, clock, window_s=0.01)
    try:
        call = CallContext(flow="notice", channel="Local/x", language="zh", is_test=True)
        sid = rec.start(call)
        assert sid is not None
        rec.step(sid, 1, "body", "play", "played", {})
        rec.step(sid + 1000, 1, "body", "play", "played", {})  # no such session: refused
        rec.step(sid, 2, "options", "menu", "no_input", {"card_no": "6222020000001234"})
        rec.finish(sid, "completed", "notified", "hangup", {})
        # visible to any other reader the moment finish returns
        seen: list[Any] = []
        t = threading.Thread(target=lambda: seen.extend(record(store)))
        t.start()
        t.join()
        ((flow, status, result, nxt, _data, steps),) = seen
        assert (flow, status, result, nxt) == ("notice", "completed", "notified", "hangup")
        assert [s[:4] for s in steps] == [
            (1, "body", "play", "played"),
            (2, "options", "menu", "no_input"),
        ]
        assert steps[1][4] == {"card_no": "****1234"}  # masked before it was queued
        assert rec.dropped_steps == 1
    finally:
        rec.close()


def test_close_commits_what_is_queued(store: Store) -> None:
    rec = GroupCommitRecorder(store, clock, window_s=5.0)  # nothing would commit for 5 s
    sid = StoreRecorder(store, clock).start(
        CallContext(flow="notice", channel="Local/x", language="zh", is_test=True)
    )
    for seq in range(1, 4):
        rec.step(sid, seq, "body", "play", "played", {})
    rec.close()
    (only,) = record(store)
    assert [s[0] for s in only[5]] == [1, 2, 3]


async def test_contexts_read_in_one_group_as_one_call_at_a_time(
    store: Store, library: FlowLibrary
) -> None:
    """Sessions opened together read their contexts in the group's one query: each gets what
    ``load_context`` alone gives it, an unknown or malformed attempt its own error only."""
    from ivr.agi import AGIConnection
    from ivr.record import resolve_context

    def env(script: str) -> Any:
        conn = AGIConnection()
        conn.receive_data(header(script))
        return conn.next_event()

    flow = library.get("card_activation")
    known = seed_attempt(store, "card_activation")
    scripts = [
        f"card_activation?attempt={known}",
        f"card_activation?attempt={known + 999}",  # no such attempt
        "card_activation?attempt=x1",  # not a number
        "card_activation",  # a test call: the flow's sample values
    ]
    rec = GroupCommitRecorder(store, clock, window_s=0.05)
    try:
        opened = await asyncio.gather(*(rec.open_async(store, flow, env(s)) for s in scripts))
    finally:
        rec.close()
    assert rec.groups == 1
    for script, got in zip(scripts, opened, strict=True):
        assert (got.call, got.error) == resolve_context(store, flow, env(script))
    assert opened[0].call.attempt_id == known and opened[0].error is None
    assert opened[1].error == f"UnknownAttempt: no attempt {known + 999}"
    assert opened[2].error is not None and opened[3].call.is_test
    with store.session() as s:
        rows = s.execute(select(IvrSession.id, IvrSession.attempt_id).order_by(IvrSession.id))
        assert [tuple(r) for r in rows] == [(o.session_id, o.call.attempt_id) for o in opened]


def test_an_end_merges_into_the_data_the_session_opened_with(store: Store) -> None:
    """Opened here, the session's end merges into the data the writer kept; opened by another
    recorder, into the data read back from its row: the same data either way."""
    rec = GroupCommitRecorder(store, clock, window_s=0.01)
    try:
        call = CallContext(flow="notice", channel="Local/x", language="en", is_test=True)
        here = rec.start(call)
        elsewhere = StoreRecorder(store, clock).start(call)
        for sid in (here, elsewhere):
            rec.finish(sid, "completed", "notified", "hangup", {"identity": "confirmed"})
    finally:
        rec.close()
    with store.session() as s:
        rows = s.scalars(select(IvrSession).order_by(IvrSession.id)).all()
        assert [(r.id, r.data) for r in rows] == [
            (sid, {"language": "en", "identity": "confirmed"}) for sid in (here, elsewhere)
        ]
