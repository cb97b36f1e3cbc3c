"""Every outcome class of DESIGN section 9 on a real Asterisk 22, through the project's own
dialplan (config/asterisk/extensions_dialer.conf) and queues template."""

from __future__ import annotations

import collections
import wave
from pathlib import Path

from sqlalchemy import select

from dialer.outcomes import Outcome
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Attempt, IvrSession
from dialer.telephony.ami.messages import Event
from dialer.telephony.subscription import UNREAD_EVENTS
from dialer.telephony.tracker import READ_APPLICATIONS, READ_VARIABLES
from ivr.messages import BankMessage, message_prompts

from .conftest import RealFloor, campaign, load, phone

SOUNDS = Path(__file__).resolve().parents[2] / "sounds"


def hear(floor: RealFloor) -> collections.Counter[str]:
    """The events the dialer receives, VarSet and Newexten by variable and application."""
    heard: collections.Counter[str] = collections.Counter()

    def listen(e: Event) -> None:
        key = {"VarSet": "Variable", "Newexten": "Application"}.get(e.name)
        heard[f"{e.name}:{e.headers.get(key)}" if key else e.name] += 1

    floor.core.subscribe(listen)
    return heard


def only_what_is_read(floor: RealFloor, heard: collections.Counter[str]) -> None:
    """The switch took the dialer's event filters and sent nothing they exclude."""
    assert floor.core.events_filtered
    assert not set(UNREAD_EVENTS) & set(heard), heard
    assert {k.split(":", 1)[1] for k in heard if k.startswith("VarSet:")} <= READ_VARIABLES
    assert {k.split(":", 1)[1] for k in heard if k.startswith("Newexten:")} <= READ_APPLICATIONS


def outcomes(store: Store) -> dict[str, Attempt]:
    with store.session() as s:
        rows = s.scalars(select(Attempt)).all()
        s.expunge_all()
    return {r.phone[-3:]: r for r in rows}


async def test_outcomes_of_queue_calls(store: Store, tmp_path: Path, real_floor: RealFloor) -> None:
    # answered into the queue and handled; busy; congestion; no answer; unallocated
    codes = ["111", "486", "503", "480", "404"]
    load(
        store,
        tmp_path,
        campaign("q", "progressive", pacing={"ring_timeout_s": 15}),
        [{"phone": phone(c, i)} for i, c in enumerate(codes)],
    )
    await real_floor.dialer.load_campaigns()
    heard = hear(real_floor)
    await real_floor.run()
    got = outcomes(store)
    only_what_is_read(real_floor, heard)
    assert heard["AgentConnect"] and heard["AgentComplete"] and heard["OriginateResponse"] >= 5
    assert {k: v.outcome for k, v in got.items()} == {
        "111": Outcome.AGENT_HANDLED,
        "486": Outcome.BUSY,
        "503": Outcome.CONGESTION,
        "480": Outcome.NO_ANSWER,
        "404": Outcome.INVALID_NUMBER,
    }
    handled = got["111"]
    assert handled.live_answer and handled.bridged_at is not None
    assert handled.agent in ("Agent 01", "Agent 02")
    assert got["486"].hangup_cause == 17
    # congestion is known from OriginateResponse Reason 8; the failed leg's Hangup (cause 34)
    # is not always tied to the attempt before it ends (seen under load)
    assert got["503"].hangup_cause in (34, None)


async def test_abandoned_at_hold_limit_hears_safe_harbour(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    # the only member rings and never answers: the 2-second rule ends the wait
    load(store, tmp_path, campaign("deafq", "progressive", queue="deaf"), [{"phone": phone("111")}])
    await real_floor.dialer.load_campaigns()
    await real_floor.run()
    (att,) = outcomes(store).values()
    assert att.outcome == Outcome.ABANDONED
    assert att.live_answer and att.queued_at is not None and att.bridged_at is None
    assert att.message_played_at is not None  # the safe-harbour message played after the timeout
    # DIALER_MSG is set once the message has played: queue wait = that time - the message
    prompt_s = 0.0
    for prompt in message_prompts(BankMessage.ABANDON, "zh", Settings().bank):
        with wave.open(str(SOUNDS / "zh" / f"{prompt}.wav")) as w:
            prompt_s += w.getnframes() / w.getframerate()
    hold = (att.message_played_at - att.queued_at).total_seconds() - prompt_s
    assert 1.5 <= hold <= 3.0


async def test_machine_in_both_amd_modes(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    load(
        store,
        tmp_path,
        campaign("amd-hangup", "progressive", amd="hangup"),
        [{"phone": phone("600", 1)}, {"phone": phone("601", 2)}],
    )
    load(
        store,
        tmp_path,
        campaign("amd-message", "progressive", amd="message"),
        [{"phone": phone("600", 3)}],
    )
    await real_floor.dialer.load_campaigns()
    await real_floor.run(timeout=120)
    with store.session() as s:
        rows = {(a.phone[-3:], a.phone[-4]): a for a in s.scalars(select(Attempt))}
        s.expunge_all()
    machine_hangup = rows[("600", "1")]
    human = rows[("601", "2")]
    machine_message = rows[("600", "3")]
    assert machine_hangup.outcome == Outcome.MACHINE and machine_hangup.amd_status == "MACHINE"
    assert not machine_hangup.live_answer
    assert machine_message.outcome == Outcome.MACHINE
    assert human.amd_status == "HUMAN" and human.live_answer
    assert human.outcome == Outcome.AGENT_HANDLED


async def test_ivr_outcomes(store: Store, tmp_path: Path, real_floor: RealFloor) -> None:
    # completed (activated), customer hang-up mid-flow (partial result kept), IVR transfer
    # to agents (handled by an agent)
    rows = [
        {"phone": phone(code, i), "id_last6": "123456", "card_last4": "4321"}
        for i, code in enumerate(["701", "706", "705", "702", "703", "704"])
    ]
    doc = campaign(
        "ivr",
        "broadcast",
        flow="card_activation",
        fields={
            "id_last6": {"type": "digits", "length": 6, "sensitive": True},
            "card_last4": {"type": "digits", "length": 4},
        },
        pacing={"channels": 5},
    )
    load(store, tmp_path, doc, rows)
    await real_floor.dialer.load_campaigns()
    heard = hear(real_floor)
    await real_floor.run(timeout=180)
    got = outcomes(store)
    only_what_is_read(real_floor, heard)
    assert heard["VarSet:IVR_RESULT"] >= 5 and heard["Newexten:AGI"] >= 6
    assert got["701"].outcome == Outcome.COMPLETED and got["701"].result == "activated"
    assert got["706"].outcome == Outcome.CUSTOMER_HANGUP
    assert got["705"].outcome == Outcome.AGENT_HANDLED
    assert got["705"].result == "transferred"
    with store.session() as s:
        sessions = {x.attempt_id: x for x in s.scalars(select(IvrSession))}
        s.expunge_all()
    # wrong digits three times: locked; no input; digits typed during the greeting (not
    # interruptible) are lost on a real switch, so that customer is a no-input too
    assert (got["702"].outcome, got["702"].result) == (Outcome.COMPLETED, "locked")
    assert (got["703"].outcome, got["703"].result) == (Outcome.COMPLETED, "no_input")
    assert (got["704"].outcome, got["704"].result) == (Outcome.COMPLETED, "no_input")
    partial = sessions[got["706"].id]
    assert partial.status == "hangup"  # recorded, partial
