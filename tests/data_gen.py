"""Deterministic contact files for tests and the import benchmark.

Every generated row carries its expected fate, worked out here from how the row was BUILT
(which canonical number was spelled, which defect was planted), not by asking the importer
or ``phonenumbers``: valid rows know their E.164, zone and region; bad rows know their reason.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from typing import Any

#: A test campaign with one field of every type (one sensitive).
TEST_CAMPAIGN: dict[str, Any] = {
    "name": "mixed-test",
    "state": "running",
    "purpose": "collections",
    "mode": "progressive",
    "queue": "q",
    "calling_window": {"start": "09:00", "end": "20:00", "skip_holidays": True},
    "max_attempts": 3,
    "retry": {"busy": "10m", "no_answer": "2h", "abandoned": "72h", "failed": "30m"},
    "fields": {
        "amount_due": "decimal",
        "due_date": "date",
        "id_last6": {"type": "digits", "length": 6, "sensitive": True},
        "card_last4": {"type": "digits", "length": 4},
        "visits": "integer",
        "note": "text",
    },
}

HEADER = [
    "phone",
    "name",
    "language",
    "timezone",
    "amount_due",
    "due_date",
    "id_last6",
    "card_last4",
    "visits",
    "note",
    "branch",  # unknown column: ignored with one warning
]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"

# Canonical numbers the generator can spell in several ways ------------------------------


@dataclass(frozen=True)
class Number:
    e164: str
    spellings: tuple[str, ...]
    timezone: str
    region: str


def cn_mobile(rng: random.Random) -> Number:
    p = rng.choice(["138", "139", "186", "150", "137", "188"])
    mid = f"{rng.randrange(10000):04d}"
    end = f"{rng.randrange(10000):04d}"
    nat = f"{p}{mid}{end}"
    return Number(
        f"+86{nat}",
        (
            nat,
            f"{p} {mid} {end}",
            f"{p}-{mid}-{end}",
            f"+86 {p} {mid} {end}",
            f"+86{nat}",
            f"0086{nat}",
            f"(+86) {p}-{mid}-{end}",
        ),
        "Asia/Shanghai",
        "CN",
    )


def cn_landline(rng: random.Random) -> Number:
    area, first = rng.choice([("10", "6"), ("10", "8"), ("21", "6"), ("20", "8")])
    sub = f"{first}{rng.randrange(10**7):07d}"
    a, b = sub[:4], sub[4:]
    return Number(
        f"+86{area}{sub}",
        (
            f"0{area}-{sub}",
            f"(0{area}){sub}",
            f"+86-{area}-{a}-{b}",
            f"+86 {area} {a} {b}",
            f"0086 {area} {sub}",
            f"0{area} {a} {b}",
        ),
        "Asia/Shanghai",
        "CN",
    )


def foreign(rng: random.Random) -> Number:
    n = f"{rng.randrange(10000):04d}"
    kind = rng.randrange(4)
    if kind == 0:
        return Number(
            f"+1212736{n}",
            (f"+1 212 736 {n}", f"+1-212-736-{n}", f"001 212 736 {n}"),
            "America/New_York",
            "US",
        )
    if kind == 1:
        x = n[1:]
        return Number(
            f"+442079460{x}",
            (f"+44 20 7946 0{x}", f"0044 2079460{x}", f"+44(0)20 7946 0{x}"),
            "Europe/London",
            "GB",
        )
    if kind == 2:
        return Number(f"+8131234{n}", (f"+81 3-1234-{n}", f"0081 31234{n}"), "Asia/Tokyo", "JP")
    return Number(f"+8522123{n}", (f"+852 2123 {n}", f"00852 2123{n}"), "Asia/Hong_Kong", "HK")


#: Strings no phone-number library may accept as a valid number (with default region CN).
GARBAGE = (
    "abc",
    "12345",
    "138001380",  # too short
    "+86 138 0013 800",  # too short
    "1380013800012",  # too long
    "N/A",
    "电话",
    "+999 1234 5678",  # no such country code
    "0000000000",
    "13800138000.0.0",
    "#########",
    "+86 000 0000 0000",
)
BAD_AMOUNTS = ("1,234.50", "abc", "12.3.4", "¥100", "1e5", ".5", "12.")
BAD_DATES = ("2026-02-30", "2026/12/15", "15-12-2026", "20261215", "2026-13-01", "tomorrow")
BAD_LAST4 = ("123", "12a4", "12345", "１２３４")  # the last one: full-width digits
BAD_ID6 = ("12345", "1234567", "12345X")
BAD_VISITS = ("1.5", "two", "3-")


@dataclass
class Expected:
    """What the importer must do with a generated file."""

    imported: dict[str, dict[str, Any]] = field(default_factory=dict)  # e164 -> values
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)


@dataclass
class GeneratedFile:
    header: list[str]
    rows: list[list[str]]
    expected: Expected

    def text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(self.header)
        w.writerows(self.rows)
        return buf.getvalue()


def _good_values(rng: random.Random) -> dict[str, str]:
    return {
        "name": rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2))),
        "language": rng.choice(["zh", "zh", "en", "", "ZH"]),
        "timezone": "",
        "amount_due": rng.choice([f"{rng.randrange(100000)}.{rng.randrange(100):02d}", "0", ""]),
        "due_date": rng.choice(
            [f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "2027-02-28", ""]
        ),
        "id_last6": f"{rng.randrange(10**6):06d}",
        "card_last4": f"{rng.randrange(10**4):04d}",
        "visits": rng.choice([str(rng.randrange(10)), "", "-1"]),
        "note": rng.choice(["", "VIP", "客户要求下午来电", 'comma, and "quote"']),
        "branch": rng.choice(["北京分行", "上海分行", ""]),
    }


def mixed_file(
    n_rows: int = 2000, seed: int = 20261130, existing: tuple[str, ...] = ()
) -> GeneratedFile:
    """About ``n_rows`` mixed rows with their expected fate.

    ``existing`` are E.164 numbers already in the campaign (rows with them are duplicates).
    """
    rng = random.Random(seed)
    exp = Expected()
    claimed = set(existing)  # numbers of imported rows so far (and the store's)
    pool: list[Number] = []  # numbers already used, to spell again as duplicates
    rows: list[list[str]] = []

    def emit(values: dict[str, str], phone: str, fate: str | Number) -> None:
        row_no = len(rows) + 1
        rows.append([phone if h == "phone" else values.get(h, "") for h in HEADER])
        if isinstance(fate, Number):
            if fate.e164 in claimed:
                exp.rejected.append((row_no, "duplicate"))
                return
            claimed.add(fate.e164)
            lang = values["language"].lower() or "zh"
            exp.imported[fate.e164] = {
                "timezone": values["timezone"] or fate.timezone,
                "region": fate.region,
                "name": values["name"] or None,
                "language": lang,
                "values": values,
            }
        else:
            exp.rejected.append((row_no, fate))

    def fresh_number() -> Number:
        while True:
            k = rng.random()
            num = cn_mobile(rng) if k < 0.6 else cn_landline(rng) if k < 0.85 else foreign(rng)
            if num.e164 not in {p.e164 for p in pool[-50:]} and num.e164 not in claimed:
                return num

    for _ in range(n_rows):
        values = _good_values(rng)
        r = rng.random()
        if r < 0.55:  # a good row
            num = fresh_number()
            pool.append(num)
            if rng.random() < 0.05:
                values["timezone"] = "Asia/Urumqi"
            emit(values, rng.choice(num.spellings), num)
        elif r < 0.65 and pool:  # the same number again, spelled another way
            num = rng.choice(pool)
            emit(values, rng.choice(num.spellings), num)
        elif r < 0.70 and existing:  # a number the campaign already has
            e = rng.choice(existing)
            emit(values, e, "duplicate")
        elif r < 0.76:
            emit(values, rng.choice(GARBAGE), "invalid_phone")
        elif r < 0.79:
            emit(values, rng.choice(["", "   "]), "missing_phone")
        elif r < 0.80:  # a garbage phone AND a bad amount: the phone is reported
            values["amount_due"] = rng.choice(BAD_AMOUNTS)
            emit(values, rng.choice(GARBAGE), "invalid_phone")
        else:  # a valid, unused number with exactly one bad field: it claims nothing
            num = fresh_number()
            pool.append(num)  # a later duplicate spelling of it may still import
            which = rng.choice(
                ["amount_due", "due_date", "card_last4", "id_last6", "visits", "language", "tz"]
            )
            if which == "amount_due":
                values["amount_due"] = rng.choice(BAD_AMOUNTS)
            elif which == "due_date":
                values["due_date"] = rng.choice(BAD_DATES)
            elif which == "card_last4":
                values["card_last4"] = rng.choice(BAD_LAST4)
            elif which == "id_last6":
                values["id_last6"] = rng.choice(BAD_ID6)
            elif which == "visits":
                values["visits"] = rng.choice(BAD_VISITS)
            elif which == "language":
                values["language"] = "fr"
            else:
                which = "timezone"
                values["timezone"] = "Mars/Olympus_Mons"
            emit(values, rng.choice(num.spellings), f"invalid_field:{which}")
    return GeneratedFile(list(HEADER), rows, exp)


if __name__ == "__main__":  # a sample file for a walk-through: python tests/data_gen.py 200
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    sys.stdout.write(mixed_file(n).text())
