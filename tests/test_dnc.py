from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.app.cli import cli
from dialer.errors import ConfigError
from dialer.lists.dnc import DncMatcher, normalize_number, normalize_prefix
from dialer.store import Store


def run(db_url: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["--db", db_url, *args])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout


def test_normalisation() -> None:
    assert normalize_number("138 0013 8000", "CN") == "+8613800138000"
    assert normalize_number("008613800138000", "CN") == "+8613800138000"
    assert normalize_number("(010)65529988", "CN") == "+861065529988"
    assert normalize_prefix("138", "CN") == "+86138"
    assert normalize_prefix("010", "CN") == "+8610"  # trunk prefix dropped
    assert normalize_prefix("+86 170", "CN") == "+86170"
    assert normalize_prefix("0086-171*", "CN") == "+86171"
    assert normalize_prefix("212", "US") == "+1212"
    for bad in ("abc", "+", "+8", "12a"):
        with pytest.raises(ConfigError):
            normalize_prefix(bad, "CN")
    with pytest.raises(ConfigError):
        normalize_number("12345", "CN")


def test_matcher_exact_prefix_and_scope() -> None:
    m = DncMatcher.of(
        [
            ("+8613800138000", False, "all"),
            ("+86170", True, "all"),
            ("+86139", True, "marketing"),
        ]
    )
    assert m.blocks("+8613800138000", "service")
    assert not m.blocks("+8613800138001", "service")
    assert m.blocks("+8617012345678", "collections")
    assert not m.blocks("+8613912345678", "service")  # marketing-only entry
    assert m.blocks("+8613912345678", "marketing")


@given(
    number=st.from_regex(r"\+86[0-9]{11}", fullmatch=True),
    cut=st.integers(3, 14),
    scope=st.sampled_from(["all", "marketing"]),
    purpose=st.sampled_from(["service", "marketing", "collections"]),
)
@settings(max_examples=200, deadline=None)
def test_every_prefix_of_a_number_blocks_it(
    number: str, cut: int, scope: str, purpose: str
) -> None:
    prefix = number[:cut]
    m = DncMatcher.of([(prefix, True, scope)])
    assert m.blocks(number, purpose) == (scope == "all" or purpose == "marketing")
    # a prefix that is not a prefix of the number never blocks it
    other = prefix[:-1] + str((int(prefix[-1]) + 1) % 10)
    assert not DncMatcher.of([(other, True, "all")]).blocks(number, purpose)


def test_cli_add_list_remove_import(store: Store, db_url: str, tmp_path: Path) -> None:
    code, out = run(db_url, "dnc", "add", "138 0013 8000", "--reason", "asked")
    assert code == 0 and "added: number +86138****8000" in out  # masked
    code, out = run(db_url, "dnc", "add", "13800138000")
    assert "already listed" in out
    run(db_url, "dnc", "add", "--prefix", "170", "--scope", "marketing")
    f = tmp_path / "dnc.csv"
    f.write_text("phone,reason\n+1 212 736 5000,lawyer\n+86171*,\nbogus\n13800138000\n", "utf-8")
    code, out = run(db_url, "dnc", "import", str(f), "--json")
    assert json.loads(out) == {
        "added": 2,
        "already": 1,
        "rejected": [{"row": 3, "reason": "invalid_number"}],
    }
    code, out = run(db_url, "dnc", "list", "--json")
    entries = {(d["number"], d["prefix"], d["scope"]) for d in json.loads(out)}
    assert entries == {  # numbers masked, prefixes (ranges, not persons) as they are
        ("+86138****8000", False, "all"),
        ("+86170", True, "marketing"),
        ("+12127**5000", False, "all"),
        ("+86171", True, "all"),
    }
    code, out = run(db_url, "dnc", "list")
    assert "+86138****8000" in out and "13800138000" not in out and "7365000" not in out
    with store.session() as s:
        m = DncMatcher.load(s)
        assert m.blocks("+8617100000000", "service")
        assert m.blocks("+8617000000000", "marketing")
        assert not m.blocks("+8617000000000", "service")
        only = DncMatcher.for_numbers(s, ["+12127365000"])
        assert only.blocks("+12127365000", "service") and "+8613800138000" not in only.exact
    code, out = run(db_url, "dnc", "remove", "13800138000")
    assert "removed: +86138****8000" in out
    code, out = run(db_url, "dnc", "remove", "--prefix", "170")
    assert "removed: +86170" in out
    code, out = run(db_url, "dnc", "list")
    assert "+8613800138000" not in out and "+86171" in out
    r = CliRunner().invoke(cli, ["--db", db_url, "dnc", "add", "12345"])
    assert isinstance(r.exception, ConfigError)
