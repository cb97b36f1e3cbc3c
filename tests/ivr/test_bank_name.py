"""``ivr install-sounds`` puts in place a ``bank-name`` prompt that says the bank of the settings:
the bank's recording, the shipped one when it says that name, or one rendered from the settings;
never one that names another bank (issue 11)."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import click
import pytest

from dialer import SOUNDS_DIR
from dialer.settings import BankSettings
from ivr.cli import install_bank_name
from ivr.render import can_render

OTHER = BankSettings(name_zh="招商银行", name_en="China Merchants Bank", callback_number="95555")


def test_the_shipped_prompt_serves_the_bank_it_names(tmp_path: Path) -> None:
    shutil.copyfile(SOUNDS_DIR / "zh" / "bank-name.wav", tmp_path / "bank-name.wav")
    how = install_bank_name(SOUNDS_DIR, tmp_path, "zh", BankSettings(), None)
    assert how == "says 示例银行 (shipped)"


def test_another_bank_without_its_recording_or_the_tools_is_refused(tmp_path: Path) -> None:
    shutil.copyfile(SOUNDS_DIR / "zh" / "bank-name.wav", tmp_path / "bank-name.wav")
    with pytest.raises(click.ClickException, match="'招商银行'.*--bank-recording zh=FILE"):
        install_bank_name(SOUNDS_DIR, tmp_path, "zh", OTHER, None, can_render=lambda: False)
    assert not (tmp_path / "bank-name.wav").exists()  # the shipped name is not left behind


def test_the_banks_recording_is_installed(tmp_path: Path) -> None:
    own = tmp_path / "own.wav"
    with wave.open(str(own), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * 4000)
    dest = tmp_path / "dest"
    dest.mkdir()
    how = install_bank_name(SOUNDS_DIR, dest, "en", OTHER, own)
    assert how.startswith("from the bank's recording")
    assert (dest / "bank-name.wav").read_bytes() == own.read_bytes()


def test_the_name_is_rendered_from_the_settings(tmp_path: Path) -> None:
    if not can_render() and os.environ.get("CI", "").lower() != "true":
        pytest.skip("espeak-ng and sox are not installed (.ci/run installs them)")
    how = install_bank_name(SOUNDS_DIR, tmp_path, "zh", OTHER, None)
    assert how == "says 招商银行 (rendered from the settings)"
    with wave.open(str(tmp_path / "bank-name.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 4000  # half a second or more of speech
    shipped = (SOUNDS_DIR / "zh" / "bank-name.wav").read_bytes()
    assert (tmp_path / "bank-name.wav").read_bytes() != shipped
