"""Replay tests, part 1: the switch. The comparator is documented in ``simpbx_replay.py``."""

from __future__ import annotations

import pytest
from simpbx_replay import replay

# The first recordings were made before "agi" was in the manager user's read classes: they
# show no AGIExecStart/AGIExecEnd, so those replays log in without it.
NO_AGI_CLASS = {"ami-originate", "ami-extras", "ami-dtmflost", "ami-failures", "ami-noagi"}

SCENARIOS = [
    ("ami-originate", True),
    ("ami-failures", True),
    ("ami-extras", True),
    ("ami-noagi", False),  # nothing listens on the FastAGI port
    ("ami-hangup-action", True),
    ("ami-login-failure", True),
    ("ami-fastagi-commands", True),
]


@pytest.mark.parametrize(("name", "agi"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_replay(name: str, agi: bool) -> None:
    result = await replay(name, agi=agi, read_without=("agi",) if name in NO_AGI_CLASS else ())
    problems = result.ami.problems + result.agi_problems
    assert not problems, "\n\n".join(problems)
