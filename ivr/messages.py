"""The bank's own messages the dialplan plays, assembled from prompt pieces and ``say``.

A customer the dialer abandoned (no agent within the hold limit) hears the safe-harbour
message; an answering machine gets the machine message (``amd: message``). Both name the bank
and its callback number, which come from the settings (``settings.bank``), never from a
recording: the number is said digit by digit (``say digits``) and the name is the prompt
``bank-name`` (rendered from the settings by ``ivr install-sounds``, or the bank's own
recording). The dialer hands each call its playlist in the Originate variables
``DIALER_MSG_ABANDON`` and ``DIALER_MSG_MACHINE`` (``dialer/<name>&dialer/<name>...``, in the
contact's language), and the dialplan plays them (docs/contracts.md "Dialplan"); likewise
``DIALER_SORRY``, the apology with the callback number when the IVR flow cannot run, and
``DIALER_CALLBACK``, the number's digits, which the IVR's flows say after their own pieces
(``bank-name`` + ``say digits``, never a recording naming a bank). The floor sets them on the
core from its settings (``CampaignLoop``; a settings reload included).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from dialer.settings import BankSettings
from ivr.say import LANGS, Lang, SayKind, say

BANK_NAME = "bank-name"  # the prompt that says the bank's name (settings.bank.name_<lang>)
#: The Originate variable with the callback number's digits: the IVR's flows say it
#: (``{say: digits, bank: callback_number}``) from the dialer's settings, as the dialplan does.
CALLBACK_VAR = "DIALER_CALLBACK"


class BankMessage(enum.StrEnum):
    ABANDON = "DIALER_MSG_ABANDON"  # the safe-harbour message
    MACHINE = "DIALER_MSG_MACHINE"  # left on an answering machine
    APOLOGY = "DIALER_SORRY"  # the IVR flow cannot run (FastAGI down, unknown flow)


#: The pieces of each message in order; ``CALLBACK`` is where the callback number is said.
CALLBACK = "{callback}"
PIECES: Mapping[BankMessage, tuple[str, ...]] = {
    BankMessage.ABANDON: ("hello-this-is", BANK_NAME, "sh-sorry", CALLBACK, "thank-you"),
    BankMessage.MACHINE: ("hello-this-is", BANK_NAME, "mm-important", CALLBACK, "thank-you"),
    BankMessage.APOLOGY: ("ivr-apology", CALLBACK),
}


def message_prompts(kind: BankMessage, lang: str, bank: BankSettings) -> list[str]:
    """The prompt names a caller hears for ``kind`` in ``lang``, in order."""
    out: list[str] = []
    for piece in PIECES[kind]:
        if piece == CALLBACK:
            out += say(SayKind.DIGITS, callback_digits(bank), lang)
        else:
            out.append(piece)
    return out


def callback_digits(bank: BankSettings) -> str:
    """The callback number as the digits to say (``400 888 1234`` -> ``4008881234``)."""
    return "".join(ch for ch in bank.callback_number if ch.isdigit() or ch in "*#")


def playlist(prompts: list[str]) -> str:
    """A ``Playback()`` argument: ``dialer/a&dialer/b`` (Asterisk plays them in order)."""
    return "&".join(f"dialer/{p}" for p in prompts)


def dialplan_messages(bank: BankSettings) -> dict[str, dict[str, str]]:
    """Per language, the Originate variables that carry the bank's messages (and the callback
    number the IVR's flows say)."""
    return {
        Lang(lang).value: {
            **{kind.value: playlist(message_prompts(kind, lang, bank)) for kind in BankMessage},
            CALLBACK_VAR: callback_digits(bank),
        }
        for lang in LANGS
    }


def message_pieces(kind: BankMessage) -> set[str]:
    """The fixed prompts of one message (the number's digits are ``say``'s vocabulary)."""
    return {p for p in PIECES[kind] if p != CALLBACK}


def message_prompt_names() -> set[str]:
    """Every fixed piece the messages use."""
    return set().union(*(message_pieces(kind) for kind in BankMessage))
