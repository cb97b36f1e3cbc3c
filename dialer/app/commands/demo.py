"""``dialer demo``: a full demo campaign on the simulated floor (the README's main job)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path
from typing import Any

import click


def _print_report(res: Any) -> None:
    d = res.to_json()
    click.echo(
        f"demo finished: {d['simulated_s'] / 60:.1f} simulated minutes in {d['wall_s']:.1f} s"
    )
    click.echo(f"attempts: {d['attempts']}  unfinished: {d['unfinished']}")
    click.echo(
        f"live answers: {d['live_answers']}  abandoned: {d['abandoned']}  "
        f"abandon rate: {d['abandon_rate']:.2%}  agent occupancy: {d['occupancy']:.1%}"
    )
    click.echo("outcomes:")
    for k, v in d["outcomes"].items():
        click.echo(f"  {k:16} {v:5}")
    for name, c in d["campaigns"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in c["outcomes"].items())
        click.echo(f"campaign {name} ({c['mode']}): {c['attempts']} attempts; {outcomes}")


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--speed", default=40.0, show_default=True, help="Simulated seconds per real second.")
@click.option(
    "--contacts", "contacts", default=40, show_default=True, help="Contacts per sample campaign."
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Simulated floor (default config/demo/floor.yaml).",
)
@click.option(
    "--keep-running", is_flag=True, help="Keep the floor and the console up until interrupted."
)
@click.option("--http-host", default="127.0.0.1", show_default=True)
@click.option("--http-port", type=int, default=None, help="Serve the console (0 = a free port).")
def demo(
    as_json: bool,
    speed: float,
    contacts: int,
    seed: int,
    scenario: Path | None,
    keep_running: bool,
    http_host: str,
    http_port: int | None,
) -> None:
    """Run the sample campaigns on the simulated PBX, the IVR and the dialer, then report.

    Everything runs in this process on free ports, over SQLite in a temporary folder, on a
    clock that starts inside the campaigns' calling window on a working day.
    """
    from dialer.app.demo import run_demo

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
    generated_token = None
    if http_port is not None and not os.environ.get("DIALER_API_TOKEN"):
        generated_token = os.environ["DIALER_API_TOKEN"] = secrets.token_urlsafe(18)
    res = asyncio.run(
        run_demo(
            speed=speed,
            contacts_per_campaign=contacts,
            seed=seed,
            scenario=scenario,
            keep_running=keep_running,
            http_port=http_port,
            http_host=http_host,
            on_ready=ready,
        )
    )
    if as_json:
        d = res.to_json()
        click.echo(
            json.dumps(
                {
                    k: d[k]
                    for k in ("attempts", "outcomes", "unfinished", "abandon_rate", "occupancy")
                }
                | {"campaigns": d["campaigns"]},
                ensure_ascii=False,
            )
        )
    else:
        _print_report(res)


COMMANDS = [demo]
