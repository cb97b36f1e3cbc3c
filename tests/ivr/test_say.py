"""Spoken values: written-out expectations, in characters for Mandarin and words for English."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.yamlfile import load_mapping
from ivr.prompts import sounds_dir
from ivr.say import (
    MAX_NUMBER,
    say,
    say_amount,
    say_date,
    say_digits,
    say_number,
    say_time,
    vocabulary,
)

PROMPTS = load_mapping(sounds_dir() / "prompts.yaml")["prompts"]


def zh(names: list[str]) -> str:
    """Prompt names -> the Chinese text they speak (so expectations read as Chinese)."""
    return "".join(PROMPTS[n]["zh"] for n in names)


def en(names: list[str]) -> str:
    return " ".join(PROMPTS[n]["en"] for n in names)


ZH_AMOUNTS = [
    ("0", "零元"),
    ("0.05", "五分"),
    ("0.02", "两分"),
    ("0.5", "五角"),
    ("0.55", "五角五分"),
    ("1", "一元"),
    ("2", "两元"),
    ("1.2", "一元两角"),
    ("10", "十元"),
    ("10.5", "十元五角"),
    ("10.05", "十元零五分"),
    ("10.50", "十元五角"),
    ("12", "十二元"),
    ("15.3", "十五元三角"),
    ("20", "二十元"),
    ("101", "一百零一元"),
    ("110", "一百一十元"),
    ("200", "两百元"),
    ("1001", "一千零一元"),
    ("1010", "一千零一十元"),
    ("1100", "一千一百元"),
    ("1234.56", "一千两百三十四元五角六分"),
    ("2000", "两千元"),
    ("10000", "一万元"),
    ("10010", "一万零一十元"),
    ("10010.05", "一万零一十元零五分"),
    ("10100", "一万零一百元"),
    ("12000", "一万两千元"),
    ("20000", "两万元"),
    ("22222", "两万两千两百二十二元"),
    ("100000", "十万元"),
    ("110000", "十一万元"),
    ("1000000", "一百万元"),
    ("1001000", "一百万一千元"),
    ("10000000", "一千万元"),
    ("100000000", "一亿元"),
    ("100000000.01", "一亿元零一分"),
    ("100000001", "一亿零一元"),
    ("100010000", "一亿零一万元"),
    ("110000000", "一亿一千万元"),
    ("200000000", "两亿元"),
    ("10000000000", "一百亿元"),
    ("999999999999.99", "九千九百九十九亿九千九百九十九万九千九百九十九元九角九分"),
]


@pytest.mark.parametrize(("amount", "spoken"), ZH_AMOUNTS)
def test_mandarin_amounts(amount: str, spoken: str) -> None:
    assert zh(say_amount(amount, "zh")) == spoken


EN_AMOUNTS = [
    ("0", "zero yuan"),
    ("0.05", "five cents"),
    ("0.01", "one cent"),
    ("1", "one yuan"),
    ("10.5", "ten yuan and fifty cents"),
    ("101", "one hundred one yuan"),
    ("1001", "one thousand one yuan"),
    ("10010", "ten thousand ten yuan"),
    ("1234.56", "one thousand two hundred thirty four yuan and fifty six cents"),
    ("100000000.01", "one hundred million yuan and one cent"),
    ("2000000000", "two billion yuan"),
]


@pytest.mark.parametrize(("amount", "spoken"), EN_AMOUNTS)
def test_english_amounts(amount: str, spoken: str) -> None:
    assert en(say_amount(amount, "en")) == spoken


def test_numbers_without_measure_word_use_er() -> None:
    assert zh(say_number(2, "zh")) == "二"
    assert zh(say_number(12, "zh")) == "十二"
    assert zh(say_number(0, "zh")) == "零"
    assert en(say_number(0, "en")) == "zero"


def test_dates_and_times() -> None:
    d = dt.date(2026, 12, 15)
    assert zh(say_date(d, "zh")) == "十二月十五日"
    assert en(say_date(d, "en")) == "December fifteenth"
    assert en(say_date(dt.date(2026, 1, 21), "en")) == "January twenty-first"
    assert zh(say_time(dt.time(14, 5), "zh")) == "十四点零五分"
    assert zh(say_time(dt.time(2, 0), "zh")) == "两点"
    assert zh(say_time(dt.time(23, 41), "zh")) == "二十三点四十一分"
    assert en(say_time(dt.time(9, 5), "en")) == "nine oh five"
    assert en(say_time(dt.time(14, 0), "en")) == "fourteen o'clock"
    assert say("time", "2026-11-29T23:41:00", "zh") == say_time(dt.time(23, 41), "zh")
    assert say("date", "2026-11-29T23:41:00", "en") == ["month-11", "day-29"]


def test_digits() -> None:
    assert say_digits("4321", "zh") == ["digit-4", "digit-3", "digit-2", "digit-1"]
    assert say_digits("1*#", "en") == ["digit-1", "digit-star", "digit-pound"]
    with pytest.raises(ValueError):
        say_digits("12a", "zh")


@pytest.mark.parametrize("bad", ["-1", "abc", "1e13", "NaN"])
def test_bad_amounts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        say_amount(bad, "zh")


def test_unknown_language() -> None:
    with pytest.raises(ValueError):
        say_amount("1", "fr")


@given(st.integers(0, MAX_NUMBER))
def test_every_number_uses_known_words_and_no_double_or_trailing_zero(n: int) -> None:
    for lang in ("zh", "en"):
        names = say_number(n, lang)
        assert set(names) <= vocabulary()
    names = say_number(n, "zh")
    if n:
        assert names[-1] != "num-0"
        assert all(not (a == b == "num-0") for a, b in zip(names, names[1:], strict=False))


@given(st.integers(0, MAX_NUMBER * 100 + 99))
def test_every_amount_uses_known_words(cents: int) -> None:
    amount = f"{cents // 100}.{cents % 100:02d}"
    for lang in ("zh", "en"):
        assert set(say_amount(amount, lang)) <= vocabulary()
