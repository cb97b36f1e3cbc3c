"""``dialer demo``: a full demo campaign on the simulated floor (the README's main job)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from dialer.clirun import OutputFile

#: contacts generated per sample campaign (a shift of an hour never runs out of them)
DEMO_CONTACTS = 3000
#: simulated seconds per real second of ``--keep-running`` without ``--speed``
KEEP_RUNNING_SPEED = 60.0
#: the slowest pace a shift is given time for before its wall-clock limit stops it
MIN_EXPECTED_SPEED = 4.0


def _print_report(res: Any, chart: Path | None) -> None:
    d = res.to_json()
    click.echo(
        f"demo finished: {d['simulated_s'] / 60:.1f} simulated minutes in {d['wall_s']:.1f} s "
        f"(the shift {d['shift_wall_s']:.1f} s on the {d['clock']})"
    )
    click.echo(f"attempts: {d['attempts']}  unfinished: {d['unfinished']}")
    team = d["team"]
    if team:
        click.echo(
            f"predictive team {team['queue']} ({team['agents']} agents, campaign "
            f"{team['campaign']}): occupancy {team['occupancy']:.1%}, abandon rate "
            f"{team['abandon_rate']:.2%} ({team['abandoned']} of {team['live_answers']} live "
            f"answers; cap {team['abandon_cap']:.0%})"
        )
    click.echo(
        f"all campaigns: live answers: {d['live_answers']}  abandoned: {d['abandoned']}  "
        f"abandon rate: {d['abandon_rate']:.2%}  occupancy of every agent: {d['occupancy']:.1%}"
    )
    click.echo("outcomes:")
    for k, v in d["outcomes"].items():
        click.echo(f"  {k:16} {v:5}")
    for name, c in d["campaigns"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in c["outcomes"].items())
        click.echo(f"campaign {name} ({c['mode']}): {c['attempts']} attempts; {outcomes}")
    if chart is not None and chart.exists():
        click.echo(f"chart of the shift (occupancy, abandon rate): {chart}")


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="At most this many simulated seconds per real second (default: as fast as the "
    "machine allows; with --keep-running: 60). Simulated time stands still while the "
    "floor works, so no speed makes a caller wait longer.",
)
@click.option(
    "--minutes", default=60.0, show_default=True, help="Length of the shift (simulated minutes)."
)
@click.option(
    "--contacts",
    "contacts",
    default=DEMO_CONTACTS,
    show_default=True,
    help="Contacts per sample campaign (the shift ends early when they are all done).",
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Simulated floor (default config/demo/floor.yaml).",
)
@click.option(
    "--chart",
    type=OutputFile(),
    default=None,
    help="PNG of occupancy and abandon rate over the shift (default dialer-demo.png here; "
    "with --json: none unless given).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Dial on past the shift with the console up, until SIGTERM or Ctrl-C.",
)
@click.option("--http-host", default="127.0.0.1", show_default=True)
@click.option("--http-port", type=int, default=None, help="Serve the console (0 = a free port).")
def demo(
    as_json: bool,
    speed: float | None,
    minutes: float,
    contacts: int,
    seed: int,
    scenario: Path | None,
    chart: Path | None,
    keep_running: bool,
    http_host: str,
    http_port: int | None,
) -> None:
    """A shift of the sample campaigns on the simulated PBX, the IVR and the dialer: a live
    progress line, then the figures and a chart.

    Everything runs in this process on free ports, over SQLite in a temporary folder (removed
    at the end, also on SIGTERM), on a simulated clock that starts inside the campaigns'
    calling window on a working day and moves to the next thing due as soon as the floor has
    nothing left to do at this instant.
    """
    from dialer.app.demo import ShiftPlan, run_demo

    def ready(info: dict[str, Any]) -> None:
        console = info.get("console")
        if console is not None and not as_json:
            click.echo(f"console: http://{http_host}:{console[1]}/", err=True)
            if generated_token:
                # a throw-away token made for this demo only, so a newcomer can sign in
                click.echo(f"console token for this demo: {generated_token}", err=True)
            else:
                click.echo("console token: your DIALER_API_TOKEN", err=True)

    if keep_running and http_port is None:
        http_port = 8080
    if keep_running and speed is None:
        speed = KEEP_RUNNING_SPEED  # a floor a person can watch on the console
    if chart is None and not as_json:
        chart = Path("dialer-demo.png")
    generated_token = None
    if http_port is not None and not os.environ.get("DIALER_API_TOKEN"):
        generated_token = os.environ["DIALER_API_TOKEN"] = secrets.token_urlsafe(18)
    plan = ShiftPlan(
        minutes=minutes,
        keep_running=keep_running,
        chart=chart,
        progress=None if as_json else sys.stderr,
        timeout_s=minutes * 60.0 / (speed or MIN_EXPECTED_SPEED) + 90.0,
    )
    res = asyncio.run(
        run_demo(
            max_speed=speed,
            contacts_per_campaign=contacts,
            seed=seed,
            scenario=scenario,
            plan=plan,
            http_port=http_port,
            http_host=http_host,
            on_ready=ready,
        )
    )
    if as_json:
        d = res.to_json()
        keys = (
            "attempts",
            "outcomes",
            "unfinished",
            "abandon_rate",
            "occupancy",
            "team",
            "clock",
            "simulated_s",
            "wall_s",
        )
        click.echo(
            json.dumps({k: d[k] for k in keys} | {"campaigns": d["campaigns"]}, ensure_ascii=False)
        )
    else:
        _print_report(res, chart)


COMMANDS = [demo]
