"""Every prompt any flow can name exists in both languages, in the format Asterisk plays."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest

from dialer.yamlfile import load_mapping
from ivr.flow import FlowLibrary
from ivr.messages import message_prompt_names
from ivr.prompts import available, missing_prompts, needed, sounds_dir
from ivr.say import LANGS

ROOT = Path(__file__).resolve().parents[2]
DIALPLAN_PROMPTS = message_prompt_names()  # the pieces of the bank's messages (ivr/messages.py)


def test_every_flow_prompt_exists_in_both_languages(library: FlowLibrary) -> None:
    for flow in library.flows.values():
        assert missing_prompts(flow) == [], flow.name


def test_dialplan_prompts_exist() -> None:
    for lang in LANGS:
        assert DIALPLAN_PROMPTS <= available(lang)


def test_both_languages_have_the_same_prompts_and_texts_agree() -> None:
    texts = load_mapping(sounds_dir() / "prompts.yaml")["prompts"]
    for lang in LANGS:
        assert available(lang) == set(texts)


def test_prompt_name_set_is_not_trivial(library: FlowLibrary) -> None:
    names = set().union(*(needed(f) for f in library.flows.values()))
    assert {"digit-0", "cur-yuan", "unit-10k", "month-12", "day-31", "ca-offer"} <= names


@pytest.mark.parametrize("lang", LANGS)
def test_wav_format_is_asterisk_slin(lang: str) -> None:
    total = 0
    for path in sorted((sounds_dir() / lang).glob("*.wav")):
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), path.name
            assert w.getnframes() > 800, path.name  # at least 0.1 s of audio
        total += path.stat().st_size
    assert total < 5_000_000


def test_rendered_prompts_are_current() -> None:
    """The committed WAVs match prompts.yaml (no espeak-ng needed to check)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_prompts.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_no_shipped_prompt_names_a_bank_or_a_number() -> None:
    """The WAVs are rendered once, with the default settings: a prompt whose text held the
    bank's name or number would speak another bank's to a bank that sets its own. Only
    ``bank-name`` says a name (installed per bank by ``ivr install-sounds``); numbers are said
    digit by digit at play time."""
    from dialer.settings import BankSettings
    from ivr.messages import BANK_NAME, callback_digits

    default = BankSettings()
    texts = load_mapping(ROOT / "sounds" / "prompts.yaml")["prompts"]
    for name, by_lang in texts.items():
        for lang, text in by_lang.items():
            if name != BANK_NAME:
                assert "{bank}" not in text and "{callback}" not in text, (name, lang)
                assert default.name_zh not in text and default.name_en not in text, (name, lang)
            assert callback_digits(default) not in text.replace(" ", ""), (name, lang)
