"""Golden outputs of seeded rehearsals: ``dialer simulate`` of every pacing scenario in
``config/scenarios/``, every policy, fixed seed, JSON.

``python tests/pacing/golden_rehearsals.py`` rewrites the files in ``tests/pacing/golden/``;
``test_golden_rehearsals.py`` compares a fresh run with them byte for byte. Regenerate only for
a change that is meant to move the figures, in its own commit that says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
#: The rehearsal every golden file records (short enough for the suite, long enough to pace).
ARGS = ("--reps", "2", "--seed", "11", "--duration", "1800", "--json", "--jobs", "1")
#: Pacing scenarios (``sim-floor.yaml`` in the same folder is a simulated-PBX floor, not one).
SCENARIOS = (
    "anchor20",
    "answer-drift",
    "answer-high",
    "answer-low",
    "churn",
    "pbx-floor20",
    "short-calls",
    "team100",
    "team5",
)


def simulate_json(scenario: str) -> str:
    from dialer.app.cli import cli

    result = CliRunner().invoke(cli, ["simulate", scenario, *ARGS], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"dialer simulate {scenario} exited {result.exit_code}: {result.output}")
    return result.output


def golden_path(scenario: str) -> Path:
    return GOLDEN_DIR / f"{scenario}.json"


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name in names:
        golden_path(name).write_text(simulate_json(name), encoding="utf-8")
        print(f"wrote {golden_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
