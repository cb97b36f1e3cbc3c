"""The one YAML loader: aliases, duplicate keys, deep nesting, bad bytes -> one-line errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import ConfigError
from dialer.lists.campaigns import load_campaign_file
from dialer.pacing.scenario import load_scenario as load_rehearsal_scenario
from dialer.settings import load_settings
from dialer.sim.scenario import load_scenario as load_sim_scenario
from dialer.yamlfile import MAX_DEPTH, YamlFileError, loads
from ivr.flow import load_flow_file

#: 600 bytes that expand to 9**9 list items under plain ``yaml.safe_load``
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
).encode()

LOADERS: dict[str, Callable[[Path], Any]] = {
    "settings": load_settings,
    "campaign": load_campaign_file,
    "rehearsal scenario": load_rehearsal_scenario,
    "sim scenario": load_sim_scenario,
    "flow": load_flow_file,
}


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text
    return text


def test_alias_bomb_is_refused_at_once() -> None:
    assert len(ALIAS_BOMB) < 700
    t0 = time.perf_counter()
    with pytest.raises(YamlFileError) as err:
        loads(ALIAS_BOMB, file="bomb.yaml")
    assert time.perf_counter() - t0 < 0.5
    assert one_line(err.value).startswith("bomb.yaml: ")
    assert "anchors are not accepted" in str(err.value)


def test_a_bare_alias_and_a_merge_key_are_refused() -> None:
    with pytest.raises(YamlFileError, match="aliases are not accepted"):
        loads("a: 1\nb: *x\n")
    with pytest.raises(YamlFileError, match="anchors"):
        loads("base: &b {x: 1}\nother:\n  <<: *b\n")


def test_duplicate_keys_name_the_key_and_both_lines() -> None:
    with pytest.raises(YamlFileError) as err:
        loads("name: a\npacing:\n  abandon_cap: 0.03\n  abandon_cap: 0.5\n", file="c.yaml")
    assert one_line(err.value) == (
        "c.yaml: not valid YAML: line 4 column 3: duplicate key 'abandon_cap' (first at line 3)"
    )


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(YamlFileError, match="nested deeper"):
        loads("[" * 5000 + "]" * 5000)


def test_non_utf8_names_line_and_byte() -> None:
    with pytest.raises(YamlFileError) as err:
        loads("name: ok\ntitle: 还款\n".encode("gbk"), file="g.yaml")
    assert one_line(err.value).startswith("g.yaml: line 2: not UTF-8 text (byte 0xbb")
    assert loads("\ufeffname: 还款\n".encode()) == {"name": "还款"}


def test_oversized_file_is_refused() -> None:
    with pytest.raises(YamlFileError, match="larger than"):
        loads(b"a: " + b"x" * (2 << 20))


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize(
    "content, expect",
    [
        (ALIAS_BOMB, "anchors are not accepted"),
        (b"name: a\nname: b\n", "duplicate key 'name'"),
        ("name: 催收\n".encode("gbk"), "not UTF-8 text"),
    ],
)
def test_every_operator_file_goes_through_the_loader(
    tmp_path: Path, kind: str, content: bytes, expect: str
) -> None:
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        LOADERS[kind](path)
    assert expect in one_line(err.value)
    assert str(path) in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode()))
def test_any_bytes_parse_or_give_one_line(data: bytes) -> None:
    try:
        loads(data, file="f.yaml")
    except YamlFileError as exc:
        one_line(exc)
