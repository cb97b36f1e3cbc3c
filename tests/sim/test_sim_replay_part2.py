"""Replay tests, part 2: queues, agents, DTMF loss, resync. Comparator: ``simpbx_replay.py``."""

from __future__ import annotations

import pytest
from simpbx_replay import replay

SCENARIOS: list[tuple[str, dict[str, object]]] = [
    ("ami-queue", {}),
    ("ami-queue-2s-rule", {}),
    ("ami-queue-agent-noanswer", {}),
    ("ami-queue-wrapup", {}),
    ("ami-amd", {}),
    # recorded before "agi" was in the manager user's read classes (no AGIExec* events)
    ("ami-dtmflost", {"read_without": ("agi",)}),
    # two connections: the second (Events: off) is recorded in its own file
    ("ami-resync-status", {"also": ("ami-resync-status-conn2",)}),
]


@pytest.mark.parametrize(("name", "opts"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_replay(name: str, opts: dict[str, object]) -> None:
    result = await replay(name, **opts)  # type: ignore[arg-type]
    problems = result.ami.problems + result.agi_problems
    assert not problems, "\n\n".join(problems)
