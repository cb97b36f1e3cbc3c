"""``dialer campaign apply|list|show``."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from sqlalchemy import func, select

from dialer.app.appctx import AppContext, pass_app
from dialer.lists.campaigns import apply_campaign, get_campaign, load_campaign_file
from dialer.store.models import Attempt, Campaign, Contact


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database in a container
        return "cli"


@click.group("campaign")
def campaign() -> None:
    """Define and inspect campaigns."""


@campaign.command("apply")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_app
def apply(app: AppContext, files: tuple[Path, ...]) -> None:
    """Create or update campaigns from YAML FILES (all are validated before any is written).

    Every name a file refers to is checked first (its IVR flow, the prompts it plays), and its
    compliance limits against the settings' ceilings. Re-applying an unchanged file changes
    nothing; a changed one moves only the keys the file itself changed (a pause or a pacing
    change made on the console holds). A file without ``state: running`` is applied paused."""
    from dialer.app.commands.messages import load_library
    from dialer.floor.references import check_references
    from dialer.floor.references import load_library as load_flows
    from dialer.lists.campaigns import check_ceilings
    from dialer.messaging.sequencer import check_steps, steps_of

    specs = [(f, load_campaign_file(f)) for f in files]
    flows = load_flows(app.settings)
    for f, spec in specs:  # multi-step campaigns: steps and templates checked before writing
        check_ceilings(spec, app.settings.compliance, str(f))
        check_references(spec, str(f), library=flows)
        if spec.steps:
            check_steps(steps_of(spec), load_library(app), str(f))
    with app.store.session() as s:
        for f, spec in specs:
            before = s.scalars(select(Campaign.applied).where(Campaign.name == spec.name)).first()
            row, created = apply_campaign(s, spec, source=str(f.resolve()), actor=actor())
            if created:
                click.echo(f"created campaign {spec.name} ({row.state})")
            elif before == row.applied:
                click.echo(f"unchanged campaign {spec.name} (the file is as last applied)")
            else:
                click.echo(f"updated campaign {spec.name} ({row.state})")


def _summary(s, row: Campaign) -> dict:
    contacts = s.scalar(
        select(func.count()).select_from(Contact).where(Contact.campaign_id == row.id)
    )
    attempts = s.scalar(
        select(func.count()).select_from(Attempt).where(Attempt.campaign_id == row.id)
    )
    return {
        "name": row.name,
        "state": row.state,
        "purpose": row.purpose,
        "mode": row.mode,
        "contacts": contacts,
        "attempts": attempts,
    }


@campaign.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List campaigns."""
    with app.store.session() as s:
        rows = [_summary(s, r) for r in s.scalars(select(Campaign).order_by(Campaign.name))]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("no campaigns")
        return
    click.echo(
        f"{'NAME':30} {'STATE':8} {'PURPOSE':12} {'MODE':12} {'CONTACTS':>9} {'ATTEMPTS':>9}"
    )
    for r in rows:
        click.echo(
            f"{r['name']:30} {r['state']:8} {r['purpose']:12} {r['mode']:12} "
            f"{r['contacts']:>9} {r['attempts']:>9}"
        )


@campaign.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show one campaign's definition and counts."""
    with app.store.session() as s:
        row = get_campaign(s, name)
        doc = {**_summary(s, row), "spec": {**row.spec, "state": row.state}, "source": row.source}
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    import yaml

    click.echo(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


COMMANDS = [campaign]
