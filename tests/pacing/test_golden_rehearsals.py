"""Seeded rehearsals give exactly the recorded figures (see golden_rehearsals.py)."""

from __future__ import annotations

import pytest

from tests.pacing.golden_rehearsals import SCENARIOS, golden_path, simulate_json


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_seeded_rehearsal_matches_golden(scenario: str) -> None:
    expected = golden_path(scenario).read_text(encoding="utf-8")
    assert simulate_json(scenario) == expected
