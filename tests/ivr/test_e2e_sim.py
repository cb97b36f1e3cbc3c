"""End to end through the simulated PBX (dialer/sim): the project's dialplan
(config/asterisk/extensions_dialer.conf) runs ``AGI(${DIALER_AGI}/${DIALER_FLOW}?attempt=...)``
with the simulator's own FastAGI client against our server; the called party is a persona
that listens to the prompts it hears and presses keys (SendDTMF timing as recorded)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ivr_testkit import ID_LAST6, seed_attempt
from sqlalchemy import select

from dialer import SOUNDS_DIR
from dialer.settings import BankSettings
from dialer.store import Store
from dialer.store.models import IvrSession, IvrStep
from dialer.yamlfile import load_mapping
from ivr.engine import Services
from ivr.fastagi import FastAGIServer
from ivr.messages import callback_digits, dialplan_messages
from ivr.render import bank_vars

sim_pbx = pytest.importorskip("dialer.sim.pbx")
sim_clock = pytest.importorskip("dialer.sim.clock")
sim_engine = pytest.importorskip("dialer.sim.engine")

HANGUP = "HANGUP"
_phones = itertools.count(8613700000000)


@dataclass
class PromptPersona:
    """``script``: (prompt heard, seconds into it, keys to press or HANGUP).
    ``hangup_at``: hang up 0.2 s into the n-th prompt heard (whatever the script says)."""

    script: list[tuple[str, float, str]]
    hangup_at: int | None = None
    channel: Any = None  # the called party's channel: what it heard is its media_log

    async def run(self, e: Any, ch: Any, number: str) -> None:
        self.channel = ch
        e.ringing(ch)
        try:
            await e.wait(ch, 1.0)
            e.answer(ch)
            seen = 0
            for trigger, delay, keys in self.script:
                while True:
                    await self._maybe_hang_up(e, ch)
                    log = ch.media_log
                    hit = next(
                        (i for i in range(seen, len(log)) if log[i][1].name == f"dialer/{trigger}"),
                        None,
                    )
                    if hit is not None:
                        seen = hit + 1
                        break
                    await e.wait(ch, 0.1)
                await e.wait(ch, delay)
                if keys == HANGUP:
                    e.request_hangup(ch)
                    return
                await e.send_dtmf(ch, keys)
            while True:
                await self._maybe_hang_up(e, ch)
                await e.wait(ch, 0.1)
        except (sim_engine.ChannelHungup, _HungUp):
            return

    async def _maybe_hang_up(self, e: Any, ch: Any) -> None:
        if self.hangup_at is not None and len(ch.media_log) >= self.hangup_at:
            await e.wait(ch, 0.2)
            e.request_hangup(ch)
            raise _HungUp


class _HungUp(Exception):
    pass


@pytest.fixture
async def ivr_server(services: Services) -> AsyncIterator[FastAGIServer]:
    srv = FastAGIServer(services, port=0)
    await srv.start()
    yield srv
    await srv.close(grace=1)


async def call(
    srv: FastAGIServer,
    store: Store,
    flow: str,
    persona: PromptPersona,
    *,
    lang: str = "zh",
    extra: Mapping[str, str] | None = None,
) -> IvrSession:
    """``extra``: more Originate variables (the bank's messages and number of the dialer)."""
    aid = seed_attempt(store, flow, language=lang, phone=f"+{next(_phones)}")
    pbx = sim_pbx.SimPbx(clock=sim_clock.VirtualClock())
    pbx.engine.party_model = persona
    req = sim_engine.OriginateRequest(
        channel="Local/+8613800000111@customer",
        context="dialer-outbound",
        exten="s",
        priority="1",
        timeout_ms=25000,
        callerid=("", "95588"),
        variables=(
            ("DIALER_ATTEMPT", str(aid)),
            ("DIALER_CAMPAIGN", "c"),
            ("DIALER_FLOW", flow),
            ("DIALER_QUEUE", ""),
            ("DIALER_HOLD", "2"),
            ("DIALER_AMD", "off"),
            ("DIALER_AGI", f"agi://127.0.0.1:{srv.port}"),
            ("DIALER_LANG", lang),
            *(extra or {}).items(),
        ),
        is_async=True,
    )
    task = asyncio.create_task(pbx.engine.originate(req))
    before = len(srv.outcomes)
    try:
        ok = await pbx.clock.run_until_true(lambda: len(srv.outcomes) > before, limit=600)
        assert ok, "the IVR session did not finish"
        await pbx.clock.advance(5)
    finally:
        await pbx.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with store.session() as s:
        return s.scalars(select(IvrSession).where(IvrSession.attempt_id == aid)).one()


async def test_survey_key_barges_into_the_question(ivr_server: FastAGIServer, store: Store) -> None:
    row = await call(
        ivr_server, store, "satisfaction_survey", PromptPersona([("ss-ask", 1.0, "4")])
    )
    assert (row.status, row.result, row.next) == ("completed", "rated_4", "hangup")


async def test_card_activation_right_digits(ivr_server: FastAGIServer, store: Store) -> None:
    persona = PromptPersona([("enter-id-last6", 0.5, ID_LAST6), ("ca-offer", 0.5, "1")])
    row = await call(ivr_server, store, "card_activation", persona)
    assert (row.status, row.result) == ("completed", "activated")


async def test_card_activation_wrong_digits_three_times(
    ivr_server: FastAGIServer, store: Store
) -> None:
    persona = PromptPersona(
        [
            ("enter-id-last6", 0.5, "111111"),
            ("enter-id-last6", 0.5, "222222"),
            ("enter-id-last6", 0.5, "333333"),
        ]
    )
    row = await call(ivr_server, store, "card_activation", persona)
    assert (row.status, row.result) == ("completed", "locked")


async def test_digits_during_non_interruptible_greeting_are_lost(
    ivr_server: FastAGIServer, store: Store
) -> None:
    persona = PromptPersona([("ca-greeting", 0.3, ID_LAST6)])
    row = await call(ivr_server, store, "card_activation", persona)
    assert (row.status, row.result) == ("completed", "no_input")


async def test_hangup_mid_flow(ivr_server: FastAGIServer, store: Store) -> None:
    persona = PromptPersona([("confirm-customer", 0.5, "1"), ("rr-amount-due", 0.5, HANGUP)])
    row = await call(ivr_server, store, "repayment_reminder", persona)
    assert row.status == "hangup" and row.ended_at is not None


async def test_transfer_returns_to_dialplan_queue(ivr_server: FastAGIServer, store: Store) -> None:
    persona = PromptPersona([("notice-options", 0.5, "0")])
    row = await call(ivr_server, store, "notice", persona, lang="en")
    assert (row.status, row.result, row.next) == (
        "completed",
        "transferred",
        "queue:campaign-agents",
    )


def P(*steps: tuple[str, float, str]) -> list[tuple[str, float, str]]:
    return list(steps)


ID = ("enter-id-last6", 0.5, ID_LAST6)
CONFIRM = ("confirm-customer", 0.5, "1")

#: flow, persona name, script, (status, result, next)
TABLE = [
    (
        "card_activation",
        "right digits",
        P(ID, ("ca-offer", 0.5, "1")),
        ("completed", "activated", "hangup"),
    ),
    (
        "card_activation",
        "wrong digits 3x",
        P(*[("enter-id-last6", 0.5, d * 6) for d in "123"]),
        ("completed", "locked", "hangup"),
    ),
    ("card_activation", "no input", P(), ("completed", "no_input", "hangup")),
    (
        "card_activation",
        "invalid key",
        P(ID, *[("ca-offer", 0.5, "7")] * 3),
        ("completed", "no_input", "hangup"),
    ),
    (
        "card_activation",
        "early digits",
        P(("ca-greeting", 0.3, ID_LAST6)),
        ("completed", "no_input", "hangup"),
    ),
    (
        "repayment_reminder",
        "right party, promise",
        P(CONFIRM, ("rr-options", 0.5, "2"), ("rr-enter-date", 0.5, "1210")),
        ("completed", "promised_to_pay", "hangup"),
    ),
    (
        "repayment_reminder",
        "wrong party",
        P(("confirm-customer", 0.5, "2")),
        ("completed", "wrong_party", "hangup"),
    ),
    ("repayment_reminder", "no input", P(), ("completed", "no_input", "hangup")),
    (
        "repayment_reminder",
        "invalid key",
        P(*[("confirm-customer", 0.5, "5")] * 3),
        ("completed", "no_input", "hangup"),
    ),
    (
        "repayment_reminder",
        "early digits",
        P(("rr-greeting", 0.3, "1")),
        ("completed", "no_input", "hangup"),
    ),
    (
        "transaction_alert",
        "not me",
        P(CONFIRM, ("ta-ask", 0.5, "2")),
        ("completed", "denied", "queue:campaign-agents"),  # the campaign's queue
    ),
    (
        "transaction_alert",
        "it was me",
        P(CONFIRM, ("ta-ask", 0.5, "1")),
        ("completed", "confirmed", "hangup"),
    ),
    ("transaction_alert", "no input", P(), ("completed", "no_input", "hangup")),
    (
        "transaction_alert",
        "invalid key",
        P(CONFIRM, *[("ta-ask", 0.5, "7")] * 3),
        ("completed", "no_input", "hangup"),
    ),
    (
        "transaction_alert",
        "early digits",
        P(("ta-greeting", 0.3, "1")),
        ("completed", "no_input", "hangup"),
    ),
    ("satisfaction_survey", "rates 4", P(("ss-ask", 1.0, "4")), ("completed", "rated_4", "hangup")),
    (
        "satisfaction_survey",
        "invalid keys",
        P(("ss-ask", 0.5, "9"), ("ss-ask", 0.5, "0"), ("ss-ask", 0.5, "7")),
        ("completed", "no_rating", "hangup"),
    ),
    ("satisfaction_survey", "no input", P(), ("completed", "no_rating", "hangup")),
    (
        "satisfaction_survey",
        "early digits",
        P(("ss-greeting", 0.3, "5")),
        ("completed", "no_rating", "hangup"),
    ),
    (
        "notice",
        "repeat then agent",
        P(("notice-options", 0.5, "1"), ("notice-options", 0.5, "0")),
        ("completed", "transferred", "queue:campaign-agents"),
    ),
    ("notice", "no input", P(), ("completed", "notified", "hangup")),
    ("notice", "invalid key", P(("notice-options", 0.5, "5")), ("completed", "notified", "hangup")),
    ("notice", "early digits", P(("notice-body", 0.3, "0")), ("completed", "notified", "hangup")),
    ("opt_out", "presses 9", P(("oo-how", 0.5, "9")), ("completed", "opted_out", "hangup")),
    ("opt_out", "no input", P(), ("completed", "heard", "hangup")),
    ("opt_out", "invalid key", P(("oo-how", 0.5, "1")), ("completed", "heard", "hangup")),
]


@pytest.mark.parametrize(
    ("flow", "who", "script", "expected"), TABLE, ids=[f"{t[0]}: {t[1]}" for t in TABLE]
)
async def test_every_flow_and_persona_through_the_simulator(
    ivr_server: FastAGIServer,
    store: Store,
    flow: str,
    who: str,
    script: list[tuple[str, float, str]],
    expected: tuple[str, str, str],
) -> None:
    row = await call(ivr_server, store, flow, PromptPersona(script))
    assert (row.status, row.result, row.next) == expected


HAPPY = {
    flow: script
    for flow, who, script, _ in TABLE
    if who
    in (
        "right digits",
        "right party, promise",
        "not me",
        "rates 4",
        "repeat then agent",
        "presses 9",
    )
}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flow=st.sampled_from(sorted(HAPPY)), k=st.integers(1, 14))
async def test_hangup_at_any_prompt_through_the_simulator(
    ivr_server: FastAGIServer, store: Store, flow: str, k: int
) -> None:
    row = await call(ivr_server, store, flow, PromptPersona(HAPPY[flow], hangup_at=k))
    assert row.ended_at is not None
    assert row.status in ("hangup", "completed")
    if k <= 2:  # hung up while the flow was still speaking its first prompts
        assert row.status == "hangup"
    with store.session() as s:
        steps = list(
            s.scalars(select(IvrStep).where(IvrStep.session_id == row.id).order_by(IvrStep.seq))
        )
    assert [x.seq for x in steps] == list(range(1, len(steps) + 1))
    if row.status == "hangup" and steps and steps[-1].kind not in ("hangup", "transfer"):
        assert steps[-1].outcome == "hangup"


BANK = BankSettings(
    name_zh="招商银行", name_en="China Merchants Bank", callback_number="400-820-5555"
)
TEXTS: dict[str, dict[str, str]] = load_mapping(SOUNDS_DIR / "prompts.yaml")["prompts"]
#: every shipped flow, with a caller who reaches what names the bank: the greeting, and in card
#: activation the lock-out (which gives the callback number)
BANK_CALLS = {
    "card_activation": P(*[("enter-id-last6", 0.5, d * 6) for d in "123"]),
    "repayment_reminder": P(),
    "transaction_alert": P(),
    "device_fault": P(),
    "satisfaction_survey": P(),
    "notice": P(),
    "opt_out": P(),
}


def words(heard: list[str], lang: str, bank: BankSettings) -> str:
    """What the prompts say, from their texts (``bank-name`` says the settings' name, as
    ``ivr install-sounds`` installs it)."""
    values = bank_vars(bank)[lang]
    return " ".join(TEXTS[p.removeprefix("dialer/")][lang].format(**values) for p in heard)


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_every_flow_names_the_configured_bank_and_its_number(
    ivr_server: FastAGIServer, store: Store, lang: str
) -> None:
    """Issue 14: a bank that sets ``settings.bank`` hears its own name and callback number in
    every flow, never the default bank's: what the caller heard on the simulated PBX, with the
    Originate variables the dialer builds from those settings."""
    assert set(BANK_CALLS) == set(ivr_server.services.library.flows)  # a new flow joins here
    default = BankSettings()
    spoken = {
        number: words([f"dialer/digit-{d}" for d in callback_digits(b)], lang, b)
        for number, b in (("configured", BANK), ("default", default))
    }
    for flow, script in BANK_CALLS.items():
        persona = PromptPersona(script)
        row = await call(
            ivr_server, store, flow, persona, lang=lang, extra=dialplan_messages(BANK)[lang]
        )
        assert row.status == "completed", (flow, row.data)
        heard = [p.name for _, p in persona.channel.media_log if p.name.startswith("dialer/")]
        said = words(heard, lang, BANK)
        assert (BANK.name_zh if lang == "zh" else BANK.name_en) in said, (flow, said)
        assert default.name_zh not in said and default.name_en not in said, (flow, said)
        assert spoken["default"] not in said, (flow, said)
        if flow == "card_activation":
            assert row.result == "locked" and said.endswith(spoken["configured"]), said
