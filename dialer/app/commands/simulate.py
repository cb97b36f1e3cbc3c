"""``dialer simulate SCENARIO``: rehearse pacing policies in virtual time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from dialer import CONFIG_DIR
from dialer.clirun import OutputFile
from dialer.lists.campaigns import load_campaign_file
from dialer.pacing.policies import AGENT_POLICIES
from dialer.pacing.rehearsal import METRICS, RunResult, Summary, rehearse
from dialer.pacing.scenario import Scenario, find_scenario, load_scenario

SCENARIOS_DIR = CONFIG_DIR / "scenarios"


def _table(scenario: Scenario, results: dict[str, Summary], reps: int, seed: int) -> str:
    heads: tuple[str, ...] = ("policy", *METRICS)
    rows: list[tuple[str, ...]] = [heads]
    for name, s in results.items():
        d = s.as_dict()
        rows.append((name, *(_fmt(k, d[k]) for k in METRICS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = [
        f"scenario {scenario.name}: {scenario.duration_s:g} s, {reps} replications, seed {seed}, "
        f"abandon cap {scenario.abandon_target:g}"
    ]
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _fmt(key: str, value: float | int) -> str:
    if key in ("occupancy", "abandon_rate", "p_run_over_cap"):
        return f"{value:.4f}"
    if key.endswith("_s"):
        return f"{value:.2f}"
    return f"{value:.1f}"


def _plot(
    path: Path, scenario: Scenario, results: dict[str, tuple[Summary, list[RunResult]]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for i, (name, (s, runs)) in enumerate(results.items()):
        colour = f"C{i % 10}"
        ax.scatter(
            [r.abandon_rate for r in runs],
            [r.occupancy for r in runs],
            s=12,
            alpha=0.35,
            color=colour,
        )
        ax.scatter(
            [s.abandon_rate],
            [s.occupancy],
            s=90,
            color=colour,
            edgecolors="black",
            label=f"{name} ({s.occupancy:.3f}, {s.abandon_rate:.2%})",
        )
    ax.axvline(scenario.abandon_target, color="red", linestyle="--", label="abandon cap")
    ax.set_xlabel("abandon rate (abandons per live answer)")
    ax.set_ylabel("occupancy ((talk + wrap-up) / logged-in time)")
    ax.set_title(f"{scenario.name}: occupancy against abandon rate (large = pooled)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command("simulate")
@click.argument("scenario")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(AGENT_POLICIES),
    help="Policy to rehearse (repeatable; default every policy).",
)
@click.option(
    "--campaign",
    "campaign_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take this campaign file's pacing settings instead of the scenario's.",
)
@click.option("--reps", default=20, show_default=True, type=click.IntRange(1, 100000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--plot",
    "plot_path",
    type=OutputFile(),
    help="Write a PNG of occupancy against abandon rate.",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1.0, min_open=False),
    help="Override the scenario's duration_s (seconds).",
)
@click.option("--jobs", type=click.IntRange(1, 64), help="Worker processes (default up to 2).")
def simulate(
    scenario: str,
    policies: tuple[str, ...],
    campaign_file: Path | None,
    reps: int,
    seed: int,
    as_json: bool,
    plot_path: Path | None,
    duration_s: float | None,
    jobs: int | None,
) -> None:
    """Rehearse pacing policies on SCENARIO (a file, or a name in config/scenarios/).

    Every policy sees the same called parties in the same order (common random numbers), from a
    cold start, and is measured over the whole duration.
    """
    sc = load_scenario(find_scenario(scenario, SCENARIOS_DIR))
    if campaign_file is not None:
        sc = sc.with_campaign(load_campaign_file(campaign_file))
    if duration_s is not None:
        sc = sc.model_copy(update={"duration_s": duration_s})
    names = list(policies) or list(AGENT_POLICIES)
    started = time.perf_counter()
    results = rehearse(sc, names, reps=reps, seed=seed, jobs=jobs)
    wall = time.perf_counter() - started
    summaries = {n: s for n, (s, _) in results.items()}
    if as_json:
        doc = {
            "policies": {
                n: {k: v for k, v in s.as_dict().items() if k in METRICS}
                for n, s in summaries.items()
            }
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(_table(sc, summaries, reps, seed))
        click.echo(f"({wall:.1f} s wall)")
    if plot_path is not None:
        _plot(plot_path, sc, results)
        if not as_json:
            click.echo(f"plot written to {plot_path}")


COMMANDS = [simulate]
