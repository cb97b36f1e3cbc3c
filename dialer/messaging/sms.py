"""SMS length rules, as carriers count them (pure).

Why this file exists: an SMS is billed and delivered by parts, and the part size depends on
the encoding chosen for the *whole* text.

- **GSM 7-bit** (3GPP TS 23.038) when every character is in the GSM default alphabet or its
  extension table: 160 septets in a single message, 153 per part of a long one (7 septets go
  to the concatenation header). An extension character (``€ [ ] { } \\ ^ ~ |`` and form feed)
  costs two septets (escape + code) and is never split across parts.
- **UCS-2** otherwise (any Chinese character): 70 UTF-16 code units alone, 67 per part. A
  character outside the BMP (an emoji) is a surrogate pair: two units, never split.

Chinese carriers require the bank's signature (``【示例银行】``) at the start and, for marketing,
the opt-out suffix (``回T退订``) at the end; ``compose`` adds them so the count shown before
sending is the count billed. The gateway (Kannel) splits with the same rules.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

OPT_OUT_SUFFIX = "回T退订"


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True)
class Limits:
    single: int  # units in a message sent alone
    part: int  # units per part of a concatenated message


LIMITS: dict[Encoding, Limits] = {
    Encoding.GSM7: Limits(single=160, part=153),
    Encoding.UCS2: Limits(single=70, part=67),
}

#: Kannel's ``coding`` parameter for each encoding (0 = 7-bit, 2 = UCS-2).
KANNEL_CODING: dict[Encoding, int] = {Encoding.GSM7: 0, Encoding.UCS2: 2}


@functools.lru_cache(maxsize=4096)
def gsm_septets(char: str) -> int | None:
    """Septets ``char`` takes in GSM 7-bit (1, or 2 from the extension table), None if absent."""
    try:
        return len(char.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def ucs2_units(char: str) -> int:
    """UTF-16 code units of one character (2 for a surrogate pair)."""
    return 2 if ord(char) > 0xFFFF else 1


def encoding_of(text: str) -> Encoding:
    return Encoding.GSM7 if all(gsm_septets(c) is not None for c in text) else Encoding.UCS2


@dataclass(frozen=True)
class Segmentation:
    """How a text goes on the air: its encoding, its length in units and its parts."""

    text: str
    encoding: Encoding
    units: int  # septets (GSM 7-bit) or UTF-16 code units (UCS-2)
    parts: tuple[str, ...]

    @property
    def part_count(self) -> int:
        return len(self.parts)

    @property
    def limits(self) -> Limits:
        return LIMITS[self.encoding]

    @property
    def per_part(self) -> int:
        """The limit that applies to each part of this text."""
        return self.limits.single if self.part_count <= 1 else self.limits.part

    @property
    def chars(self) -> int:
        return len(self.text)

    def summary(self) -> str:
        unit = "septets" if self.encoding is Encoding.GSM7 else "UCS-2 units"
        return (
            f"{self.chars} characters, {self.units} {unit}, {self.encoding.value}: "
            f"{self.part_count} part{'s' if self.part_count != 1 else ''} "
            f"(up to {self.per_part} each)"
        )


def segment(text: str) -> Segmentation:
    """Split ``text`` into the parts the network will carry."""
    enc = encoding_of(text)
    cost = (lambda c: gsm_septets(c) or 1) if enc is Encoding.GSM7 else ucs2_units
    units = sum(cost(c) for c in text)
    lim = LIMITS[enc]
    if units <= lim.single:
        return Segmentation(text, enc, units, (text,) if text else ())
    parts: list[str] = []
    start, used = 0, 0
    for i, c in enumerate(text):
        n = cost(c)
        if used + n > lim.part:
            parts.append(text[start:i])
            start, used = i, 0
        used += n
    parts.append(text[start:])
    return Segmentation(text, enc, units, tuple(parts))


def compose(body: str, *, signature: str, marketing: bool) -> str:
    """The text as sent: signature first, opt-out suffix last for marketing (each once)."""
    text = body.strip()
    if signature and not text.startswith(signature):
        text = signature + text
    if marketing and not text.endswith(OPT_OUT_SUFFIX):
        text = text + OPT_OUT_SUFFIX
    return text


def signature_of(bank_name: str) -> str:
    """The carrier-registered signature: the bank's name in 【】."""
    return f"【{bank_name}】"


__all__ = [
    "KANNEL_CODING",
    "LIMITS",
    "OPT_OUT_SUFFIX",
    "Encoding",
    "Limits",
    "Segmentation",
    "compose",
    "encoding_of",
    "gsm_septets",
    "segment",
    "signature_of",
    "ucs2_units",
]
