"""``dialer sim-pbx``: run the simulated Asterisk PBX (AMI over TCP, FastAGI client)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.settings import get_secret

log = logging.getLogger(__name__)


@click.command("sim-pbx")
@click.option("--host", default="127.0.0.1", show_default=True, help="AMI listen address.")
@click.option("--ami-port", default=5038, show_default=True, type=int, help="AMI port (0 = any).")
@click.option(
    "--speed",
    default=None,
    type=float,
    help="Time factor (10 = every duration ten times shorter); default: the scenario's, else 1.",
)
@click.option(
    "--dialplan",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="extensions.conf (default config/asterisk/extensions.conf).",
)
@click.option(
    "--queues",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="queues.conf (default config/asterisk/queues.conf).",
)
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Scenario YAML (agents, called parties, personas), e.g. config/scenarios/sim-floor.yaml.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@pass_app
def sim_pbx(
    app: AppContext,
    host: str,
    ami_port: int,
    speed: float | None,
    dialplan: Path | None,
    queues: Path | None,
    scenario: Path | None,
    seed: int,
) -> None:
    """Run the simulated PBX until interrupted (Ctrl-C).

    Faults on purpose: SIGUSR1 drops every AMI connection, SIGUSR2 refuses new ones for
    10 s of PBX time; a scenario's ``faults:`` schedules them.
    """
    from dialer.sim import RealClock, SimPbx
    from dialer.sim.pbx import DEFAULT_MANAGER_CONF
    from dialer.sim.scenario import load_scenario

    if speed is None:
        speed = (load_scenario(scenario).speed if scenario else None) or 1.0
    if speed <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    secret = get_secret("ami_secret")
    assert secret is not None
    username = app.settings.ami.username

    async def run(speed: float) -> None:
        pbx = SimPbx(
            clock=RealClock(speed),
            dialplan=dialplan,
            queues=queues if queues is not None else True,
            scenario=scenario,
            secret=secret.get_secret_value(),
            username=username,
            seed=seed,
            manager_conf=DEFAULT_MANAGER_CONF,
        )
        port = await pbx.start(host, ami_port)
        click.echo(f"sim-pbx: AMI on {host}:{port} (user {username}), speed x{speed:g}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except NotImplementedError:  # pragma: no cover
                pass
        # faults on purpose for an operator's rehearsal: kill -USR1 drops every AMI
        # connection, kill -USR2 refuses new ones for 10 s of PBX time
        try:
            loop.add_signal_handler(signal.SIGUSR1, pbx.faults.drop_all)
            loop.add_signal_handler(signal.SIGUSR2, pbx.faults.refuse_for, 10.0, "unlisten")
        except (NotImplementedError, AttributeError):  # pragma: no cover
            pass
        await stop.wait()
        await pbx.stop()

    asyncio.run(run(speed))


COMMANDS = [sim_pbx]
