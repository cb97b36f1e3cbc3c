"""Prompts rendered from text with espeak-ng and sox (Debian: ``apt-get install -y espeak-ng
sox``): what ``scripts/render_prompts.py`` does for every prompt of ``sounds/prompts.yaml``, and
``ivr install-sounds`` for the one prompt a bank's settings change, its name (``bank-name``).

Output: 8 kHz, mono, 16-bit signed PCM (what Asterisk plays as ``dialer/<name>``), leading and
trailing silence trimmed, a short pad at the end. ``sounds/manifest.json`` keeps a fingerprint
of the text each shipped file says, so a changed text (or bank name) is seen.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from dialer.settings import BankSettings

VOICES = {"zh": ("cmn", 250), "en": ("en-us", 190)}  # espeak-ng voice, words per minute
RATE = 8000
TOOLS = ("espeak-ng", "sox")


def bank_vars(bank: BankSettings) -> dict[str, dict[str, str]]:
    """``{bank}`` and ``{callback}`` per language, from the settings (digits spaced out)."""
    digits = " ".join(ch for ch in bank.callback_number if ch.isdigit())
    return {
        "zh": {"bank": bank.name_zh, "callback": digits},
        "en": {"bank": bank.name_en, "callback": digits},
    }


def text_of(
    prompts: dict[str, dict[str, str]], vars_: dict[str, dict[str, str]], name: str, lang: str
) -> str:
    return prompts[name][lang].format(**vars_.get(lang, {}))


def fingerprint(text: str, lang: str) -> str:
    voice, wpm = VOICES[lang]
    return hashlib.sha256(f"{voice}|{wpm}|{RATE}|{text}".encode()).hexdigest()[:16]


def can_render() -> bool:
    return all(shutil.which(tool) for tool in TOOLS)


def render(text: str, lang: str, out: Path) -> None:
    voice, wpm = VOICES[lang]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        trim = ["silence", "1", "0.02", "0.5%", "reverse"]
        subprocess.run(
            ["sox", "-V1", str(raw), "-r", str(RATE), "-c", "1", "-b", "16"]
            + ["-e", "signed-integer", str(out), "vol", "0.9", *trim, *trim]
            + ["pad", "0", "0.15"],
            check=True,
            capture_output=True,
        )
