"""The AMI server's sans-I/O action framing, fed the same bytes cut at random points."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.sim.ami_server import ActionParser

STREAM = (
    "Action: Login\r\nUsername: dialer\r\nSecret: s\r\n\r\n"
    "Action: Originate\r\nChannel: Local/+8613800000123@customer\r\nVariable: NAME=张三\r\n"
    "Variable: A=1\r\n\r\nAction: Ping\nActionID: lf-only\n\n"
).encode()

WANT = [
    [("Action", "Login"), ("Username", "dialer"), ("Secret", "s")],
    [
        ("Action", "Originate"),
        ("Channel", "Local/+8613800000123@customer"),
        ("Variable", "NAME=张三"),
        ("Variable", "A=1"),
    ],
    [("Action", "Ping"), ("ActionID", "lf-only")],
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_cuts_anywhere_give_the_same_actions(cuts: list[int]) -> None:
    p = ActionParser()
    got = []
    prev = 0
    for c in sorted(cuts) + [len(STREAM)]:
        got.extend(p.feed(STREAM[prev:c]) if c > prev else [])
        prev = c
    got.extend(p.feed(b""))
    assert got == WANT
    assert p.closed


def test_end_of_stream_flushes_an_unterminated_action() -> None:
    p = ActionParser()
    assert p.feed(b"Action: Logoff\r\n") == []
    assert p.feed(b"") == [[("Action", "Logoff")]]
