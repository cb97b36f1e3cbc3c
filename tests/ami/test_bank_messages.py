"""The bank's own messages name the bank and callback number of the settings (issue 11): what a
caller hears on the simulated PBX - through the shipped dialplan, from the Originate the dialer
builds - for the safe-harbour message (no agent within the hold limit) and the message left on
an answering machine, in Mandarin and in English."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sim_harness import (
    Party,
    attempts,
    campaign,
    collector,
    make_core,
    party_pbx,
    run_until,
    stop_cores,
)

from dialer import SOUNDS_DIR
from dialer.outcomes import Outcome
from dialer.settings import BankSettings
from dialer.sim import SimPbx
from dialer.store import Store
from dialer.yamlfile import load_mapping
from ivr.messages import BankMessage, dialplan_messages, message_prompts
from ivr.render import bank_vars

BANK = BankSettings(name_zh="招商银行", name_en="China Merchants Bank", callback_number="955-55")
AGENTS = ["PJSIP/agent101", "PJSIP/agent102", "PJSIP/agent103"]
TEXTS: dict[str, dict[str, str]] = load_mapping(SOUNDS_DIR / "prompts.yaml")["prompts"]


class Listener(Party):
    """A called party that keeps its channel, to read what it heard."""

    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}

    async def run(self, e: Any, ch: Any, number: str) -> None:
        self.channels[number] = ch
        await super().run(e, ch, number)


@pytest.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    p = await party_pbx(talk_s=5.0)
    p.engine.party_model = Listener()
    yield p
    await stop_cores()
    await p.stop()


def words(prompts: list[str], lang: str, bank: BankSettings) -> str:
    """What the prompts say, from their texts (bank-name says the settings' name)."""
    values = bank_vars(bank)[lang]
    return " ".join(TEXTS[p.removeprefix("dialer/")][lang].format(**values) for p in prompts)


async def heard(store: Store, pbx: SimPbx, phone: str, lang: str, **spec: Any) -> list[str]:
    cid = campaign(store, name=f"bank-{lang}-{phone[-3:]}", language=lang, **spec)
    ids = attempts(store, cid, [phone], language=lang)
    core = make_core(store, pbx)
    core.rows.messages = dialplan_messages(BANK)  # as the floor does from settings.bank
    done = collector(core)
    await core.start()
    await core.wait_ready(5)
    await core.originate(ids[0])
    await run_until(pbx, core, lambda: len(done) == 1, step=0.5, limit=300)
    await core.stop(grace_s=0)
    assert done[0].outcome in (Outcome.ABANDONED, Outcome.MACHINE)
    party: Listener = pbx.engine.party_model  # type: ignore[assignment]
    (ch,) = [c for n, c in party.channels.items() if n.endswith(phone[-6:])]
    return [p.name for _, p in ch.media_log]


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_an_abandoned_caller_hears_the_configured_bank_and_number(
    store: Store, pbx: SimPbx, lang: str
) -> None:
    for iface in AGENTS:  # nobody takes the call within the hold limit
        pbx.engine.queues.pause_member("activation-agents", iface, True, "lunch")
    got = await heard(store, pbx, "+8613800006111", lang)
    expected = [f"dialer/{p}" for p in message_prompts(BankMessage.ABANDON, lang, BANK)]
    assert got == expected
    said = words(got, lang, BANK)
    name, digits = ("招商银行", "九 五 五 五 五") if lang == "zh" else (BANK.name_en, "five five")
    assert name in said and digits in said, said
    assert "示例银行" not in said and "Example Bank" not in said


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_machine_gets_the_configured_bank_and_number(
    store: Store, pbx: SimPbx, lang: str
) -> None:
    got = await heard(store, pbx, "+8613800009777", lang, amd="message")
    assert got[-len(message_prompts(BankMessage.MACHINE, lang, BANK)) :] == [
        f"dialer/{p}" for p in message_prompts(BankMessage.MACHINE, lang, BANK)
    ]
    said = words(got[-9:], lang, BANK)
    assert (BANK.name_zh if lang == "zh" else BANK.name_en) in said
    assert said.count("五" if lang == "zh" else "five") == 4  # 9 5 5 5 5


def test_every_piece_of_the_messages_is_a_shipped_prompt() -> None:
    for lang in ("zh", "en"):
        for kind in BankMessage:
            for prompt in message_prompts(kind, lang, BANK):
                assert (Path(SOUNDS_DIR) / lang / f"{prompt}.wav").is_file(), (lang, prompt)
