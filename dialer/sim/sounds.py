"""How long prompts last, and what they sound like (speech, silence or tones).

Project prompts come from ``sounds/<lang>/<name>.wav`` (played as ``dialer/<name>``); the
Asterisk stock prompts the recordings use come from a small catalogue measured from the
recordings' ``endpos`` values and event timings. Unknown prompts fall back to a default
length (``DEFAULT_PROMPT_S``) unless ``strict`` is set. A stock name outside the catalogue is
missing (AGI ``STREAM FILE`` then answers ``200 result=-1 endpos=0`` as Asterisk does).
"""

from __future__ import annotations

import enum
import wave
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 8000
DEFAULT_PROMPT_S = 2.0


class Media(enum.Enum):
    SPEECH = "speech"
    SILENCE = "silence"
    TONE = "tone"


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    duration: float
    media: Media


#: Stock prompts seen in the recordings (duration in seconds, from endpos / timings).
STOCK: dict[str, Prompt] = {
    p.name: p
    for p in (
        Prompt("beep", 0.44, Media.TONE),
        Prompt("demo-congrats", 7.82, Media.SPEECH),
        Prompt("demo-thanks", 5.52, Media.SPEECH),
        Prompt("hello", 0.80, Media.SPEECH),
        Prompt("vm-intro", 5.7, Media.SPEECH),
        Prompt("tt-monkeys", 16.0, Media.SPEECH),
        Prompt("please-try-call-later", 2.18, Media.SPEECH),
        Prompt("vm-goodbye", 0.9, Media.SPEECH),
        Prompt("queue-thankyou", 1.6, Media.SPEECH),
    )
}

#: ``SAY DIGITS`` / ``SAY NUMBER`` timings from the recordings (per spoken word).
SAY_DIGIT_S = 0.836
SAY_NUMBER_WORD_S = 0.861


class SoundLibrary:
    """Resolves a prompt name (as Playback / STREAM FILE get it) to a ``Prompt``."""

    def __init__(self, roots: list[Path] | None = None, strict: bool = False) -> None:
        self.roots = roots or []
        self.strict = strict
        self._cache: dict[tuple[str, str], Prompt | None] = {}

    def lookup(self, name: str, language: str = "en") -> Prompt | None:
        key = (name, language)
        if key not in self._cache:
            self._cache[key] = self._resolve(name, language)
        return self._cache[key]

    def _resolve(self, name: str, language: str) -> Prompt | None:
        name = name.strip()
        if name.startswith("silence/"):
            try:
                return Prompt(name, float(name.split("/", 1)[1]), Media.SILENCE)
            except ValueError:
                return None
        if name.startswith("digits/"):
            return Prompt(name, SAY_DIGIT_S, Media.SPEECH)
        if name.startswith("dialer/"):
            short = name.split("/", 1)[1]
            for root in self.roots:
                for lang in (language, "en"):
                    f = root / lang / f"{short}.wav"
                    if f.exists():
                        return Prompt(name, wav_duration(f), Media.SPEECH)
            return None if self.strict else Prompt(name, DEFAULT_PROMPT_S, Media.SPEECH)
        # a stock prompt outside the catalogue is missing, as on a real switch without it
        return STOCK.get(name)


def wav_duration(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate() or SAMPLE_RATE)
    except (wave.Error, EOFError, OSError):
        return DEFAULT_PROMPT_S
