"""End to end through the simulated PBX (dialer/sim): the project's dialplan
(config/asterisk/extensions_dialer.conf) runs ``AGI(${DIALER_AGI}/${DIALER_FLOW}?attempt=...)``
with the simulator's own FastAGI client against our server; the called party is a persona
that listens to the prompts it hears and presses keys (SendDTMF timing as recorded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import ID_LAST6, seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import IvrSession
from ivr.engine import Services
from ivr.fastagi import FastAGIServer

sim_pbx = pytest.importorskip("dialer.sim.pbx")
sim_clock = pytest.importorskip("dialer.sim.clock")
sim_engine = pytest.importorskip("dialer.sim.engine")

HANGUP = "HANGUP"


@dataclass
class PromptPersona:
    """``script``: (prompt heard, seconds into it, keys to press or HANGUP)."""

    script: list[tuple[str, float, str]]
    lost_ok: bool = False

    async def run(self, e: Any, ch: Any, number: str) -> None:
        e.ringing(ch)
        try:
            await e.wait(ch, 1.0)
            e.answer(ch)
            seen = 0
            for trigger, delay, keys in self.script:
                while True:
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
            await e.wait(ch, None)
        except sim_engine.ChannelHungup:
            return


@pytest.fixture
async def ivr_server(services: Services) -> AsyncIterator[FastAGIServer]:
    srv = FastAGIServer(services, port=0)
    await srv.start()
    yield srv
    await srv.close(grace=1)


async def call(
    srv: FastAGIServer, store: Store, flow: str, persona: PromptPersona, *, lang: str = "zh"
) -> IvrSession:
    aid = seed_attempt(store, flow, language=lang)
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
