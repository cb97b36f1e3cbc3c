"""``dialer report CAMPAIGN``: the end-of-run report a compliance officer files (built by
``dialer.lists.report``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.clirun import OutputFile
from dialer.lists.report import DEFAULT_TZ, build_report, parse_bound, to_csv, to_text, write_chart


@click.command("report")
@click.argument("campaign")
@click.option("--from", "since", metavar="WHEN", help="Start (date or date-time, local to --tz).")
@click.option("--to", "until", metavar="WHEN", help="End, exclusive.")
@click.option("--tz", default=DEFAULT_TZ, show_default=True, help="Zone for --from/--to and hours.")
@click.option("--json", "fmt", flag_value="json", help="Print JSON.")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV (section,key,field,value).")
@click.option("--chart", type=OutputFile(), help="Write a PNG chart.")
@click.option(
    "--agent-hours",
    type=click.FloatRange(min=0, min_open=True),
    help="Staffed agent-hours, when known.",
)
@pass_app
def report(
    app: AppContext,
    campaign: str,
    since: str | None,
    until: str | None,
    tz: str,
    fmt: str | None,
    chart: Path | None,
    agent_hours: float | None,
) -> None:
    """Outcomes, connects per agent-hour, occupancy, abandon rate with per-call evidence, IVR
    results by step, hourly rates; optionally a PNG chart."""
    start, end = parse_bound(since, tz), parse_bound(until, tz)
    with app.store.session() as s:
        data = build_report(s, campaign, since=start, until=end, tz=tz, agent_hours=agent_hours)
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(to_csv(data), nl=False)
    else:
        click.echo(to_text(data))
    if chart is not None:
        write_chart(data, chart)
        click.echo(f"chart written to {chart}", err=True)


COMMANDS = [report]
