"""``dialer contacts import|list``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from dialer.app.appctx import AppContext, pass_app
from dialer.lists.campaigns import get_campaign, spec_of
from dialer.lists.contacts import ImportReport, Progress, import_contacts, masked_fields
from dialer.lists.numbers import Number, masked, numbers_of
from dialer.privacy import mask_phone, scrub, scrub_json
from dialer.store.models import Contact


@click.group("contacts")
def contacts_group() -> None:
    """Import and inspect a campaign's contacts."""


def _progress_bar(path: Path) -> tuple[Progress | None, Any]:
    """A tqdm bar over the file's bytes, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="import", file=sys.stderr)

    def update(rows: int, pos: int) -> None:
        bar.update(pos - bar.n)
        bar.set_postfix(rows=rows, refresh=False)

    return update, bar


@contacts_group.command("import")
@click.argument("campaign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--encoding",
    default=None,
    help="The file's encoding (default: UTF-8 or GB18030, detected; any other is refused).",
)
@pass_app
def import_cmd(
    app: AppContext, campaign: str, file: Path, dry_run: bool, as_json: bool, encoding: str | None
) -> None:
    """Import contacts from a CSV FILE into CAMPAIGN (good rows in one transaction)."""
    progress, bar = _progress_bar(file)
    region = app.settings.default_region
    try:
        with app.store.session() as s:
            row = get_campaign(s, campaign)
            report = import_contacts(
                s,
                row,
                file,
                default_region=region,
                encoding=encoding,
                dry_run=dry_run,
                progress=progress,
            )
    finally:
        if bar is not None:
            bar.close()
    if report.ignored_columns:
        click.echo(
            f"warning: ignoring unknown columns: {', '.join(report.ignored_columns)}", err=True
        )
    try:
        _print_report(report, as_json)
    finally:
        report.rejections.close()


def _print_report(report: ImportReport, as_json: bool) -> None:
    rejections = report.rejections
    if as_json:  # streamed: a file of millions of bad rows is not held as one list
        parts = [f'{{"imported": {report.imported}, "rejected": [']
        for i, r in enumerate(rejections):
            parts.append(("" if i == 0 else ", ") + json.dumps({"row": r.row, "reason": r.reason}))
            if len(parts) >= 4096:
                click.echo("".join(parts), nl=False)
                parts.clear()
        click.echo("".join(parts) + "]}")
        return
    verb = "would import" if report.dry_run else "imported"
    click.echo(
        f"{verb} {report.imported} contacts, rejected {len(rejections)} rows "
        f"(encoding {report.encoding})"
    )
    for reason, n in sorted(rejections.counts.items()):
        click.echo(f"  {reason:32} {n}")
    for r in rejections.first(20):
        click.echo(f"  row {r.row}: {r.reason}")
    if len(rejections) > 20:
        click.echo(f"  ... {len(rejections) - 20} more (use --json for all)")


def contact_doc(c: Contact, spec: Any, numbers: Sequence[Number] = ()) -> dict[str, Any]:
    """A contact for display: phone masked, sensitive fields masked, card and ID numbers masked
    in every free-text value (name, external id, text fields); its several numbers (kind,
    masked number, state) when it has more than one."""
    doc = {
        "id": c.id,
        "phone": mask_phone(c.phone),
        "region": c.region,
        "name": scrub(c.name) if c.name else c.name,
        "language": c.language,
        "timezone": c.timezone,
        "priority": c.priority,
        "external_id": scrub(c.external_id) if c.external_id else c.external_id,
        "valid_until": c.valid_until.isoformat() if c.valid_until else None,
        "fields": scrub_json(masked_fields(spec, c.fields or {})),
        "status": c.status,
        "attempts": c.attempts,
        "next_attempt_at": c.next_attempt_at.isoformat() if c.next_attempt_at else None,
        "last_outcome": c.last_outcome,
    }
    if numbers:
        doc["numbers"] = masked(numbers)
    return doc


@contacts_group.command("list")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@pass_app
def list_cmd(app: AppContext, campaign: str, as_json: bool, limit: int | None) -> None:
    """List CAMPAIGN's contacts (phones and sensitive fields masked)."""
    with app.store.session() as s:
        row = get_campaign(s, campaign)
        spec = spec_of(row)
        q = select(Contact).where(Contact.campaign_id == row.id).order_by(Contact.id)
        if limit:
            q = q.limit(limit)
        rows = list(s.scalars(q))
        several = numbers_of(s, [c.id for c in rows])
        docs = [contact_doc(c, spec, several.get(c.id, ())) for c in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False))
        return
    if not docs:
        click.echo("no contacts")
        return
    click.echo(
        f"{'ID':>7} {'PHONE':16} {'NAME':12} {'LANG':4} {'TIMEZONE':20} {'PRIO':>4} "
        f"{'STATUS':7} {'TRIES':>5} FIELDS"
    )
    for d in docs:
        fields = " ".join(f"{k}={v}" for k, v in d["fields"].items())
        if d.get("numbers"):
            fields += " numbers=" + ",".join(
                f"{n['kind']}:{n['number']}" + ("" if n["state"] == "active" else f"({n['state']})")
                for n in d["numbers"]
            )
        click.echo(
            f"{d['id']:>7} {d['phone']:16} {(d['name'] or '')[:12]:12} {d['language']:4} "
            f"{d['timezone']:20} {d['priority']:>4} {d['status']:7} {d['attempts']:>5} {fields}"
        )


COMMANDS = [contacts_group]
