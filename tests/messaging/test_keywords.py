"""Reply keywords: defaults, normalisation, configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialer.messaging.keywords import Classifier, KeywordRules, ReplyAction


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("T", ReplyAction.OPT_OUT),
        ("td", ReplyAction.OPT_OUT),
        (" 退订。", ReplyAction.OPT_OUT),
        ("ＴＤ", ReplyAction.OPT_OUT),  # full-width
        ("1", ReplyAction.CONFIRM),
        ("１", ReplyAction.CONFIRM),
        ("是！", ReplyAction.CONFIRM),
        ("2", ReplyAction.DENY),
        ("否", ReplyAction.DENY),
        ("Thanks", ReplyAction.FREE_TEXT),
        ("我已经还款了，请不要再打", ReplyAction.FREE_TEXT),
        ("12", ReplyAction.FREE_TEXT),
        ("", ReplyAction.FREE_TEXT),
    ],
)
def test_defaults(text: str, action: ReplyAction) -> None:
    assert Classifier()(text) is action
    assert KeywordRules().classify(text) is action


def test_configurable() -> None:
    rules = KeywordRules.model_validate({"opt_out": ["QX", "取消"], "confirm": ["Y"]})
    c = Classifier(rules)
    assert c("取消") is ReplyAction.OPT_OUT
    assert c("T") is ReplyAction.FREE_TEXT
    assert c("y") is ReplyAction.CONFIRM
    assert c("2") is ReplyAction.DENY  # defaults kept for what is not configured


def test_conflicting_keywords_refused() -> None:
    with pytest.raises(ValueError, match="two actions"):
        Classifier(KeywordRules.model_validate({"opt_out": ["1"]}))
    with pytest.raises(ValidationError):
        KeywordRules.model_validate({"stop": ["X"]})


@given(st.text(max_size=30))
def test_only_whole_keywords_opt_out(text: str) -> None:
    action = Classifier()(text)
    if action is ReplyAction.OPT_OUT:
        from dialer.messaging.keywords import normalise

        assert normalise(text) in {"t", "td", "退订", "stop"}
