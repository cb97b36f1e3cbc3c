"""Spoken values as prompt lists: pure functions, one per kind and language.

A flow never names a sound file for a value; it asks ``say(kind, value, lang)`` and gets the
list of prompt names (``sounds/<lang>/<name>.wav``) to play in order.

Mandarin rules implemented (checked by a written-out table in tests/ivr/test_say.py):
* digits are grouped by four: 亿 (10^8), 万 (10^4), units; inside a group 千/百/十;
* one 零 stands for any run of zeros *inside* the number, never at its end
  (1001 一千零一, 10010 一万零一十, 100000001 一亿零一);
* a group below 1000 after a non-empty higher group starts with 零 (10010 一万零一十);
* a number starting with 1 in the tens place drops the 一 (10 十, 15 十五, 100000 十万) but
  keeps it elsewhere (110 一百一十, 10010 一万零一十);
* 两 before 千 and 百 and for a lone 2 before 万/亿 (2000 两千, 200 两百, 20000 两万),
  and for a lone 2 before a measure word (两元, 两角, 两分); 二 elsewhere (12 十二, 20 二十);
* amounts: 元, then 角 and 分; an inner 零 when 角 is zero but 分 is not (10.05 十元零五分)
  or when there are no 元 after 亿/万... (100000000.01 一亿元零一分); 0.05 五分; 0 零元.
English: "one thousand one", "ten yuan and fifty cents", "December fifteenth".
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

Prompts = list[str]


class Lang(enum.StrEnum):
    ZH = "zh"
    EN = "en"


LANGS: Final = (Lang.ZH, Lang.EN)

#: Upper bound for spoken numbers (9999亿 ... in English: 999 billion).
MAX_NUMBER: Final = 10**12 - 1

LIANG: Final = "num-liang"
ZERO: Final = "num-0"
TEN: Final = "unit-10"
HUNDRED: Final = "unit-100"
THOUSAND: Final = "unit-1000"
WAN: Final = "unit-10k"
YI: Final = "unit-100m"
MILLION: Final = "unit-million"
BILLION: Final = "unit-billion"
YUAN: Final = "cur-yuan"
JIAO: Final = "cur-jiao"
FEN: Final = "cur-fen"
CENT: Final = "cur-cent"
CENTS: Final = "cur-cents"
AND: Final = "word-and"
OH: Final = "word-oh"
HOUR: Final = "time-hour"
MINUTE: Final = "time-minute"
OCLOCK: Final = "time-oclock"

_ZH_GROUP_UNITS: Final = ("", WAN, YI)  # 10^0, 10^4, 10^8
_ZH_PLACE_UNITS: Final = (THOUSAND, HUNDRED, TEN, None)


def num(n: int) -> str:
    return f"num-{n}"


def digit(ch: str) -> str:
    return {"*": "digit-star", "#": "digit-pound"}.get(ch, f"digit-{ch}")


def _check_range(n: int) -> None:
    if n < 0 or n > MAX_NUMBER:
        raise ValueError(f"cannot say {n}: outside 0..{MAX_NUMBER}")


# --- Mandarin ---------------------------------------------------------------------------


def _zh_group(g: int, *, leading: bool, before_big_unit: bool) -> Prompts:
    """Read 1..9999 (one group of four); ``leading`` = first words of the whole number."""
    out: Prompts = []
    places = (g // 1000, g // 100 % 10, g // 10 % 10, g % 10)
    started = False
    zero_pending = False
    for i, d in enumerate(places):
        if d == 0:
            zero_pending = started
            continue
        if zero_pending:
            out.append(ZERO)
            zero_pending = False
        unit = _ZH_PLACE_UNITS[i]
        if unit == TEN and d == 1 and leading and not started:
            out.append(TEN)  # 十五, not 一十五, at the very start
        else:
            liang = d == 2 and (unit in (THOUSAND, HUNDRED) or (g == 2 and before_big_unit))
            out.append(LIANG if liang else num(d))
            if unit:
                out.append(unit)
        started = True
    return out


def zh_number(n: int, *, measure: bool = False) -> Prompts:
    """Mandarin reading of ``n``; ``measure`` = a measure word follows (两元 vs 二)."""
    _check_range(n)
    if n == 0:
        return [ZERO]
    if n == 2 and measure:
        return [LIANG]
    groups = [(n // 10**8) % 10**4, (n // 10**4) % 10**4, n % 10**4]
    out: Prompts = []
    need_zero = False
    for idx, g in enumerate(groups):
        power = 2 - idx
        if g == 0:
            need_zero = need_zero or bool(out)
            continue
        if out and (need_zero or g < 1000):
            out.append(ZERO)
        out += _zh_group(g, leading=not out, before_big_unit=power > 0)
        if power:
            out.append(_ZH_GROUP_UNITS[power])
        need_zero = False
    return out


# --- English ----------------------------------------------------------------------------


def _en_below_1000(n: int) -> Prompts:
    out: Prompts = []
    if n >= 100:
        out += [num(n // 100), HUNDRED]
        n %= 100
    if n >= 20:
        out.append(num(n // 10 * 10))
        n %= 10
        if n:
            out.append(num(n))
    elif n:
        out.append(num(n))
    return out


def en_number(n: int) -> Prompts:
    _check_range(n)
    if n == 0:
        return [ZERO]
    out: Prompts = []
    for size, unit in ((10**9, BILLION), (10**6, MILLION), (10**3, THOUSAND)):
        if n >= size:
            out += _en_below_1000(n // size) + [unit]
            n %= size
    return out + _en_below_1000(n)


# --- public API -------------------------------------------------------------------------


def _lang(lang: str) -> Lang:
    try:
        return Lang(lang)
    except ValueError:
        raise ValueError(f"no spoken-value rules for language {lang!r}") from None


def say_number(n: int, lang: str) -> Prompts:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("say_number takes an int")
    return zh_number(n) if _lang(lang) is Lang.ZH else en_number(n)


def say_digits(digits: str, lang: str) -> Prompts:
    _lang(lang)
    bad = [c for c in digits if c not in "0123456789*#"]
    if bad:
        raise ValueError("say_digits takes only 0-9, * and #")
    return [digit(c) for c in digits]


def to_cents(amount: Decimal | int | float | str) -> int:
    """An amount in 元 as an exact number of 分 (half-up at the third decimal)."""
    try:
        d = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"not a speakable amount: {amount!r}")
    return int((d * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def say_amount(amount: Decimal | int | float | str, lang: str) -> Prompts:
    """An amount of money in 元 (CNY)."""
    cents = to_cents(amount)
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10
    if _lang(lang) is Lang.ZH:
        out: Prompts = []
        if yuan:
            out += zh_number(yuan, measure=True) + [YUAN]
        if jiao:
            out += zh_number(jiao, measure=True) + [JIAO]
        if fen:
            if yuan and not jiao:
                out.append(ZERO)
            out += zh_number(fen, measure=True) + [FEN]
        return out or [ZERO, YUAN]
    small = cents % 100
    out = []
    if yuan or not small:
        out += en_number(yuan) + [YUAN]
    if small:
        if yuan:
            out.append(AND)
        out += en_number(small) + [CENT if small == 1 else CENTS]
    return out


def say_date(day: dt.date, lang: str) -> Prompts:
    """Month and day (the year is implied for due dates and recent transactions)."""
    _lang(lang)
    return [f"month-{day.month}", f"day-{day.day}"]


def say_time(t: dt.time, lang: str) -> Prompts:
    """24-hour clock time: 十四点零五分 / fourteen oh five."""
    if _lang(lang) is Lang.ZH:
        out = zh_number(t.hour, measure=True) + [HOUR]
        if t.minute:
            if t.minute < 10:
                out.append(ZERO)
            out += zh_number(t.minute) + [MINUTE]
        return out
    out = en_number(t.hour)
    if t.minute == 0:
        return out + [OCLOCK]
    if t.minute < 10:
        out.append(OH)
    return out + en_number(t.minute)


class SayKind(enum.StrEnum):
    AMOUNT = "amount"
    DATE = "date"
    TIME = "time"
    DIGITS = "digits"
    NUMBER = "number"


def say(kind: SayKind | str, value: object, lang: str) -> Prompts:
    """Dispatch by kind, converting a stored (JSON) value to its type."""
    kind = SayKind(kind)
    if kind is SayKind.AMOUNT:
        return say_amount(str(value), lang)
    if kind is SayKind.DATE:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
        return say_date(day, lang)
    if kind is SayKind.TIME:
        if isinstance(value, dt.datetime):
            return say_time(value.time(), lang)
        if isinstance(value, dt.time):
            return say_time(value, lang)
        text = str(value)
        text = text[11:16] if len(text) >= 16 else text  # ISO datetime or HH:MM
        return say_time(dt.time.fromisoformat(text), lang)
    if kind is SayKind.DIGITS:
        return say_digits(str(value), lang)
    return say_number(int(str(value)), lang)


def vocabulary() -> set[str]:
    """Every prompt name the say functions can produce (for the both-languages test)."""
    names = {f"digit-{d}" for d in "0123456789"} | {"digit-star", "digit-pound"}
    names |= {num(n) for n in range(20)} | {num(n) for n in range(20, 100, 10)}
    names |= {LIANG, TEN, HUNDRED, THOUSAND, WAN, YI, MILLION, BILLION}
    names |= {YUAN, JIAO, FEN, CENT, CENTS, AND, OH, HOUR, MINUTE, OCLOCK}
    names |= {f"month-{m}" for m in range(1, 13)} | {f"day-{d}" for d in range(1, 32)}
    return names
