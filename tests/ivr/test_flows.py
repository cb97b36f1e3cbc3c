"""Every shipped flow, driven by caller personas against the fake Asterisk, with the store.

These run the real engine and the process-AGI driver in memory; test_fastagi.py runs the
same flows over sockets.
"""

from __future__ import annotations

import datetime as dt

import pytest
from ivr_fakepbx import USAGE, FakeAsterisk, Persona, header, memory_io
from ivr_testkit import ID_LAST6, NOW, RunFn, clock, seed_attempt
from sqlalchemy import select

from dialer.lists.dnc import add_entry
from dialer.lists.hopper import finish_attempt
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt, Contact, DncEntry, IvrSession, IvrStep
from dialer.store.people import Callback
from ivr.driver import BlockingAGI, drive_sync
from ivr.engine import Services, SessionOutcome, SessionStatus, run_session
from ivr.errors import FlowDefinitionError
from ivr.flow import FlowLibrary, parse_flow
from ivr.hooks import DEFAULT_HOOKS, LOCK_FIELD
from ivr.record import StoreRecorder

WRONG = ["111111", "222222", "333333"]


def session_row(store: Store, session_id: int | None) -> tuple[IvrSession, list[IvrStep]]:
    with store.session() as s:
        row = s.get(IvrSession, session_id)
        assert row is not None
        steps = list(
            s.scalars(select(IvrStep).where(IvrStep.session_id == session_id).order_by(IvrStep.seq))
        )
        return row, steps


def contact_fields(store: Store) -> dict[str, object]:
    with store.session() as s:
        return dict(s.scalars(select(Contact)).one().fields)


def assert_no_digits_anywhere(store: Store, pbx_vars: dict[str, str], digits: str) -> None:
    """Typed verification digits never reach the DB or channel variables."""
    with store.session() as s:
        for row in s.scalars(select(IvrSession)):
            assert digits not in repr(row.data)
        for step in s.scalars(select(IvrStep)):
            assert digits not in repr(step.detail) and digits not in (step.outcome or "")
    assert all(digits not in v for v in pbx_vars.values())


# --- card activation --------------------------------------------------------------------


def test_card_activation_right_digits(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=[ID_LAST6, "1"]), attempt=aid)
    assert (r.outcome.status, r.outcome.result, r.outcome.next) == (
        SessionStatus.COMPLETED,
        "activated",
        "hangup",
    )
    assert r.pbx.variables == {"IVR_RESULT": "activated", "IVR_NEXT": "hangup"}
    row, steps = session_row(store, r.outcome.session_id)
    assert (row.attempt_id, row.status, row.result, row.is_test) == (
        aid,
        "completed",
        "activated",
        False,
    )
    assert [(s.node, s.outcome) for s in steps] == [
        ("greeting", "played"),
        ("verify", "match"),
        ("offer", "key:1"),
        ("activate", "ok"),
        ("activated", "end"),
    ]
    assert contact_fields(store)["card_activated_at"] == NOW.isoformat()
    # the card is read back by its last four only, after verification
    played = r.pbx.played
    assert played.index("dialer/enter-id-last6") < played.index("dialer/digit-4")
    assert_no_digits_anywhere(store, r.pbx.variables, ID_LAST6)


def test_card_activation_barge_in_types_ahead(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=["!" + ID_LAST6, "!1"]), attempt=aid)
    assert r.outcome.result == "activated"
    assert "WAIT FOR DIGIT 5000" not in r.pbx.commands  # interrupted prompts, no wait needed


def test_card_activation_wrong_digits_three_times_locks(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=WRONG), attempt=aid)
    assert (r.outcome.status, r.outcome.result) == (SessionStatus.COMPLETED, "locked")
    assert r.pbx.played.count("dialer/verify-retry") == 2
    assert "dialer/digit-4" not in r.pbx.played  # nothing disclosed
    row, steps = session_row(store, r.outcome.session_id)
    assert steps[1].outcome == "locked" and steps[1].detail == {"mismatches": 3}
    assert row.data["identity"] == "locked"
    assert LOCK_FIELD in contact_fields(store)
    for wrong in WRONG:
        assert_no_digits_anywhere(store, r.pbx.variables, wrong)
    # the next call is locked out at once, even with the right digits
    aid2 = seed_attempt_again(store)
    r2 = run_flow("card_activation", Persona(answers=[ID_LAST6, "1"]), attempt=aid2)
    assert r2.outcome.result == "locked"
    assert "dialer/enter-id-last6" not in r2.pbx.played


def seed_attempt_again(store: Store) -> int:
    from dialer.store.models import Attempt

    with store.session() as s:
        contact = s.scalars(select(Contact)).one()
        a = Attempt(campaign_id=contact.campaign_id, contact_id=contact.id, phone=contact.phone)
        s.add(a)
        s.flush()
        return a.id


def test_card_activation_right_on_third_try(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=[*WRONG[:2], ID_LAST6, "1"]), attempt=aid)
    assert r.outcome.result == "activated"


def test_card_activation_no_input(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=[]), attempt=aid)
    assert (r.outcome.status, r.outcome.result) == (SessionStatus.COMPLETED, "no_input")
    assert r.pbx.played.count("dialer/ivr-no-input") == 2
    assert LOCK_FIELD not in contact_fields(store)  # silence is not a wrong answer


def test_card_activation_invalid_menu_key_then_agent(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(answers=[ID_LAST6, "7", "0"]), attempt=aid)
    assert (r.outcome.result, r.outcome.next) == ("transferred", "queue:campaign-agents")
    assert r.pbx.played.count("dialer/ivr-invalid") == 1
    assert r.pbx.variables["IVR_NEXT"] == "queue:campaign-agents"
    assert (
        r.pbx.variables["IVR_SUMMARY"]
        == "flow=card_activation;result=transferred;identity=confirmed"
    )


def test_card_activation_short_input_counts_as_mismatch(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow(
        "card_activation", Persona(answers=["12#", "#", ID_LAST6[:5], ID_LAST6]), attempt=aid
    )
    assert r.outcome.result == "locked"


def test_digits_during_non_interruptible_greeting_are_lost(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "card_activation")
    r = run_flow("card_activation", Persona(early=ID_LAST6, answers=[]), attempt=aid)
    assert r.pbx.lost == ID_LAST6
    assert r.outcome.result == "no_input"


def test_test_call_without_attempt_uses_sample(store: Store, run_flow: RunFn) -> None:
    r = run_flow("card_activation", Persona(answers=["123456", "1"]))
    assert (r.outcome.result, r.outcome.is_test, r.outcome.attempt_id) == ("activated", True, None)
    row, _ = session_row(store, r.outcome.session_id)
    assert row.is_test and row.attempt_id is None and row.data["test"] is True
    assert "dialer/digit-4" in r.pbx.played  # sample card 1234


def test_unknown_attempt_is_an_error_not_a_test(store: Store, run_flow: RunFn) -> None:
    r = run_flow("repayment_reminder", Persona(answers=["1"]), attempt=999)
    assert r.outcome.status is SessionStatus.ERROR
    # nothing read to a stranger, but never silence: the dialplan rescues (apology or queue)
    assert r.pbx.variables == {"IVR_RESULT": "", "IVR_RESCUE": "queue", "IVR_NEXT": "failed"}
    assert r.pbx.played == []


def test_language_follows_the_contact(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "repayment_reminder", language="en")
    r = run_flow("repayment_reminder", Persona(answers=["1"]), attempt=aid, language="zh")
    assert 'SET VARIABLE CHANNEL(language) "en"' in r.pbx.commands
    assert "dialer/word-and" in r.pbx.played  # English amount: ... yuan and five cents


# --- repayment reminder -----------------------------------------------------------------


def test_repayment_reminder_promise_to_pay(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    r = run_flow("repayment_reminder", Persona(answers=["1", "2", "1210"]), attempt=aid)
    assert (r.outcome.status, r.outcome.result) == (SessionStatus.COMPLETED, "promised_to_pay")
    amount = ["dialer/num-1", "dialer/unit-10k", "dialer/num-0", "dialer/num-1", "dialer/unit-10"]
    i = r.pbx.played.index("dialer/rr-amount-due")
    assert r.pbx.played[i + 1 : i + 6] == amount
    assert "dialer/month-12" in r.pbx.played and "dialer/day-15" in r.pbx.played
    assert contact_fields(store)["promise_to_pay"] == {"date": "2026-12-10", "at": NOW.isoformat()}
    row, _ = session_row(store, r.outcome.session_id)
    assert row.data["promise_date"] == "2026-12-10"


def test_repayment_reminder_repeat_then_agent(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    r = run_flow("repayment_reminder", Persona(answers=["1", "1", "0"]), attempt=aid)
    assert r.pbx.played.count("dialer/rr-amount-due") == 2
    assert (r.outcome.result, r.outcome.next) == ("transferred", "queue:campaign-agents")


def test_repayment_reminder_wrong_party_hears_nothing(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    r = run_flow("repayment_reminder", Persona(answers=["2"]), attempt=aid)
    assert r.outcome.result == "wrong_party"
    assert not any(
        p.startswith(("dialer/num-", "dialer/month-", "dialer/rr-amount")) for p in r.pbx.played
    )


def test_repayment_reminder_invalid_promise_dates_go_to_agent(
    store: Store, run_flow: RunFn
) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    # 1399 is no date; 0230 no day; 0601 is beyond 30 days
    r = run_flow(
        "repayment_reminder", Persona(answers=["1", "2", "1399", "0230", "0601"]), attempt=aid
    )
    assert (r.outcome.result, r.outcome.next) == ("transferred", "queue:campaign-agents")
    assert "promise_to_pay" not in contact_fields(store)


def test_repayment_reminder_no_input_and_invalid(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    assert run_flow("repayment_reminder", Persona(), attempt=aid).outcome.result == "no_input"
    aid = seed_attempt_again(store)
    r = run_flow("repayment_reminder", Persona(answers=["1", "8", "8", "8"]), attempt=aid)
    assert r.outcome.result == "reminded"


# --- transaction alert ------------------------------------------------------------------


def test_transaction_alert_it_was_me(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "transaction_alert")
    r = run_flow("transaction_alert", Persona(answers=["1", "1"]), attempt=aid)
    assert (r.outcome.result, r.outcome.next) == ("confirmed", "hangup")
    assert "dialer/merchant-overseas" in r.pbx.played
    assert "card_blocked_at" not in contact_fields(store)


def test_transaction_alert_not_me_blocks_and_transfers_to_fraud(
    store: Store, run_flow: RunFn
) -> None:
    aid = seed_attempt(store, "transaction_alert")
    r = run_flow("transaction_alert", Persona(answers=["1", "9", "2"]), attempt=aid)
    assert (r.outcome.result, r.outcome.next) == ("denied", "queue:campaign-agents")  # its queue
    assert r.pbx.played.count("dialer/ta-amount") == 2
    assert contact_fields(store)["card_blocked_at"] == NOW.isoformat()
    row, _ = session_row(store, r.outcome.session_id)
    assert row.data["blocked_card"] == "****4321"


def _device_fault_attempt(store: Store) -> int:
    """A device-fault call: the device number comes with the alert (the attempt's fields)."""
    aid = seed_attempt(store, "device_fault")
    with store.session() as s:
        row = s.get(Attempt, aid)
        assert row is not None
        row.detail = {"alert_id": 1, "fields": {"device_no": "0123"}}
    return aid


def test_device_fault_the_person_on_duty_takes_it(store: Store, run_flow: RunFn) -> None:
    r = run_flow("device_fault", Persona(answers=["1", "1"]), attempt=_device_fault_attempt(store))
    assert (r.outcome.result, r.outcome.next) == ("acknowledged", "hangup")
    at = r.pbx.played.index("dialer/df-device")
    # the device number from the alert's payload (the attempt's own fields)
    assert r.pbx.played[at + 1 : at + 5] == [f"dialer/digit-{d}" for d in "0123"]
    assert r.pbx.played[-1] == "dialer/df-acknowledged"


def test_device_fault_someone_else_never_hears_the_device(store: Store, run_flow: RunFn) -> None:
    r = run_flow("device_fault", Persona(answers=["2"]), attempt=_device_fault_attempt(store))
    assert r.outcome.result == "no_input"
    assert "dialer/df-device" not in r.pbx.played  # right party first


def test_transaction_alert_no_input(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "transaction_alert")
    r = run_flow("transaction_alert", Persona(answers=["1"]), attempt=aid)
    assert r.outcome.result == "no_input"


# --- survey, notice, opt-out -----------------------------------------------------------


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5"])
def test_survey_ratings(store: Store, run_flow: RunFn, key: str) -> None:
    aid = seed_attempt(store, "satisfaction_survey")
    assert (
        run_flow("satisfaction_survey", Persona(answers=[key]), attempt=aid).outcome.result
        == f"rated_{key}"
    )


def test_survey_reprompts_invalid_and_silence(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "satisfaction_survey")
    r = run_flow("satisfaction_survey", Persona(answers=["9", None, "4"]), attempt=aid)
    assert r.outcome.result == "rated_4"
    assert r.pbx.played.count("dialer/ss-ask") == 3
    aid = seed_attempt_again(store)
    r = run_flow("satisfaction_survey", Persona(answers=["0", "6", "7"]), attempt=aid)
    assert r.outcome.result == "no_rating"


def test_survey_key_during_greeting_is_lost(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "satisfaction_survey")
    r = run_flow("satisfaction_survey", Persona(early="5"), attempt=aid)
    assert r.pbx.lost == "5" and r.outcome.result == "no_rating"


def test_notice_repeat_and_agent(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "notice")
    r = run_flow("notice", Persona(answers=["1", "0"]), attempt=aid)
    assert r.pbx.played.count("dialer/notice-body") == 2
    assert (r.outcome.result, r.outcome.next) == ("transferred", "queue:campaign-agents")
    aid = seed_attempt_again(store)
    r = run_flow("notice", Persona(), attempt=aid)
    assert (r.outcome.result, r.outcome.next) == ("notified", "hangup")


def test_opt_out_writes_dnc(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "opt_out")
    r = run_flow("opt_out", Persona(answers=["9"]), attempt=aid)
    assert r.outcome.result == "opted_out"
    with store.session() as s:
        dnc = s.scalars(select(DncEntry)).one()
        assert (dnc.number, dnc.scope, dnc.source, dnc.is_prefix) == (
            "+8613800000486",
            "marketing",
            "ivr-opt-out",
            False,
        )
    aid = seed_attempt_again(store)
    assert run_flow("opt_out", Persona(answers=["9"]), attempt=aid).outcome.result == "opted_out"
    with store.session() as s:
        assert len(list(s.scalars(select(DncEntry)))) == 1  # idempotent


def test_opt_out_other_key_or_silence(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "opt_out")
    assert run_flow("opt_out", Persona(answers=["1"]), attempt=aid).outcome.result == "heard"
    with store.session() as s:
        assert list(s.scalars(select(DncEntry))) == []


# --- definitions ------------------------------------------------------------------------


def test_right_party_first_is_enforced_at_load() -> None:
    bad = {
        "name": "leaky",
        "start": "amount",
        "nodes": {
            "amount": {"kind": "say", "say": "amount", "field": "amount_due", "next": "end"},
            "end": {"kind": "hangup"},
        },
    }
    with pytest.raises(FlowDefinitionError, match="right party first"):
        parse_flow(bad, "leaky.yaml")
    sneaky = {
        "name": "sneaky",
        "start": "ask",
        "nodes": {
            "ask": {
                "kind": "menu",
                "prompts": ["confirm-customer"],
                "choices": {"1": {"next": "amount", "confirms_identity": True}, "2": "amount"},
                "on_fail": "end",
            },
            "amount": {
                "kind": "play",
                "prompts": [{"say": "amount", "field": "amount_due"}],
                "next": "end",
            },
            "end": {"kind": "hangup"},
        },
    }
    with pytest.raises(FlowDefinitionError, match="right party first"):
        parse_flow(sneaky, "sneaky.yaml")


def test_bad_references_and_hooks_are_refused(tmp_path: object) -> None:
    with pytest.raises(FlowDefinitionError, match="undefined node"):
        parse_flow(
            {
                "name": "x",
                "start": "a",
                "nodes": {"a": {"kind": "play", "prompts": ["p"], "next": "b"}},
            },
            "x",
        )
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "x.yaml").write_text(
        "name: x\nstart: a\nnodes:\n  a: {kind: action, hook: no_such_hook, next: b}\n  b: {kind: hangup}\n"
    )
    with pytest.raises(FlowDefinitionError, match="unknown hook"):
        FlowLibrary.load(d)


def test_shipped_flows_load(library: FlowLibrary) -> None:
    assert set(library.flows) == {
        "card_activation",
        "repayment_reminder",
        "transaction_alert",
        "satisfaction_survey",
        "notice",
        "opt_out",
        "device_fault",
    }
    assert library.get("opt_out").purpose == "marketing"
    assert isinstance(NOW, dt.datetime)


def test_custom_flow_with_say_node_collect_and_custom_hook(store: Store) -> None:
    """A bank's own flow: say node, sensitive collect, a hook named by dotted path."""
    from ivr_fakepbx import FakeAsterisk, header, memory_io
    from ivr_testkit import clock

    from ivr.driver import BlockingAGI, drive_sync
    from ivr.engine import Services, run_session
    from ivr.flow import parse_flow
    from ivr.hooks import DEFAULT_HOOKS
    from ivr.record import StoreRecorder

    calls: list[dict[str, object]] = []

    def record_reference(h: object, **kw: object) -> str:
        calls.append(dict(getattr(h, "vars")))  # noqa: B009 - the hook sees collected values
        return "ok"

    flow = parse_flow(
        {
            "name": "custom",
            "start": "count",
            "nodes": {
                "count": {
                    "kind": "say",
                    "say": "number",
                    "value": "10010",
                    "before": ["ivr-invalid"],
                    "next": "ref",
                },
                "ref": {
                    "kind": "collect",
                    "prompts": ["enter-id-last6"],
                    "digits": 6,
                    "save_as": "reference",
                    "sensitive": True,
                    "next": "act",
                    "on_fail": "end",
                },
                "act": {"kind": "action", "hook": "record_reference", "next": "end"},
                "end": {"kind": "hangup", "result": "done"},
            },
        },
        "custom.yaml",
    )
    lib = FlowLibrary({"custom": flow}, {**DEFAULT_HOOKS, "record_reference": record_reference})
    services = Services(library=lib, recorder=StoreRecorder(store, clock), store=store, clock=clock)
    pbx = FakeAsterisk(Persona(answers=["987654"]))
    read, write = memory_io(pbx, header("custom"))
    io = BlockingAGI(read, write)  # type: ignore[arg-type]
    outcome = drive_sync(run_session(services, io.environment()), io)
    assert outcome.result == "done"
    assert pbx.played[:6] == [
        "dialer/ivr-invalid",
        "dialer/num-1",
        "dialer/unit-10k",
        "dialer/num-0",
        "dialer/num-1",
        "dialer/unit-10",
    ]
    assert calls == [{"reference": "987654"}]
    with store.session() as s:
        assert "987654" not in repr(s.scalars(select(IvrSession)).one().data)
        assert all("987654" not in repr(st.detail) for st in s.scalars(select(IvrStep)))


def test_missing_prompt_is_noted_and_the_flow_goes_on(store: Store, run_flow: RunFn) -> None:
    """Asterisk answers ``200 result=-1 endpos=0`` for a prompt that is not installed."""
    aid = seed_attempt(store, "satisfaction_survey")
    persona = Persona(answers=["5"], not_installed=frozenset({"dialer/ss-greeting"}))
    r = run_flow("satisfaction_survey", persona, attempt=aid)
    assert r.outcome.result == "rated_5"
    row, _ = session_row(store, r.outcome.session_id)
    assert row.data["missing_prompts"] == ["ss-greeting"]


def test_a_caller_repeating_forever_still_ends(store: Store, run_flow: RunFn) -> None:
    aid = seed_attempt(store, "notice")
    r = run_flow("notice", Persona(answers=["1"] * 500), attempt=aid)
    assert r.outcome.status is SessionStatus.ERROR and "too many nodes" in (r.outcome.error or "")
    assert r.pbx.variables["IVR_NEXT"] == "failed"  # the dialplan rescues the caller
    assert r.outcome.result == "notified"  # what was reached is kept


CRASHY = {
    "name": "crashy",
    "start": "greet",
    "nodes": {
        "greet": {"kind": "play", "prompts": ["notice-body"], "next": "reached"},
        "reached": {"kind": "result", "set": "notified", "next": "boom"},
        "boom": {"kind": "action", "hook": "boom", "next": "end"},  # no error edge
        "end": {"kind": "hangup", "prompts": ["goodbye"]},
    },
}


def crashy_run(store: Store, rescue: str, persona: Persona) -> tuple[SessionOutcome, FakeAsterisk]:
    """A flow whose bank hook raises after the caller was answered and heard a prompt."""

    def boom(ctx: object) -> None:
        raise ConnectionRefusedError("core banking unreachable")

    flow = parse_flow({**CRASHY, "rescue": rescue}, "crashy.yaml")
    lib = FlowLibrary({"crashy": flow}, {**DEFAULT_HOOKS, "boom": boom})
    services = Services(library=lib, recorder=StoreRecorder(store, clock), store=store, clock=clock)
    aid = seed_attempt(store, "notice")
    pbx = FakeAsterisk(persona)
    read, write = memory_io(pbx, header(f"crashy?attempt={aid}"))
    io = BlockingAGI(read, write)  # type: ignore[arg-type]
    return drive_sync(run_session(services, io.environment()), io), pbx


@pytest.mark.parametrize("rescue", ["queue", "apology"])
def test_a_flow_crashing_mid_way_asks_the_dialplan_to_rescue_the_caller(
    store: Store, rescue: str
) -> None:
    """Answered, a prompt heard, a result reached, then a bank hook raises: the session ends
    ``error`` with its partial result, and the dialplan is told the flow failed and how to
    rescue (never IVR_NEXT=hangup, which would hang up on the caller without a word)."""
    outcome, pbx = crashy_run(store, rescue, Persona(answers=[]))
    assert outcome.status is SessionStatus.ERROR
    assert "core banking unreachable" in (outcome.error or "")
    assert pbx.commands[0] == "ANSWER" and pbx.played == ["dialer/notice-body"]
    assert pbx.variables == {"IVR_RESULT": "notified", "IVR_RESCUE": rescue, "IVR_NEXT": "failed"}
    row, steps = session_row(store, outcome.session_id)
    assert (row.status, row.result, row.next) == ("error", "notified", "failed")
    assert [(st.node, st.outcome) for st in steps][-1] == ("boom", "error")


def test_a_caller_hanging_up_mid_flow_is_not_an_ivr_failure(store: Store) -> None:
    outcome, pbx = crashy_run(store, "queue", Persona(answers=[], hangup_after=1))
    assert outcome.status is SessionStatus.HANGUP
    assert "IVR_NEXT" not in pbx.variables  # the dialplan ends with the channel


# --- callbacks picked by keypad -------------------------------------------------------------


def test_repayment_reminder_books_a_callback_picked_by_keypad(
    store: Store, run_flow: RunFn
) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    r = run_flow("repayment_reminder", Persona(answers=["1", "3", "1"]), attempt=aid)
    assert (r.outcome.status, r.outcome.result) == (SessionStatus.COMPLETED, "callback_booked")
    assert "dialer/cb-offer" in r.pbx.played and "dialer/cb-booked" in r.pbx.played
    due = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)  # this afternoon, 15:00 in Beijing
    with store.session() as s:
        (cb,) = s.scalars(select(Callback))
        assert (cb.due_at, cb.agent, cb.booked_by, cb.attempt_id) == (
            due,
            None,
            "ivr:repayment_reminder",
            aid,
        )
        attempt = s.get(Attempt, aid)
        assert attempt is not None
        # the call ends "completed" (final without a retry rule): the callback still holds
        finish_attempt(s, attempt, Outcome.COMPLETED, NOW + dt.timedelta(minutes=2))
    with store.session() as s:
        contact = s.scalars(select(Contact)).one()
        assert (contact.status, contact.next_attempt_at) == ("active", due)
    assert r.pbx.variables["IVR_RESULT"] == "callback_booked"  # the attempt's result
    row, steps = session_row(store, r.outcome.session_id)
    assert (row.attempt_id, row.result) == (aid, "callback_booked")
    assert row.data["callback_due"] == "2026-11-30T15:00:00+08:00"
    assert row.data["callback_slot"] == "this_afternoon"
    assert ("callback_afternoon", "ok") in [(st.node, st.outcome) for st in steps]


def test_a_keypad_callback_is_refused_where_compliance_forbids_the_dial(
    store: Store, run_flow: RunFn
) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    with store.session() as s:
        add_entry(s, "+8613800000486", reason="asked", source="test")
    r = run_flow("repayment_reminder", Persona(answers=["1", "3", "2"]), attempt=aid)
    assert r.outcome.result == "callback_refused"
    assert "dialer/cb-refused" in r.pbx.played
    with store.session() as s:
        assert s.scalars(select(Callback)).first() is None
    row, _ = session_row(store, r.outcome.session_id)
    assert row.data["callback_slot"] == "tomorrow_morning" and "dnc" in row.data["callback_refused"]


def test_the_callback_number_comes_from_the_call_else_from_the_ivrs_settings(
    store: Store, library: FlowLibrary
) -> None:
    """Card activation's lock-out names the bank's callback number: the dialer's, sent with the
    call (``DIALER_CALLBACK``), else the IVR's own settings (a test call, a hand-made dialplan)."""
    from dialer.settings import BankSettings

    services = Services(
        library=library,
        recorder=StoreRecorder(store, clock),
        store=store,
        clock=clock,
        bank=BankSettings(callback_number="955-33"),
    )
    said: dict[str, list[str]] = {}
    for given in ("95566", None):
        aid = seed_attempt(store, "card_activation", phone=f"+86138000001{len(said)}0")
        pbx = FakeAsterisk(Persona(answers=WRONG))
        if given:
            pbx.variables["DIALER_CALLBACK"] = given
        read, write = memory_io(pbx, header(f"card_activation?attempt={aid}"))
        io = BlockingAGI(read, write)  # type: ignore[arg-type]
        outcome = drive_sync(run_session(services, io.environment()), io)
        assert outcome.result == "locked"
        said[given or "ivr"] = pbx.played[pbx.played.index("dialer/verify-locked") :]
    tail = ["dialer/verify-locked", "dialer/bank-name", "dialer/callback-on"]
    assert said["95566"] == tail + [f"dialer/digit-{d}" for d in "95566"]
    assert said["ivr"] == tail + [f"dialer/digit-{d}" for d in "95533"]


class RefusingAsterisk(FakeAsterisk):
    """Answers ``520`` (usage) to the STREAM FILE of one prompt: an AGI command error."""

    def reply(self, line: str) -> bytes:
        if "notice-options" in line:
            self.commands.append(line)
            return USAGE
        return super().reply(line)


def test_an_agi_command_error_mid_flow_asks_the_dialplan_to_rescue_the_caller(
    store: Store, services: Services
) -> None:
    aid = seed_attempt(store, "notice")
    pbx = RefusingAsterisk(Persona(answers=[]))
    read, write = memory_io(pbx, header(f"notice?attempt={aid}"))
    io = BlockingAGI(read, write)  # type: ignore[arg-type]
    outcome = drive_sync(run_session(services, io.environment()), io)
    assert outcome.status is SessionStatus.ERROR and "AGI 520" in (outcome.error or "")
    assert "dialer/notice-body" in pbx.played  # it had spoken before the command failed
    assert pbx.variables == {"IVR_RESULT": "", "IVR_RESCUE": "queue", "IVR_NEXT": "failed"}
