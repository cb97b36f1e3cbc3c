"""The call tracker fed with real Asterisk 22 transcripts: one right outcome per scenario."""

from __future__ import annotations

import dataclasses

import pytest
from ami_replay import Register, fixture, parse, replay, run_steps, steps
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import IllegalTransition
from dialer.outcomes import AttemptState, Outcome
from dialer.telephony.ami.messages import Event, Headers
from dialer.telephony.ami.transcript import read_transcript
from dialer.telephony.tracker import (
    TRANSITIONS,
    CallPlan,
    CallTracker,
    Finished,
    IvrSay,
    OutcomeFacts,
    Signal,
    Transition,
    decide,
)

IVR = CallPlan(flow="card_activation")
QUEUE = CallPlan(queue="agents")
AMD = CallPlan(amd="hangup")


@pytest.mark.parametrize(
    ("transcript", "plans", "expected"),
    [
        (
            "ami-failures.txt",
            None,
            # busy, congestion, ring timeout, no such extension, unallocated, bad context,
            # and a synchronous Originate refused with Response: Error
            ["busy", "congestion", "no_answer", "failed", "invalid_number", "failed", "failed"],
        ),
        # the AGI script hung up without IVR_RESULT: the tracker cannot call it completed
        ("ami-originate.txt", [IVR], ["customer_hangup"]),
        ("ami-noagi.txt", [IVR], ["failed"]),  # FastAGI server down: AGISTATUS=FAILURE
        ("ami-hangup-action.txt", [IVR] * 3, ["customer_hangup"] * 3),
        # NOTSURE (no media after a word), HUMAN, MACHINE x3 (long greeting, silence), NOTSURE
        (
            "ami-amd.txt",
            [AMD] * 6,
            ["completed", "completed", "machine", "machine", "machine", "completed"],
        ),
        # Queue(q,,,,2) with a paused member / no member: abandon at 2 s; caller hangs up queued
        ("ami-queue-2s-rule.txt", [QUEUE] * 3, ["abandoned"] * 3),
        ("ami-queue-agent-noanswer.txt", [QUEUE], ["abandoned"]),
        ("ami-queue.txt", [QUEUE], ["agent_handled"]),
        ("ami-queue-wrapup.txt", [QUEUE] * 3, ["agent_handled"] * 3),
        ("ami-resync-status.txt", [IVR, QUEUE], ["customer_hangup", "agent_handled"]),
    ],
)
def test_recorded_scenarios_end_with_the_right_outcome(
    transcript: str, plans: list[CallPlan] | None, expected: list[str]
) -> None:
    r = replay(transcript, plans)
    assert [r.outcome_of(a) for a in r.registered] == expected
    assert len(r.finished) == len(r.registered)  # exactly one outcome each
    assert not r.tracker.live()


def test_busy_with_channel_id_and_cancelled_ringing_call() -> None:
    r = replay("ami-extras.txt", [CallPlan(), IVR] + [CallPlan()] * 2)
    busy, agi, cancelled = (next(f for f in r.finished if f.attempt_id == a) for a in (1, 2, 3))
    assert busy.outcome is Outcome.BUSY and busy.hangup_cause == 17 and busy.originate_reason == 5
    assert agi.outcome is Outcome.CUSTOMER_HANGUP and agi.answered_at is not None
    # our own Hangup action on a ringing call reports cause 21 (rejected); the service ends
    # calls it cancels itself (interrupted), so the raw stream maps to the "rejected" class
    assert cancelled.outcome is Outcome.BUSY and cancelled.hangup_cause == 21
    # an Originate refused synchronously (Response: Error, invalid timeout) is a failure
    assert [f.outcome for f in r.finished if f.attempt_id > 3] == [Outcome.FAILED]


def test_timestamps_of_a_queue_abandon_and_an_agent_call() -> None:
    r = replay("ami-queue-2s-rule.txt", [QUEUE] * 3)
    f = r.finished[0]
    assert f.answered_at and f.greeting_end_at == f.answered_at  # AMD off
    assert f.queued_at and f.bridged_at is None and f.queue == "agents-empty"
    assert f.ended_at - f.queued_at > 2.0  # 2 s hold limit, then the prompt
    assert f.live_answer
    q = replay("ami-queue.txt", [QUEUE]).finished[0]
    assert q.bridged_at and q.agent == "Agent One" and q.queue == "agents"
    assert q.queued_at <= q.bridged_at <= q.ended_at


def test_amd_sets_greeting_end_and_live_answer() -> None:
    r = replay("ami-amd.txt", [AMD] * 6)
    by = {f.attempt_id: f for f in r.finished}
    assert by[2].amd_status == "HUMAN" and by[2].live_answer
    assert by[3].amd_status == "MACHINE" and not by[3].live_answer
    assert by[3].detail["AMDCAUSE"].startswith("LONGGREETING")
    for f in by.values():
        assert f.answered_at is not None and f.greeting_end_at is not None
        assert f.greeting_end_at > f.answered_at  # AMD took time after the answer


def test_events_arrive_before_originate_response_and_transitions_follow_the_table() -> None:
    r = replay("ami-queue.txt", [QUEUE])
    path = [(u.before, u.after) for u in r.updates if isinstance(u, Transition)]
    S = AttemptState
    assert path == [
        (S.DIALING, S.RINGING),
        (S.RINGING, S.ANSWERED),
        (S.ANSWERED, S.QUEUED),
        (S.QUEUED, S.WITH_AGENT),
        (S.WITH_AGENT, S.ENDED),
    ]
    for u in r.updates:
        if isinstance(u, Transition):
            assert TRANSITIONS[(u.before, u.signal)] is u.after


def _ev(name: str, **fields: str) -> Event:
    return Event(name, Headers([("Event", name), *fields.items()]))


def test_illegal_transition_raises() -> None:
    t = CallTracker()
    t.register(1, "a" * 36, plan=QUEUE, now=0.0)
    with pytest.raises(IllegalTransition):
        t.feed(_ev("AgentConnect", Uniqueid="a" * 36, Queue="q", MemberName="x"), 1.0)
    t2 = CallTracker()
    t2.register(1, "b" * 36, now=0.0)
    with pytest.raises(IllegalTransition):
        t2.feed(_ev("QueueCallerJoin", Uniqueid="b" * 36, Queue="q"), 1.0)
    with pytest.raises(IllegalTransition):
        t2.register(1, "c" * 36, now=0.0)


def test_a_refused_event_leaves_no_fact_behind() -> None:
    """The table is checked before an event's facts are written: a QueueCallerJoin while still
    dialling is refused and leaves no queue entry, so the answered call that then hangs up is a
    customer hang-up, not an abandon counted against the cap."""
    t = CallTracker()
    cid = "d" * 36
    t.register(1, cid, plan=QUEUE, now=0.0)
    t.feed(_ev("Newchannel", Uniqueid=cid, ChannelState="0"), 0.1)
    with pytest.raises(IllegalTransition):
        t.feed(_ev("QueueCallerJoin", Uniqueid=cid, Queue="agents"), 0.2)
    call = t.calls[1]
    assert call.queued_at is None and call.queue is None
    t.feed(_ev("Newstate", Uniqueid=cid, ChannelState="6"), 1.0)
    t.feed(_ev("OriginateResponse", ActionID="x", Response="Success", Reason="4"), 1.0)
    updates = t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 3.0)
    (done,) = [u for u in updates if isinstance(u, Finished)]
    assert done.outcome is Outcome.CUSTOMER_HANGUP
    assert done.queued_at is None


IVR_CALL = OutcomeFacts(
    originate_error=False,
    answered=True,
    originate_reason=4,
    hangup_cause=16,
    amd_status=None,
    bridged=False,
    queued_at=None,
    via_ivr=True,
    in_ivr=False,
    ivr_result=None,
    queue_status=None,
    agi_status=None,
    ivr_failed=False,
    planned_flow_or_queue=True,
    customer_hung_up_first=True,
)


@pytest.mark.parametrize(
    ("facts", "say", "expected"),
    [
        (IVR_CALL, None, (Outcome.CUSTOMER_HANGUP, None)),
        (IVR_CALL, IvrSay("completed", "activated"), (Outcome.COMPLETED, "activated")),
        # the flow failed (its error): the IVR's fault, with the partial result it reached
        (IVR_CALL, IvrSay("error", "notified"), (Outcome.IVR_FAILED, "notified")),
        (IVR_CALL, IvrSay("hangup", "notified"), (Outcome.CUSTOMER_HANGUP, "notified")),
        (IVR_CALL, IvrSay("running"), (Outcome.CUSTOMER_HANGUP, None)),  # no say on its end
        # a queued call's outcome is the queue's, whatever the flow recorded before it
        (
            dataclasses.replace(IVR_CALL, queued_at=5.0),
            IvrSay("completed", "x"),
            (Outcome.CUSTOMER_HANGUP, None),
        ),
        # the flow never ran (the dialplan marked it): the fault, not the customer; the
        # queue it was rescued to and the IVR's lack of a record change nothing
        (
            dataclasses.replace(IVR_CALL, ivr_failed=True, agi_status="FAILURE"),
            None,
            (Outcome.IVR_FAILED, None),
        ),
        (
            dataclasses.replace(IVR_CALL, ivr_failed=True, queued_at=5.0),
            IvrSay("error"),
            (Outcome.IVR_FAILED, None),
        ),
        # rescued after a crash mid-way (or a cut connection the IVR took for a hang-up): the
        # dialplan's mark decides, the flow's partial result is kept
        (
            dataclasses.replace(IVR_CALL, ivr_failed=True, queued_at=5.0),
            IvrSay("hangup", "notified"),
            (Outcome.IVR_FAILED, "notified"),
        ),
        (
            dataclasses.replace(IVR_CALL, ivr_failed=True, queued_at=5.0, bridged=True),
            None,
            (Outcome.AGENT_HANDLED, None),
        ),
        # a machine stays a machine
        (
            dataclasses.replace(IVR_CALL, amd_status="MACHINE"),
            IvrSay("completed"),
            (Outcome.MACHINE, None),
        ),
    ],
)
def test_one_decision_includes_the_ivr_sessions_say(
    facts: OutcomeFacts, say: IvrSay | None, expected: tuple[Outcome, str | None]
) -> None:
    verdict = decide(facts, say)
    assert (verdict.outcome, verdict.result) == expected


def test_other_channel_id_and_agent_legs() -> None:
    """The ;2 leg is ours by OtherChannelId; an agent leg that only shares Linkedid is not."""
    t = CallTracker()
    cid, other = "1" * 36, "2" * 36
    t.register(7, cid, other_channel_id=other, action_id="o-7", plan=QUEUE, now=0.0)
    t.feed(_ev("Newchannel", Uniqueid=cid, ChannelState="0"), 0.1)
    t.feed(_ev("Newchannel", Uniqueid=other, ChannelState="4"), 0.1)
    assert t.feed(_ev("Hangup", Uniqueid="agent-1", Linkedid=cid, Cause="16"), 0.2) == []
    assert t.ignored_events == 1
    t.feed(_ev("Newstate", Uniqueid=other, ChannelState="6"), 1.0)
    t.feed(_ev("QueueCallerJoin", Uniqueid=cid, Queue="agents"), 1.1)
    t.feed(_ev("OriginateResponse", ActionID="o-7", Response="Success", Reason="4"), 1.2)
    t.feed(_ev("Hangup", Uniqueid=other, Cause="16"), 2.0)  # the customer gives up
    t.feed(_ev("QueueCallerAbandon", Uniqueid=cid, Queue="agents", HoldTime="1"), 2.0)
    [fin] = [
        u for u in t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 2.1) if isinstance(u, Finished)
    ]
    assert fin.outcome is Outcome.ABANDONED and fin.hangup_cause == 16


def test_ivr_result_and_transfer() -> None:
    t = CallTracker()
    cid = "3" * 36
    t.register(1, cid, plan=IVR, now=0.0)
    for ev in [
        _ev("Newchannel", Uniqueid=cid, ChannelState="0"),
        _ev("Newstate", Uniqueid=cid, ChannelState="6"),
        _ev("Newexten", Uniqueid=cid, Application="AGI"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_RESULT", Value="activated"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_NEXT", Value="hangup"),
    ]:
        t.feed(ev, 1.0)
    [fin] = t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 9.0)[-1:]
    assert isinstance(fin, Finished)
    assert fin.outcome is Outcome.COMPLETED and fin.result == "activated"
    # an IVR transfer the caller gives up on is a customer hang-up, not an abandon
    t.register(2, "4" * 36, plan=IVR, now=10.0)
    cid = "4" * 36
    for ev in [
        _ev("Newstate", Uniqueid=cid, ChannelState="6"),
        _ev("Newexten", Uniqueid=cid, Application="AGI"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_NEXT", Value="queue:agents"),
        _ev("QueueCallerJoin", Uniqueid=cid, Queue="agents"),
        _ev("QueueCallerAbandon", Uniqueid=cid, Queue="agents"),
    ]:
        t.feed(ev, 11.0)
    [fin] = t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 20.0)[-1:]
    assert isinstance(fin, Finished) and fin.outcome is Outcome.CUSTOMER_HANGUP


def test_a_flow_that_says_it_failed_is_an_ivr_failure_even_if_the_caller_leaves_at_once() -> None:
    """``IVR_NEXT=failed`` (a crash mid-way) and the caller gone before the dialplan's own
    ``DIALER_IVR=failed`` mark: still the IVR's fault, with the result it reached."""
    t = CallTracker()
    cid = "8" * 36
    t.register(1, cid, plan=IVR, now=0.0)
    for ev in [
        _ev("Newstate", Uniqueid=cid, ChannelState="6"),
        _ev("Newexten", Uniqueid=cid, Application="AGI"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_RESULT", Value="notified"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_RESCUE", Value="queue"),
        _ev("VarSet", Uniqueid=cid, Variable="IVR_NEXT", Value="failed"),
    ]:
        t.feed(ev, 1.0)
    [fin] = t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 3.0)[-1:]
    assert isinstance(fin, Finished)
    assert (fin.outcome, fin.result) == (Outcome.IVR_FAILED, "notified")


def test_safe_harbour_message_is_timestamped() -> None:
    t = CallTracker()
    cid = "5" * 36
    t.register(1, cid, plan=QUEUE, now=0.0)
    t.feed(_ev("Newstate", Uniqueid=cid, ChannelState="6"), 1.0)
    t.feed(_ev("QueueCallerJoin", Uniqueid=cid, Queue="agents"), 1.1)
    t.feed(_ev("QueueCallerAbandon", Uniqueid=cid, Queue="agents", HoldTime="2"), 3.1)
    t.feed(_ev("VarSet", Uniqueid=cid, Variable="QUEUESTATUS", Value="TIMEOUT"), 3.1)
    t.feed(_ev("VarSet", Uniqueid=cid, Variable="DIALER_MSG", Value="played"), 7.0)
    [fin] = t.feed(_ev("Hangup", Uniqueid=cid, Cause="16"), 7.1)[-1:]
    assert isinstance(fin, Finished)
    assert fin.outcome is Outcome.ABANDONED and fin.message_played_at == 7.0
    assert fin.detail["QUEUESTATUS"] == "TIMEOUT"


def test_missing_originate_response_ends_after_grace() -> None:
    t = CallTracker()
    cid = "6" * 36
    t.register(1, cid, now=0.0)
    t.feed(_ev("Newchannel", Uniqueid=cid, ChannelState="0"), 0.0)
    assert t.feed(_ev("Hangup", Uniqueid=cid, Cause="17"), 3.0) == []
    assert t.tick(4.0) == []
    [fin] = [u for u in t.tick(9.0) if isinstance(u, Finished)]
    assert fin.outcome is Outcome.BUSY


# -- resync after a reconnect ---------------------------------------------------------------


def _listing() -> list[Event]:
    conn = read_transcript(fixture("ami-resync-status-conn2.txt"))[0]
    return [
        m
        for m in parse(conn.received_bytes(), banner=True)
        if isinstance(m, Event) and m.name == "CoreShowChannel"
    ]


def test_reconcile_with_the_recorded_listing() -> None:
    listing = _listing()
    ivr_id = "83f5b147-87a3-4209-8938-019627f8d9c8"
    queue_id = "544c5b36-7728-473f-9dd8-ef9f6b8c1b87"
    t = CallTracker()
    t.register(1, ivr_id, plan=IVR, now=0.0)  # dialled, then the connection dropped
    t.register(2, queue_id, plan=QUEUE, now=0.0)
    t.register(3, "7" * 36, plan=QUEUE, now=0.0)  # gone without a trace
    t.register(4, "8" * 36, action_id="o-4", now=0.0)  # busy before the drop
    t.feed(_ev("Newchannel", Uniqueid="8" * 36, ChannelState="0"), 0.4)
    t.feed(_ev("OriginateResponse", ActionID="o-4", Response="Failure", Reason="5"), 0.5)
    t.register(5, "9" * 36, now=0.0)
    t.feed(_ev("Newchannel", Uniqueid="9" * 36, ChannelState="0"), 0.5)
    t.register(6, "a" * 36, now=0.0)
    t.mark_disconnected(1.0)
    t.feed(_ev("Newchannel", Uniqueid="a" * 36, ChannelState="0"), 1.5)  # spoke after
    ups = t.reconcile(listing, now=2.0)
    fin = {u.attempt_id: u for u in ups if isinstance(u, Finished)}
    assert fin[3].outcome is Outcome.UNKNOWN and fin[3].end_reason == "resync: no trace"
    assert fin[4].outcome is Outcome.BUSY
    assert fin[5].outcome is Outcome.UNKNOWN
    assert set(fin) == {3, 4, 5}
    states = {c.attempt_id: c.state for c in t.live()}
    assert states == {1: AttemptState.IN_IVR, 2: AttemptState.WITH_AGENT, 6: AttemptState.DIALING}
    # the followed calls end normally from their own events afterwards
    t.feed(_ev("Hangup", Uniqueid=queue_id + ";2", Cause="16"), 3.0)
    [f2] = t.feed(_ev("Hangup", Uniqueid=queue_id, Cause="16"), 3.0)[-1:]
    assert isinstance(f2, Finished) and f2.outcome is Outcome.AGENT_HANDLED and f2.resynced


def test_transcript_cut_short_then_reconciled_to_unknown() -> None:
    """fastagi-commands ends with a leg still up: after a reconnect with an empty listing the
    attempt is `unknown`, and it is reported exactly once."""
    r = replay("ami-fastagi-commands.txt", [IVR])
    assert r.finished == [] and len(r.tracker.live()) == 1
    now = r.tracker.live()[0].last_event_at or 0.0
    r.tracker.mark_disconnected(now + 1)
    [fin] = [u for u in r.tracker.reconcile([], now=now + 2) if isinstance(u, Finished)]
    assert fin.outcome is Outcome.UNKNOWN
    assert r.tracker.reconcile([], now=now + 3) == []
    assert r.tracker.end(1, Outcome.INTERRUPTED, now + 4, "again") == []


def test_signals_cover_every_state() -> None:
    for state in AttemptState:
        if state in (AttemptState.CREATED, AttemptState.ENDED):
            continue
        assert (state, Signal.END) in TRANSITIONS
    assert not [k for k in TRANSITIONS if k[0] is AttemptState.ENDED]


# -- order independence --------------------------------------------------------------------

CASES = {
    "ami-failures.txt": None,
    "ami-amd.txt": [AMD] * 6,
    "ami-queue-2s-rule.txt": [QUEUE] * 3,
    "ami-queue.txt": [QUEUE],
    "ami-queue-wrapup.txt": [QUEUE] * 3,
    "ami-noagi.txt": [IVR],
    "ami-extras.txt": [CallPlan(), IVR] + [CallPlan()] * 2,
}
STEPS = {name: steps(name) for name in CASES}
EXPECTED = {name: run_steps(seq, CASES[name]) for name, seq in STEPS.items()}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_originate_response_anywhere_after_the_first_event_gives_the_same_outcome(
    data: st.DataObject,
) -> None:
    """Asterisk sends OriginateResponse after the call's first events, but how long after
    races with the legs (recorded: before DialBegin, between the two Hangups, at the end).
    Wherever it lands, the outcome and the timestamps of the answer must not change."""
    name = data.draw(st.sampled_from(sorted(STEPS)))
    seq = list(STEPS[name])
    ors = [i for i, m in enumerate(seq) if isinstance(m, Event) and m.name == "OriginateResponse"]
    i = data.draw(st.sampled_from(ors))
    orr = seq[i]
    assert isinstance(orr, Event)
    reg = max(j for j in range(i) if isinstance(seq[j], Register))
    firsts = [
        j
        for j in range(reg, i)
        if isinstance(seq[j], Event) and seq[j].name == "Newchannel"  # type: ignore[union-attr]
    ]
    if not firsts:
        return
    k = data.draw(st.integers(firsts[0] + 1, i))
    moved = seq[:i] + seq[i + 1 :]
    moved.insert(k, orr)
    got = run_steps(moved, CASES[name])
    want = EXPECTED[name]
    assert [f.outcome for f in sorted(got.finished, key=lambda f: f.attempt_id)] == [
        f.outcome for f in sorted(want.finished, key=lambda f: f.attempt_id)
    ]


def test_watchdog_and_missing_hangups() -> None:
    t = CallTracker()
    t.register(1, "d" * 36, plan=CallPlan(ring_timeout_s=20), now=0.0)  # never a word
    t.register(2, "e" * 36, action_id="o-2", now=0.0)
    t.feed(_ev("Newchannel", Uniqueid="e" * 36, ChannelState="0"), 0.1)
    t.feed(_ev("OriginateResponse", ActionID="o-2", Response="Failure", Reason="8"), 1.0)
    assert t.tick(5.0) == []  # within the grace
    [f2] = [u for u in t.tick(6.5) if isinstance(u, Finished)]
    assert f2.attempt_id == 2 and f2.outcome is Outcome.CONGESTION
    assert t.tick(79.0) == []
    [f1] = [u for u in t.tick(80.0) if isinstance(u, Finished)]
    assert f1.outcome is Outcome.UNKNOWN and f1.end_reason == "watchdog"
    assert t.counts() == dict.fromkeys(t.counts(), 0)


def test_reconcile_restores_facts_from_channel_variables() -> None:
    """VarSets lost while disconnected (AMD verdict, IVR result) come back from ``Status``
    with ``Variables:``; the call then ends with the outcome it really had."""
    listing = _listing()
    ivr_id = "83f5b147-87a3-4209-8938-019627f8d9c8"
    t = CallTracker()
    t.register(1, ivr_id, plan=CallPlan(amd="hangup", flow="notice"), now=0.0)
    t.mark_disconnected(1.0)
    t.reconcile(
        listing,
        now=2.0,
        variables={ivr_id: {"AMDSTATUS": "HUMAN", "IVR_RESULT": "notified", "IVR_NEXT": "hangup"}},
    )
    [call] = t.live()
    assert call.state is AttemptState.IN_IVR and call.amd_status == "HUMAN"
    t.feed(_ev("Hangup", Uniqueid=ivr_id + ";2", Cause="16"), 3.0)
    [fin] = t.feed(_ev("Hangup", Uniqueid=ivr_id, Cause="16"), 3.0)[-1:]
    assert isinstance(fin, Finished)
    assert fin.outcome is Outcome.COMPLETED and fin.result == "notified" and fin.live_answer


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_lossy_streams_still_give_exactly_one_outcome_per_attempt(data: st.DataObject) -> None:
    """Drop any events (a lossy link, a missing read class): the tracker may refuse some
    (IllegalTransition, which the service logs and skips) but after the timers and a resync
    every attempt has ended exactly once."""
    name = data.draw(st.sampled_from(sorted(STEPS)))
    seq = STEPS[name]
    keep = data.draw(st.lists(st.booleans(), min_size=len(seq), max_size=len(seq)))
    plans = CASES[name]
    t = CallTracker()
    finished: list[Finished] = []
    now = 0.0
    for step, kept in zip(seq, keep, strict=True):
        if isinstance(step, Register):
            t.register(
                step.attempt_id,
                step.channel_id,
                other_channel_id=step.other_channel_id,
                action_id=step.action_id,
                plan=plans[step.attempt_id - 1] if plans else CallPlan(),
                now=now,
            )
        elif isinstance(step, Event) and kept:
            now = max(now, float(step.headers.get("Timestamp") or now))
            try:
                finished += [u for u in t.feed(step, now) if isinstance(u, Finished)]
            except IllegalTransition:
                pass
    finished += [u for u in t.tick(now + 1000) if isinstance(u, Finished)]
    t.mark_disconnected(now + 1000)
    finished += [u for u in t.reconcile([], now + 1001) if isinstance(u, Finished)]
    ids = [f.attempt_id for f in finished]
    registered = [s.attempt_id for s in seq if isinstance(s, Register)]
    assert sorted(ids) == sorted(registered)


# -- a resync whose listing is older than the events read while it ran -----------------------

ONE = "c" * 36  # the Originate's channel (;1: the AGI or the Queue)
TWO = "d" * 36  # its ;2 (the called party)


def _shown(uid: str, app: str) -> Event:
    """One ``CoreShowChannel`` of the listing: the leg is up, in ``app``."""
    return _ev("CoreShowChannel", Uniqueid=uid, ChannelState="6", Application=app)


def _recovered(plan: CallPlan) -> CallTracker:
    """A call a worker follows again after a restart or a takeover (``DialerCore.start``):
    registered from its row, nothing known of it, the connection marked lost."""
    t = CallTracker()
    t.register(1, ONE, other_channel_id=TWO, plan=plan, now=0.0)
    t.mark_disconnected(10.0)
    return t


def test_a_hangup_read_while_the_resync_ran_is_not_undone_by_its_older_listing() -> None:
    """Seen on real Asterisk (a takeover under load): the listing showed both legs in the
    IVR, the Hangups arrived between ``CoreShowChannels`` and the end of ``QueueStatus``,
    then the listing was applied. The legs must stay down and the call end: a uniqueid
    never comes back, and no other event would ever end it."""
    t = _recovered(IVR)
    listing = [_shown(ONE, "AGI"), _shown(TWO, "Wait")]
    t.feed(_ev("VarSet", Uniqueid=ONE, Variable="AGISTATUS", Value="SUCCESS"), 11.0)
    assert t.feed(_ev("Hangup", Uniqueid=ONE, Cause="16"), 11.0) == []
    assert t.feed(_ev("Hangup", Uniqueid=TWO, Cause="16"), 11.0) == []
    ups = t.reconcile(listing, now=11.5)
    [fin] = [u for u in ups if isinstance(u, Finished)]
    assert fin.outcome is not Outcome.UNKNOWN and fin.answered_at is not None
    assert t.live() == [] and t.tick(100.0) == []


@settings(max_examples=150, deadline=None)
@given(
    plan=st.sampled_from([IVR, QUEUE, CallPlan()]),
    apps=st.sampled_from([("AGI", "Wait"), ("Queue", "Wait"), ("AppDial2", "Wait")]),
    listed=st.sampled_from([(ONE, TWO), (ONE,), (TWO,), ()]),
    order=st.permutations(["hangup1", "hangup2", "varset", "reconcile"]),
    recovered=st.booleans(),
)
def test_any_interleaving_of_a_resync_and_the_hangups_ends_the_call_exactly_once(
    plan: CallPlan,
    apps: tuple[str, str],
    listed: tuple[str, ...],
    order: list[str],
    recovered: bool,
) -> None:
    """A followed call (recovered from the store, or dialled by this worker and then cut
    off) whose legs the listing shows or not, with its Hangups read before, between or after
    the listing is applied: once both legs are down and the timers ran, it has ended once
    and is followed no more."""
    if recovered:
        t = _recovered(plan)
    else:
        t = CallTracker()
        t.register(1, ONE, other_channel_id=TWO, action_id="o-1", plan=plan, now=0.0)
        t.feed(_ev("Newchannel", Uniqueid=ONE, ChannelState="0"), 1.0)
        t.feed(_ev("Newchannel", Uniqueid=TWO, ChannelState="0"), 1.0)
        t.feed(_ev("OriginateResponse", ActionID="o-1", Response="Success", Reason="4"), 2.0)
        t.mark_disconnected(10.0)
    listing = [_shown(uid, apps[0] if uid == ONE else apps[1]) for uid in listed]
    events = {
        "hangup1": _ev("Hangup", Uniqueid=ONE, Cause="16"),
        "hangup2": _ev("Hangup", Uniqueid=TWO, Cause="16"),
        "varset": _ev("VarSet", Uniqueid=ONE, Variable="AGISTATUS", Value="SUCCESS"),
    }
    finished: list[Finished] = []
    now = 11.0
    for step in order:
        now += 0.1
        if step == "reconcile":
            ups = t.reconcile(listing, now=now)
        else:
            try:
                ups = t.feed(events[step], now)
            except IllegalTransition:  # the service logs and skips it
                ups = []
        finished += [u for u in ups if isinstance(u, Finished)]
    finished += [u for u in t.tick(now + 100.0) if isinstance(u, Finished)]
    assert [f.attempt_id for f in finished] == [1]
    assert t.live() == []


def _answer_at_ring_timeout(up_first: bool, plan: CallPlan) -> tuple[list[Finished], CallTracker]:
    """The called party answers as the Originate's ring timeout runs out. Seen on the
    simulated PBX against the wall clock when the event loop stalled past both timers: the
    party's answer and the Originate's timeout became due together; the ``;2`` leg went Up,
    then the ``;1`` leg was torn down with ``OriginateResponse: Failure, Reason: 3``. With the
    timeout first, the Failure comes before the Up."""
    t = CallTracker()
    one, two = "f" * 36, "9" * 36
    t.register(1, one, other_channel_id=two, action_id="o-1", plan=plan, now=0.0)
    up = _ev("Newstate", Uniqueid=two, ChannelState="6")
    failure = _ev("OriginateResponse", ActionID="o-1", Response="Failure", Reason="3", Uniqueid=one)
    seq = [
        _ev("Newchannel", Uniqueid=one, ChannelState="0"),
        _ev("Newchannel", Uniqueid=two, ChannelState="4"),
        _ev("Newstate", Uniqueid=one, ChannelState="5"),
        *([up] if up_first else []),
        _ev("HangupRequest", Uniqueid=two),
        _ev("Hangup", Uniqueid=one, Cause="19"),
        failure,
        *([] if up_first else [up]),
        _ev("Hangup", Uniqueid=two, Cause="16"),
    ]
    out: list[Finished] = []
    for i, e in enumerate(seq):
        out += [u for u in t.feed(e, 25.0 + i / 100) if isinstance(u, Finished)]
    return out, t


@pytest.mark.parametrize("up_first", [True, False])
@pytest.mark.parametrize(("plan", "expected"), [(QUEUE, Outcome.ABANDONED), (IVR, Outcome.FAILED)])
def test_an_answer_at_the_ring_timeout_is_legal_in_either_order(
    up_first: bool, plan: CallPlan, expected: Outcome
) -> None:
    """No ``no transition from ANSWERED on ORIGINATE_FAILED``: the Failure after the Up is a
    legal step, and both orders give one outcome - a live answer hung up on by the switch,
    an abandon when it was meant for agents (it counts against the cap), else a failure."""
    done, t = _answer_at_ring_timeout(up_first, plan)
    [f] = done
    assert f.outcome is expected and f.live_answer and f.originate_reason == 3
    assert not t.live()
