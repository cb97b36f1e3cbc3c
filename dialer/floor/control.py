"""What supervisors do: pause, resume, pacing changes, preview dialling and reloads.

Each change is validated first (an invalid one raises ``ConfigError`` and changes nothing),
written to the store with an audit row named by ``dialer.audit.AuditAction``, then applied to
the running campaign loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.floor.loop import CampaignLoop
from dialer.floor.references import check_references, load_library
from dialer.lists.campaigns import (
    CampaignSpec,
    Mode,
    Pacing,
    State,
    apply_campaign,
    check_ceilings,
    load_campaign_file,
    parse_campaign,
    spec_of,
)
from dialer.privacy import mask_phone
from dialer.settings import load_settings
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact
from ivr.messages import dialplan_messages

_STATE_ACTION = {
    State.PAUSED: AuditAction.CAMPAIGN_PAUSE,
    State.RUNNING: AuditAction.CAMPAIGN_RESUME,
}


class FloorControl:
    """The supervisor's commands on a running campaign loop."""

    def __init__(self, loop: CampaignLoop) -> None:
        self.loop = loop

    async def _set_state(self, name: str, state: State, actor: str) -> None:
        run = self.loop.run_named(name)

        def write() -> CampaignSpec:
            with self.loop.store.session() as s:
                row = s.get(Campaign, run.id)
                assert row is not None
                row.state = state.value
                s.add(
                    AuditEntry(
                        actor=actor,
                        action=_STATE_ACTION[state],
                        campaign_id=row.id,
                        detail={},
                    )
                )
                return spec_of(row)

        self.loop.respec(run, await asyncio.to_thread(write))
        self.loop.wake()

    async def pause(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, State.PAUSED, actor)

    async def resume(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, State.RUNNING, actor)

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        """Change pacing keys of a running campaign: never above the settings' compliance
        ceilings (``ConfigError`` names the ceiling); held until the file's own value for a
        key changes."""
        run = self.loop.run_named(campaign)
        if not isinstance(changes, Mapping) or not changes:
            raise ConfigError("pacing changes must be a non-empty mapping of pacing keys")
        unknown = set(changes) - set(Pacing.model_fields)
        if unknown:
            raise ConfigError(f"unknown pacing keys: {', '.join(sorted(unknown))}", key="pacing")

        def write() -> CampaignSpec:
            with self.loop.store.session() as s:
                row = s.get(Campaign, run.id)
                assert row is not None
                before = row.spec.get("pacing", {})
                doc = {**row.spec, "state": row.state, "pacing": {**before, **changes}}
                new = parse_campaign(doc, f"campaign {campaign}")  # ConfigError: no change
                check_ceilings(new, self.loop.settings.compliance, f"campaign {campaign}")
                row.spec = {**new.to_document(), "state": row.state}
                after = new.to_document()["pacing"]
                s.add(
                    AuditEntry(
                        actor=actor,
                        action=AuditAction.CAMPAIGN_PACING,
                        campaign_id=row.id,
                        detail={"before": before, "after": after, "changes": dict(changes)},
                    )
                )
                return new

        new = await asyncio.to_thread(write)
        self.loop.respec(run, new.model_copy(update={"state": run.spec.state}))
        self.loop.wake()
        return new.to_document()["pacing"]

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        run = self.loop.run_named(campaign)
        if run.spec.mode is not Mode.PREVIEW:
            raise ConfigError(f"campaign {campaign} is not in preview mode")
        # prepared when sent: the agent's view writes the row first
        ids = await self.loop.lease(run, self.loop.clock.time(), 1, prepare=False)
        if not ids:
            return None
        view = await asyncio.to_thread(self._preview_view, ids[0], agent, actor)
        self.loop.spawn(run, ids)  # after the view's write: the core then owns the row
        return view

    def _preview_view(self, attempt_id: int, agent: str, actor: str) -> dict[str, Any]:
        with self.loop.store.session() as s:
            attempt = s.get(Attempt, attempt_id)
            assert attempt is not None
            attempt.agent = agent
            attempt.detail = {**(attempt.detail or {}), "preview_by": actor}
            contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
            return {
                "attempt_id": attempt_id,
                "phone": mask_phone(attempt.phone),
                "name": contact.name if contact else None,
                "language": contact.language if contact else None,
            }

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        """Re-apply campaign files (one, or every campaign's recorded source), or swap the
        settings when ``path`` is the settings file. Invalid input changes nothing."""
        if path is not None and self.loop.settings.source is not None:
            if Path(path).resolve() == Path(self.loop.settings.source).resolve():
                new = await asyncio.to_thread(load_settings, Path(path))
                raised = new.compliance.raised_over(self.loop.settings.compliance)
                if raised:
                    raise ConfigError(
                        f"{path}: compliance ceilings rise only with a restart "
                        f"({'; '.join(raised)})"
                    )
                changed = ["settings"] if new != self.loop.settings else []
                self.loop.settings = new
                self.loop.core.rows.messages = dialplan_messages(new.bank)
                self.loop.core.rows.ceilings = new.compliance
                if changed:
                    await self.loop.load_campaigns()  # lowered ceilings hold at once
                return changed

        def work() -> tuple[list[str], dict[str, str]]:
            """Returns (campaigns changed, campaign name -> refusal). All files valid, or none
            is applied."""
            with self.loop.store.session() as s:
                rows = list(s.scalars(select(Campaign)))
            by_source = {str(Path(r.source).resolve()): r.name for r in rows if r.source}
            sources = (
                [Path(path)]
                if path
                else [Path(r.source) for r in rows if r.source and Path(r.source).exists()]
            )
            specs, refused = [], {}
            for p in sources:
                try:
                    specs.append((p, load_campaign_file(p)))
                except ConfigError as exc:
                    refused[by_source.get(str(p.resolve()), str(p))] = str(exc)
            if refused:
                return [], refused
            ceilings = self.loop.settings.compliance
            flows = load_library(self.loop.settings)
            queues = self.loop.switch_queues()
            for p, spec in specs:
                try:
                    check_ceilings(spec, ceilings, str(p))
                    check_references(spec, str(p), library=flows, queues=queues)
                except ConfigError as exc:
                    refused[spec.name] = str(exc)
            if refused:
                return [], refused
            changed = []
            with self.loop.store.session() as s:
                for p, spec in specs:
                    row = s.scalars(
                        select(Campaign).where(Campaign.name == spec.name)
                    ).one_or_none()
                    before = None if row is None else (row.spec, row.state)
                    row, _ = apply_campaign(
                        s, spec, source=str(p.resolve()), actor=actor, ceilings=ceilings
                    )
                    if before != (row.spec, row.state):
                        changed.append(spec.name)
            return changed, {}

        changed, refused = await asyncio.to_thread(work)
        if refused:
            for run in self.loop.runs.values():
                if run.spec.name in refused:
                    run.reload_error = f"reload refused: {refused[run.spec.name]}"
            raise ConfigError("; ".join(refused.values()))
        for run in self.loop.runs.values():
            run.reload_error = None
        await self.loop.load_campaigns()
        self.loop.wake()
        return changed
