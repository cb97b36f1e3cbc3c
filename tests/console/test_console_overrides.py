"""Supervisor state is kept apart from the file's definition: a reload (console "Reload files",
SIGHUP, ``campaign apply``) re-applies only what the file itself changed, so a console pause or
pacing change holds until the file's own value for that key changes (and the audit says so).
Compliance ceilings from the settings bound every campaign file and every console change."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.floor.service import Dialer
from dialer.lists.campaigns import (
    CallingWindow,
    CampaignSpec,
    Pacing,
    apply_campaign,
    get_campaign,
    load_campaign_file,
    parse_campaign,
    within_ceilings,
)
from dialer.settings import CallingHours, Ceilings, Settings
from dialer.store import Store
from dialer.store.models import AuditEntry

NAME = "card-activation-test"


def live(floor: Dialer) -> tuple[str, dict[str, Any]]:
    [c] = [c for c in floor.campaigns() if c.name == NAME]
    return c.state, dict(c.pacing)


def audits(store: Store, action: AuditAction) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == action.value))
        return [r.detail for r in rows]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


async def test_a_reload_never_undoes_a_pause_or_a_pacing_change(
    floor: Dialer, files: dict[str, Path], store: Store
) -> None:
    await floor.pause(NAME, actor="console:sup")
    await floor.set_pacing(NAME, {"abandon_cap": 0.02}, actor="console:sup")
    applied_before = len(audits(store, AuditAction.CAMPAIGN_APPLY))

    # "Reload files" / SIGHUP with no file changed: nothing is re-applied, nothing audited
    assert await floor.reload(None, actor="sighup") == []
    assert await floor.reload(str(files[NAME]), actor="console:sup") == []
    state, pacing = live(floor)
    assert state == "paused" and pacing["abandon_cap"] == 0.02
    assert len(audits(store, AuditAction.CAMPAIGN_APPLY)) == applied_before

    # the file changes another key: that key moves, the pause and the console's cap hold
    edit(files[NAME], "max_lines_per_agent: 3.0", "max_lines_per_agent: 2.0")
    assert await floor.reload(None, actor="sighup") == [NAME]
    state, pacing = live(floor)
    assert (state, pacing["abandon_cap"], pacing["max_lines_per_agent"]) == ("paused", 0.02, 2.0)
    detail = audits(store, AuditAction.CAMPAIGN_APPLY)[-1]
    assert detail["changed"] == {"pacing.max_lines_per_agent": [3.0, 2.0]}
    assert detail["kept"]["state"] == {"live": "paused", "file": "running"}
    assert detail["kept"]["pacing.abandon_cap"] == {"live": 0.02, "file": 0.03}
    assert detail["overrides_replaced"] == {}

    # the file's own abandon_cap changes: the file wins for that key, and the audit says so
    edit(files[NAME], "abandon_cap: 0.03", "abandon_cap: 0.025")
    assert await floor.reload(None, actor="sighup") == [NAME]
    state, pacing = live(floor)
    assert (state, pacing["abandon_cap"]) == ("paused", 0.025)
    detail = audits(store, AuditAction.CAMPAIGN_APPLY)[-1]
    assert detail["overrides_replaced"] == {
        "pacing.abandon_cap": {"live": 0.02, "file_before": 0.03, "file_after": 0.025}
    }
    assert detail["changed"] == {"pacing.abandon_cap": [0.02, 0.025]}

    # only a change of the file's own state resumes (or pauses) it
    edit(files[NAME], "state: running", "state: paused")
    await floor.reload(None, actor="sighup")
    edit(files[NAME], "state: paused", "state: running")
    await floor.reload(None, actor="sighup")
    assert live(floor)[0] == "running"


def test_campaign_apply_of_an_unchanged_file_keeps_the_supervisors_state(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nqueue: q\npacing: {abandon_cap: 0.03}\n", encoding="utf-8")
    spec = load_campaign_file(f)
    with store.session() as s:
        row, created = apply_campaign(s, spec, source=str(f), actor="cli")
        assert created and row.state == "paused"  # a new file without state: paused
        row.state = "running"  # a supervisor resumed it
        row.spec = {**row.spec, "pacing": {**row.spec["pacing"], "abandon_cap": 0.01}}
    with store.session() as s:
        row, created = apply_campaign(s, spec, source=str(f), actor="cli")
        assert not created and row.state == "running" and row.spec["pacing"]["abandon_cap"] == 0.01
    running = parse_campaign({"name": "d", "queue": "q", "state": "running"})
    with store.session() as s:
        assert apply_campaign(s, running, source=None, actor="cli")[0].state == "running"
        assert get_campaign(s, "c").applied == spec.to_document()


async def test_console_changes_stay_under_the_ceilings(floor: Dialer) -> None:
    with pytest.raises(ConfigError, match=r"abandon_cap 0.05 is above the ceiling 0.03"):
        await floor.set_pacing(NAME, {"abandon_cap": 0.05}, actor="console:sup")
    with pytest.raises(ConfigError, match=r"hold_limit_s 5 is above the ceiling 2"):
        await floor.set_pacing(NAME, {"hold_limit_s": 5}, actor="console:sup")
    assert live(floor)[1]["abandon_cap"] == 0.03
    assert (await floor.set_pacing(NAME, {"hold_limit_s": 1.5}, actor="s"))["hold_limit_s"] == 1.5


async def test_a_campaign_file_over_a_ceiling_is_refused_and_ceilings_only_fall(
    floor: Dialer, files: dict[str, Path], tmp_path: Path
) -> None:
    edit(files[NAME], "hold_limit_s: 2", "hold_limit_s: 4")
    with pytest.raises(ConfigError, match="hold_limit_s 4 is above the ceiling 2"):
        await floor.reload(None, actor="sighup")
    assert live(floor)[1]["hold_limit_s"] == 2.0
    edit(files[NAME], "hold_limit_s: 4", "hold_limit_s: 2")

    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("compliance: {abandon_cap: 0.03}\n", encoding="utf-8")
    floor.loop.settings = Settings(source=str(settings_file))
    settings_file.write_text("compliance: {abandon_cap: 0.05}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rise only with a restart \(abandon_cap 0.03 -> 0.05"):
        await floor.reload(str(settings_file), actor="sighup")
    settings_file.write_text(
        "compliance: {abandon_cap: 0.01, calling_hours: {start: '10:00', end: '18:00'}}\n",
        encoding="utf-8",
    )
    assert await floor.reload(str(settings_file), actor="sighup") == ["settings"]
    [run] = [r for r in floor.runs.values() if r.spec.name == NAME]
    assert run.spec.pacing.abandon_cap == 0.01  # a lowered ceiling holds at once
    assert (run.spec.calling_window.start, run.spec.calling_window.end) == (
        dt.time(10),
        dt.time(18),
    )


_times = st.integers(0, 24 * 60 - 1).map(lambda m: dt.time(m // 60, m % 60))


@settings(max_examples=200, deadline=None)
@given(
    cap=st.floats(0.001, 0.5),
    hold=st.floats(0.1, 60),
    window=st.tuples(_times, _times).filter(lambda w: w[0] < w[1]),
    ceil_cap=st.floats(0.001, 0.5),
    ceil_hold=st.floats(0.1, 60),
    hours=st.tuples(_times, _times).filter(lambda w: w[0] < w[1]),
)
def test_the_spec_the_floor_runs_never_exceeds_a_ceiling(
    cap: float,
    hold: float,
    window: tuple[dt.time, dt.time],
    ceil_cap: float,
    ceil_hold: float,
    hours: tuple[dt.time, dt.time],
) -> None:
    spec = CampaignSpec(
        name="x",
        queue="q",
        pacing=Pacing(abandon_cap=cap, hold_limit_s=hold),
        calling_window=CallingWindow(start=window[0], end=window[1]),
    )
    ceilings = Ceilings(
        abandon_cap=ceil_cap,
        hold_limit_s=ceil_hold,
        calling_hours=CallingHours(start=hours[0], end=hours[1]),
    )
    got = within_ceilings(spec, ceilings)
    assert got.pacing.abandon_cap <= ceil_cap and got.pacing.hold_limit_s <= ceil_hold
    w = got.calling_window
    assert not w.days or (hours[0] <= w.start < w.end <= hours[1])
    assert w.start >= window[0] or not w.days


async def test_a_reload_refuses_a_queue_the_connected_switch_does_not_know(
    floor: Dialer, files: dict[str, Path]
) -> None:
    edit(files[NAME], "queue: activation-agents", "queue: activaton-agents")
    floor.loop.queues_seen = {"activation-agents", "collections-agents"}  # its QueueStatus
    assert floor.loop.switch_queues() is None  # not connected: the queue is not checked
    floor.core.client.ready.set()
    with pytest.raises(ConfigError, match="did you mean 'activation-agents'"):
        await floor.reload(None, actor="sighup")
    [c] = [c for c in floor.campaigns() if c.name == NAME]
    assert c.last_error and "knows no queue named 'activaton-agents'" in c.last_error
    edit(files[NAME], "queue: activaton-agents", "queue: activation-agents")
    assert await floor.reload(None, actor="sighup") == []  # as applied: nothing to do


async def test_no_originate_carries_a_hold_limit_above_the_ceiling(
    floor: Dialer, store: Store
) -> None:
    """A row written before the ceiling was lowered (or by hand) holds 5 s: the switch is told
    the ceiling's 2 s all the same."""
    from dialer.store.models import Attempt, Campaign

    with store.session() as s:
        row = get_campaign(s, NAME)
        row.spec = {**row.spec, "pacing": {**row.spec["pacing"], "hold_limit_s": 5}}
        attempt = Attempt(campaign_id=row.id, phone="+8613900000123")
        s.add(attempt)
        s.flush()
        aid = attempt.id
    with store.session() as s:
        req = floor.core.rows.prepare_one(s, aid)
        assert req.variables()["DIALER_HOLD"] == "2"
        assert s.get(Campaign, row.id).spec["pacing"]["hold_limit_s"] == 5  # type: ignore[union-attr]
