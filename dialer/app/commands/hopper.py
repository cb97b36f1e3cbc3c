"""``dialer hopper explain``: why are (or aren't) contacts being dialled?"""

from __future__ import annotations

import datetime as dt
import json

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.lists.campaigns import get_campaign
from dialer.lists.compliance import ReasonCounts, zone
from dialer.lists.hopper import breaker_hold, explain, main_zone


@click.group("hopper")
def hopper_group() -> None:
    """Inspect which contacts may be dialled."""


def parse_instant(text: str | None, tz: str = "UTC") -> dt.datetime:
    """ISO-8601; without an offset the instant is read in zone ``tz``; None means now."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 instant: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value


def zones_json(counts: ReasonCounts) -> dict[str, dict[str, int]]:
    """Per time zone: eligible contacts and those held back by each first rule."""
    out = {}
    for tz in sorted(counts.by_zone):
        per = counts.by_zone[tz]
        doc = {"eligible": per.get(None, 0)}
        doc |= {r.value: n for r, n in per.items() if r is not None and n}
        out[tz] = doc
    return out


@hopper_group.command("explain")
@click.argument("campaign")
@click.option(
    "--at",
    "at_text",
    default=None,
    metavar="ISO-8601",
    help="Instant (default now); without an offset, in the campaign's zone (most contacts').",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def explain_cmd(app: AppContext, campaign: str, at_text: str | None, as_json: bool) -> None:
    """How many of CAMPAIGN's contacts may be dialled at an instant, and why not the rest.

    Each contact is counted once, under the first rule it breaks.
    """
    parse_instant(at_text)  # a bad --at is refused before the store is opened
    with app.store.session() as s:
        row = get_campaign(s, campaign)
        tz = main_zone(s, row)
        at = parse_instant(at_text, tz)
        counts = explain(s, row, at, daily_cap=app.settings.max_calls_per_number_per_day)
        steps = _steps_explained(app, s, row, at)
        hold = breaker_hold(s, row.id)
    if as_json:
        doc = {
            "at": at.isoformat(),
            "zone": tz,
            **counts.to_json(),
            "by_zone": zones_json(counts),
            **({"steps": steps} if steps else {}),
        }
        if hold:  # dialling held although contacts are eligible
            doc["held"] = {"by": "abandon_breaker", "since": hold[0].isoformat(), "reason": hold[1]}
        click.echo(json.dumps(doc))
        return
    if hold:
        since = hold[0].replace(tzinfo=dt.UTC).isoformat(timespec="seconds")
        click.echo(f"{campaign}: DIALLING HELD by the abandon breaker since {since}: {hold[1]}")
    local = at.astimezone(zone(tz)).isoformat(timespec="minutes")
    click.echo(
        f"{campaign} at {at.astimezone(dt.UTC).isoformat()} ({local} {tz}): {counts.total} contacts"
    )
    click.echo(f"  {'eligible':20} {counts.eligible:>9}")
    for reason, n in counts.reasons.items():
        if n:
            click.echo(f"  {reason.value:20} {n:>9}")
    if counts.by_zone:
        click.echo("by time zone (local time at that instant):")
        for tz in sorted(counts.by_zone, key=lambda z: -sum(counts.by_zone[z].values())):
            per = counts.by_zone[tz]
            local = at.astimezone(zone(tz)).strftime("%a %H:%M")
            held = sorted(((n, r) for r, n in per.items() if r is not None and n), reverse=True)
            why = ", ".join(f"{r.value} {n}" for n, r in held[:3])
            click.echo(
                f"  {tz:24} {local:9} {sum(per.values()):>9} contacts, "
                f"{per.get(None, 0):>7} eligible{'; ' + why if why else ''}"
            )
    if steps:
        click.echo("steps (SMS, calls, e-mail), by what each contact's plan says:")
        for text, n in sorted(steps.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {text:40} {n:>9}")


def _steps_explained(app: AppContext, s: object, row: object, at: dt.datetime) -> dict[str, int]:
    """A multi-step campaign's plan per contact ("waiting for step 2 at 10:00": 40)."""
    from dialer.app.commands.messages import load_library
    from dialer.lists.campaigns import spec_of
    from dialer.messaging.sequencer import Sequencer

    if not spec_of(row).steps:
        return {}
    seq = Sequencer(
        app.store,
        load_library(app),
        app.settings.bank,
        calls_per_day=app.settings.max_calls_per_number_per_day,
    )
    return dict(seq.explain(s, row, at))  # type: ignore[arg-type]


COMMANDS = [hopper_group]
