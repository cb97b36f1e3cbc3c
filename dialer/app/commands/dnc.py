"""``dialer dnc add|remove|import|list``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.lists.dnc import (
    DncChannel,
    DncScope,
    add_entry,
    import_entries,
    list_entries,
    normalize,
    remove_entry,
)
from dialer.privacy import mask_phone, scrub

_SCOPE = click.Choice([s.value for s in DncScope])
_CHANNEL = click.Choice([c.value for c in DncChannel])


def shown(number: str, *, prefix: bool) -> str:
    """A listed value as printed: a prefix is a range, not a person; a number is masked."""
    return number if prefix else mask_phone(number)


@click.group("dnc")
def dnc_group() -> None:
    """Do-not-call lists: exact numbers and prefixes, for all campaigns or marketing only."""


@dnc_group.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--prefix", is_flag=True, help="The values are number prefixes (+86170).")
@click.option("--scope", type=_SCOPE, default=DncScope.ALL.value, show_default=True)
@click.option(
    "--channel",
    type=_CHANNEL,
    default=DncChannel.ALL.value,
    show_default=True,
    help="The channel barred: calls (voice), sms, email, or all of them.",
)
@click.option("--reason", default=None, help="Why (kept with the entry).")
@pass_app
def add_cmd(
    app: AppContext,
    numbers: tuple[str, ...],
    prefix: bool,
    scope: str,
    channel: str,
    reason: str | None,
) -> None:
    """Add NUMBERS to the do-not-call list."""
    region = app.settings.default_region
    normalized = [normalize(n, prefix=prefix, default_region=region) for n in numbers]
    with app.store.session() as s:
        for n in normalized:
            _, created = add_entry(
                s,
                n,
                prefix=prefix,
                scope=DncScope(scope),
                reason=reason,
                channel=DncChannel(channel),
            )
            kind = "prefix" if prefix else "number"
            click.echo(
                f"{'added' if created else 'already listed'}: {kind} "
                f"{shown(n, prefix=prefix)} ({scope}, {channel})"
            )


@dnc_group.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--prefix", is_flag=True, help="The values are number prefixes.")
@click.option("--scope", type=_SCOPE, default=None, help="Only this scope (default: every).")
@pass_app
def remove_cmd(app: AppContext, numbers: tuple[str, ...], prefix: bool, scope: str | None) -> None:
    """Remove NUMBERS from the do-not-call list."""
    region = app.settings.default_region
    normalized = [normalize(n, prefix=prefix, default_region=region) for n in numbers]
    with app.store.session() as s:
        for n in normalized:
            gone = remove_entry(s, n, prefix=prefix, scope=DncScope(scope) if scope else None)
            click.echo(f"{'removed' if gone else 'not listed'}: {shown(n, prefix=prefix)}")


@dnc_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scope", type=_SCOPE, default=DncScope.ALL.value, show_default=True)
@click.option("--encoding", default=None, help="The file's encoding (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_cmd(
    app: AppContext, file: Path, scope: str, encoding: str | None, as_json: bool
) -> None:
    """Import numbers from FILE (first column; a value ending in * is a prefix)."""
    with app.store.session() as s:
        report = import_entries(
            s,
            file,
            default_region=app.settings.default_region,
            scope=DncScope(scope),
            encoding=encoding,
        )
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    click.echo(
        f"added {report.added}, already listed {report.already}, rejected {len(report.rejected)}"
    )
    for row, _ in report.rejected[:20]:
        click.echo(f"  row {row}: invalid_number")


@dnc_group.command("list")
@click.option("--scope", type=_SCOPE, default=None, help="Only this scope.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_cmd(app: AppContext, scope: str | None, as_json: bool) -> None:
    """List do-not-call entries."""
    with app.store.session() as s:
        docs = [
            {
                "number": shown(e.number, prefix=e.is_prefix),
                "prefix": e.is_prefix,
                "scope": e.scope,
                "channel": e.channel,
                "reason": scrub(e.reason) if e.reason else e.reason,
                "source": scrub(e.source) if e.source else e.source,
                "created_at": e.created_at.isoformat(),
            }
            for e in list_entries(s, DncScope(scope) if scope else None)
        ]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False))
        return
    if not docs:
        click.echo("the do-not-call list is empty")
        return
    click.echo(f"{'NUMBER':18} {'KIND':7} {'SCOPE':10} {'CHANNEL':8} {'SOURCE':10} REASON")
    for d in docs:
        kind = "prefix" if d["prefix"] else "number"
        click.echo(
            f"{d['number']:18} {kind:7} {d['scope']:10} {d['channel']:8} "
            f"{d['source'] or '':10} {d['reason'] or ''}"
        )


COMMANDS = [dnc_group]
