"""What a customer's reply means (pure).

A reply is normalised (Unicode NFKC, so full-width ``ＴＤ`` and ``１`` read as ``TD`` and ``1``;
case folded; surrounding spaces and punctuation dropped) and then looked up whole: ``T`` opts
out, ``Thanks`` does not. Rules are configurable per deployment; the defaults are the ones
Chinese carriers and banks use. Anything that matches no rule is kept for an agent to read.
"""

from __future__ import annotations

import enum
import string
import unicodedata
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class ReplyAction(enum.StrEnum):
    OPT_OUT = "opt_out"  # DNC for marketing messages on this channel
    CONFIRM = "confirm"
    DENY = "deny"
    FREE_TEXT = "free_text"  # kept for an agent


#: The business result (DESIGN.md section 9) a reply sets on the step it answers.
RESULT_OF: dict[ReplyAction, str | None] = {
    ReplyAction.OPT_OUT: "opted_out",
    ReplyAction.CONFIRM: "confirmed",
    ReplyAction.DENY: "denied",
    ReplyAction.FREE_TEXT: None,
}

DEFAULT_KEYWORDS: dict[ReplyAction, tuple[str, ...]] = {
    ReplyAction.OPT_OUT: ("T", "TD", "退订", "STOP"),
    ReplyAction.CONFIRM: ("1", "是", "Y", "YES"),
    ReplyAction.DENY: ("2", "否", "NO"),
}

_STRIP = string.whitespace + string.punctuation + "。，！？、；：“”‘’（）【】《》…"


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip(_STRIP).casefold()


class KeywordRules(BaseModel):
    """Keyword -> action; every keyword compared after ``normalise``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opt_out: tuple[str, ...] = Field(default=DEFAULT_KEYWORDS[ReplyAction.OPT_OUT])
    confirm: tuple[str, ...] = Field(default=DEFAULT_KEYWORDS[ReplyAction.CONFIRM])
    deny: tuple[str, ...] = Field(default=DEFAULT_KEYWORDS[ReplyAction.DENY])

    def table(self) -> Mapping[str, ReplyAction]:
        out: dict[str, ReplyAction] = {}
        for action, words in (
            (ReplyAction.OPT_OUT, self.opt_out),
            (ReplyAction.CONFIRM, self.confirm),
            (ReplyAction.DENY, self.deny),
        ):
            for w in words:
                key = normalise(w)
                if not key:
                    raise ValueError(f"empty keyword for {action.value}")
                if out.get(key, action) is not action:
                    raise ValueError(f"keyword {w!r} is given to two actions")
                out[key] = action
        return out

    def classify(self, text: str) -> ReplyAction:
        return self.table().get(normalise(text), ReplyAction.FREE_TEXT)


class Classifier:
    """``KeywordRules`` with its table built once (for a stream of replies)."""

    def __init__(self, rules: KeywordRules | None = None) -> None:
        self._table = (rules or KeywordRules()).table()

    def __call__(self, text: str) -> ReplyAction:
        return self._table.get(normalise(text), ReplyAction.FREE_TEXT)


__all__ = ["RESULT_OF", "Classifier", "KeywordRules", "ReplyAction", "normalise"]
