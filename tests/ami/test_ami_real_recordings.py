"""Recordings made on the real Asterisk 22 by the product itself (``tests/real``, with
``DIALER_RECORD_AMI=<folder>``: the recording proxy ``tests/real/tap.py``), replayed through
the framing and the tracker. The replay must reach the outcomes the live run reached, so the
tracker's decisions can be checked on real traffic without starting a switch."""

from __future__ import annotations

import pytest
from ami_replay import fixture, replay

from dialer.outcomes import Outcome
from dialer.telephony.ami.transcript import action_fields, read_transcript
from dialer.telephony.tracker import CallPlan


def dialled(name: str) -> list[str]:
    """The called number of each Originate, in the order the replay numbers the attempts."""
    out = []
    for conn in read_transcript(fixture(name)):
        for _, lines in conn.sent:
            fields = action_fields(lines)
            if fields.get("Action") == "Originate":
                out.append(fields["Channel"].split("/")[1].split("@")[0])
    return out


@pytest.mark.parametrize(
    ("name", "plan", "expected"),
    [
        (
            # tests/real/test_real_outcomes.py::test_outcomes_of_queue_calls
            "real-queue-outcomes.txt",
            CallPlan(queue="sales", ring_timeout_s=15),
            {
                "111": Outcome.AGENT_HANDLED,
                "486": Outcome.BUSY,
                "503": Outcome.CONGESTION,
                "480": Outcome.NO_ANSWER,
                "404": Outcome.INVALID_NUMBER,
            },
        ),
        (
            # ...::test_abandoned_at_hold_limit_hears_safe_harbour (a member who never answers)
            "real-hold-limit.txt",
            CallPlan(queue="deaf", ring_timeout_s=15),
            {"111": Outcome.ABANDONED},
        ),
    ],
)
def test_recorded_real_switch_traffic_replays_to_the_live_outcomes(
    name: str, plan: CallPlan, expected: dict[str, Outcome]
) -> None:
    numbers = dialled(name)
    r = replay(name, [plan] * len(numbers))
    got = {numbers[f.attempt_id - 1][-3:]: f.outcome for f in r.finished}
    assert got == expected
    assert sorted(f.attempt_id for f in r.finished) == list(range(1, len(numbers) + 1))
