"""The CN-mobile fast path of ``parse_phone`` agrees with the full ``phonenumbers`` parse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.lists.contacts import parse_phone, parse_phone_slow

digits11 = st.from_regex(r"1[0-9]{10}", fullmatch=True)


@st.composite
def spellings(draw: st.DrawFn) -> str:
    n = draw(digits11 | st.sampled_from(["17951380013", "13800138000", "14000000000"]))
    sep = draw(st.sampled_from(["", " ", "-"]))
    body = draw(st.sampled_from([n, f"{n[:3]}{sep}{n[3:7]}{sep}{n[7:]}"]))
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "0086-", "86"]))
    return prefix + body


@given(text=spellings(), region=st.sampled_from(["CN", "US", "GB"]))
@settings(max_examples=600, deadline=None)
def test_fast_path_matches_phonenumbers(text: str, region: str) -> None:
    assert parse_phone(text, region) == parse_phone_slow(text, region)


def test_known_numbers() -> None:
    p = parse_phone("138 0013 8000", "CN")
    assert p is not None and (p.e164, p.region, p.timezone) == (
        "+8613800138000",
        "CN",
        "Asia/Shanghai",
    )
    assert parse_phone("13800138000", "US") == parse_phone_slow("13800138000", "US")
    assert parse_phone("+86 138 0013 8000", "US") is not None


@given(
    cells=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.from_regex(r"[+0-9 ()\-.]{0,20}", fullmatch=True),
            st.sampled_from(["13800138000", "2026-02-29", "2028-02-29", "1.50", "１２３４"]),
        ),
        min_size=0,
        max_size=12,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_row_gives_values_or_a_reason(cells: list[str]) -> None:
    """Whatever a cell holds, a row is imported or rejected with a known code; never a crash."""
    from dialer.lists.campaigns import parse_campaign
    from dialer.lists.contacts import RowParser
    from tests.data_gen import HEADER, TEST_CAMPAIGN

    p = RowParser(
        HEADER + ["priority", "valid_until", "external_id"], parse_campaign(TEST_CAMPAIGN), "CN"
    )
    got = p.parse(cells)
    if isinstance(got, str):
        assert got in ("missing_phone", "invalid_phone", "duplicate") or got.startswith(
            "invalid_field:"
        )
    else:
        assert got["phone"].startswith("+") and got["phone"][1:].isdigit()
        assert got["language"] in ("zh", "en")
