"""The demo's shift as it goes: the predictive team's occupancy and its campaign's abandon rate
minute by minute, a live progress line, and a PNG of both over the shift.

Occupancy is the floor's own accounting (``Occupancy.of_queue``: talk + ringing + wrap-up over
logged-in time of the queue's members); the abandon rate is the store's (DESIGN.md section 9:
abandoned / live answers, campaign to date), the same figures the report and console show.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import func, select

from dialer.lists.stats import abandon_rate
from dialer.store import Store
from dialer.store.models import Attempt


@dataclass(frozen=True, slots=True)
class ShiftPoint:
    minute: float  # simulated minutes since the shift started
    occupancy: float  # the team's, over the interval since the previous point
    occupancy_to_date: float
    abandon_rate: float  # the campaign's, to date
    live_answers: int
    abandoned: int
    attempts: int
    calls_in_flight: int


class ShiftMeter:
    """Takes a point every ``every_s`` simulated seconds for one campaign and its queue."""

    def __init__(self, store: Store, campaign_id: int, every_s: float = 60.0) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.every_s = every_s
        self.points: list[ShiftPoint] = []
        self._last: tuple[float, float, float] | None = None  # (elapsed, busy, logged)

    def due(self, elapsed_s: float) -> bool:
        return self._last is None or elapsed_s - self._last[0] >= self.every_s

    def sample(self, elapsed_s: float, busy: float, logged: float, in_flight: int) -> ShiftPoint:
        """A point now: ``busy``/``logged`` are the team's agent-seconds since the start."""
        last = self._last or (0.0, 0.0, 0.0)
        d_logged = logged - last[2]
        with self.store.session() as s:
            rate = abandon_rate(s, self.campaign_id, since=None)
            attempts = s.scalar(select(func.count()).where(Attempt.campaign_id == self.campaign_id))
        point = ShiftPoint(
            minute=elapsed_s / 60.0,
            occupancy=(busy - last[1]) / d_logged if d_logged > 0 else 0.0,
            occupancy_to_date=busy / logged if logged > 0 else 0.0,
            abandon_rate=rate.rate,
            live_answers=rate.live_answers,
            abandoned=rate.abandoned,
            attempts=int(attempts or 0),
            calls_in_flight=in_flight,
        )
        self._last = (elapsed_s, busy, logged)
        if self.points and elapsed_s - self.points[-1].minute * 60.0 < 1.0:
            self.points[-1] = point
        else:
            self.points.append(point)
        return point


def progress_line(p: ShiftPoint, clock: dt.datetime, shift_min: float, team: str) -> str:
    return (
        f"{clock:%H:%M} [{p.minute:4.0f}/{shift_min:.0f} min] {team}: occupancy "
        f"{p.occupancy_to_date:6.1%}  abandon {p.abandon_rate:5.2%} "
        f"({p.abandoned}/{p.live_answers} live)  attempts {p.attempts}  "
        f"in flight {p.calls_in_flight}"
    )


class Progress:
    """One line rewritten in place on a terminal; elsewhere a line every ``plain_every_min``."""

    def __init__(self, out: TextIO, plain_every_min: float = 10.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.plain_every_min = plain_every_min
        self._next_plain = 0.0
        self._width = 0

    def show(self, line: str, minute: float) -> None:
        if self.tty:
            pad = max(0, self._width - len(line))
            self.out.write("\r" + line + " " * pad)
            self._width = len(line)
        elif minute >= self._next_plain:
            self.out.write(line + "\n")
            self._next_plain = minute + self.plain_every_min
        self.out.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def write_chart(points: list[ShiftPoint], path: Path, *, title: str, abandon_cap: float) -> None:
    """Occupancy per interval and to date, and the abandon rate to date, over the shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [p.minute for p in points]
    fig, occ_ax = plt.subplots(figsize=(10, 5))
    occ_ax.plot(
        minutes,
        [100 * p.occupancy for p in points],
        color="tab:blue",
        alpha=0.45,
        label="occupancy, each minute",
    )
    occ_ax.plot(
        minutes,
        [100 * p.occupancy_to_date for p in points],
        color="tab:blue",
        label="occupancy, shift to date",
    )
    occ_ax.set_ylim(0, 100)
    occ_ax.set_xlabel("simulated minutes into the shift")
    occ_ax.set_ylabel("agent occupancy (%)", color="tab:blue")
    ab_ax = occ_ax.twinx()
    ab_ax.plot(
        minutes,
        [100 * p.abandon_rate for p in points],
        color="tab:red",
        label="abandon rate, to date",
    )
    ab_ax.axhline(100 * abandon_cap, color="tab:red", linestyle="--", label="abandon cap")
    ab_ax.set_ylim(0, max(10.0, 100 * abandon_cap * 2))
    ab_ax.set_ylabel("abandoned / live answers (%)", color="tab:red")
    lines = occ_ax.get_legend_handles_labels()
    more = ab_ax.get_legend_handles_labels()
    occ_ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right")
    occ_ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
