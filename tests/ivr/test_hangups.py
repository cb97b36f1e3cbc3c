"""A caller hanging up at any step leaves a consistent partial result (hypothesis).

For every shipped flow and several caller personas, the caller hangs up after a random
number of AGI commands, in either recorded order (bare ``HANGUP`` then ``511``, or
``result=-1`` then ``HANGUP``). Whatever the cut: the session ends ``hangup`` (or
``completed`` if the flow had already finished), steps are numbered without gaps, the last
step names the node in progress, the session's result agrees with what the hooks did to the
store, and nothing is sent to the dead channel except what Asterisk allows.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ivr_fakepbx import Persona
from ivr_testkit import ID_LAST6, RunFn, seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import Attempt, Contact, DncEntry, IvrSession, IvrStep

PERSONAS: dict[str, list[list[str | None]]] = {
    "card_activation": [[ID_LAST6, "1"], ["111111", "222222", "333333"], [ID_LAST6, "0"], []],
    "repayment_reminder": [["1", "2", "1210"], ["1", "1", "0"], ["2"], ["1"]],
    "transaction_alert": [["1", "2"], ["1", "1"], ["1", "9", "2"]],
    "satisfaction_survey": [["4"], ["9", None, "5"], []],
    "notice": [["1", "0"], []],
    "opt_out": [["9"], ["1"]],
}

#: what a hook leaves in the store -> the result the session must then carry
EFFECTS = {
    "card_activated_at": "activated",
    "promise_to_pay": "promised_to_pay",
    "card_blocked_at": "denied",
}

_phones = itertools.count(8613900000000)

CASES = [(flow, i) for flow, ps in PERSONAS.items() for i in range(len(ps))]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.sampled_from(CASES),
    cut=st.integers(0, 40),
    mode=st.sampled_from(["between", "during"]),
)
def test_hangup_at_any_step_leaves_consistent_partial_result(
    store: Store, run_flow: RunFn, case: tuple[str, int], cut: int, mode: str
) -> None:
    flow, index = case
    phone = f"+{next(_phones)}"
    aid = seed_attempt(store, flow, phone=phone)
    persona = Persona(answers=list(PERSONAS[flow][index]), hangup_after=cut, hangup_mode=mode)
    r = run_flow(flow, persona, attempt=aid)
    finished = r.pbx.commands and not r.pbx.dead
    with store.session() as s:
        row = s.scalars(select(IvrSession).where(IvrSession.attempt_id == aid)).one()
        steps = list(
            s.scalars(select(IvrStep).where(IvrStep.session_id == row.id).order_by(IvrStep.seq))
        )
        contact = s.scalars(
            select(Contact).join(Attempt, Attempt.contact_id == Contact.id).where(Attempt.id == aid)
        ).one()
        dnc = s.scalars(select(DncEntry).where(DncEntry.number == phone)).first()
        fields = dict(contact.fields)

        assert row.ended_at is not None
        assert row.status == ("completed" if finished else "hangup"), (row.status, r.pbx.commands)
        assert [st_.seq for st_ in steps] == list(range(1, len(steps) + 1))
        if row.status == "hangup" and steps:
            assert steps[-1].outcome in ("hangup",) or steps[-1].kind in ("hangup", "transfer")
        for key, result in EFFECTS.items():
            if key in fields:
                assert row.result == result
        if dnc is not None:
            assert row.result == "opted_out"
        if row.status == "completed":
            assert r.pbx.variables["IVR_NEXT"] == row.next
    # after the hang-up only GET VARIABLE / VERBOSE would be answered; we send at most the
    # one command that discovered the hang-up
    if r.pbx.dead and cut < len(r.pbx.commands):
        assert len(r.pbx.commands) <= cut + 2


KEYS = st.one_of(
    st.none(),
    st.text("0123456789*#", min_size=1, max_size=8),
    st.text("0123456789", min_size=1, max_size=2).map(lambda k: "!" + k),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    flow=st.sampled_from(sorted(PERSONAS)),
    answers=st.lists(KEYS, max_size=8),
    early=st.text("0123456789", max_size=3),
)
def test_any_caller_input_ends_the_flow_cleanly(
    store: Store, run_flow: RunFn, flow: str, answers: list[str | None], early: str
) -> None:
    """Random keys, silences, barge-ins and early digits: the flow always completes, with a
    result, and never stores what the caller typed for verification."""
    aid = seed_attempt(store, flow, phone=f"+{next(_phones)}")
    r = run_flow(flow, Persona(answers=answers, early=early), attempt=aid)
    assert r.outcome.status.value == "completed", r.outcome.error
    assert r.outcome.result
    assert r.pbx.variables["IVR_NEXT"] == r.outcome.next
    typed = [a.lstrip("!") for a in answers if a and len(a.lstrip("!")) >= 6]
    with store.session() as s:
        row = s.scalars(select(IvrSession).where(IvrSession.attempt_id == aid)).one()
        stored = repr(row.data) + "".join(
            repr(x.detail) for x in s.scalars(select(IvrStep).where(IvrStep.session_id == row.id))
        )
    if flow == "card_activation":
        for t in typed:
            assert t[:6] not in stored
