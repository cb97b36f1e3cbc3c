"""Alarms: what the floor must not keep quiet about, in one list shown everywhere (log, API,
page, metric).

``find_alarms`` is pure: it reads the floor's state (switch, FastAGI, store, each campaign's
abandon rate, breaker and agents) and returns the alarms that hold now. ``AlarmBoard`` keeps
them with the time each was raised and logs each change once at the default level (an alarm
raised at ERROR, cleared at WARNING), so a condition that lasts is one line, not one per tick.

``IvrGuard`` stops a campaign whose answered customers keep meeting an IVR that fails - does
not run, crashes mid-way, or loses its connection (``ivr_failed`` outcomes in a row, no
completed flow between): it pauses the campaign in the
store (audited, by ``dialer``), so no reload or restart resumes it, and raises its alarm until
a supervisor resumes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dialer.audit import AuditAction
from dialer.lists.campaigns import State
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import AuditEntry, Campaign
from dialer.telephony.core import FinishedAttempt

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignRun

log = logging.getLogger(__name__)

#: ``abandon_near`` from this share of the cap on (the console's "nearing" colour too).
NEAR_CAP = 0.8
#: Live answers in the cap window before the abandon rate can raise an alarm: 2 of the first 6
#: is 33% and says little (the abandon breaker watches that early pattern itself).
MIN_LIVE_FOR_RATE = 20
#: ``ivr_failed`` outcomes in a row that stop a campaign.
IVR_FAILURES_TO_STOP = 3


class AlarmKind(enum.StrEnum):
    SWITCH_DOWN = "switch_down"  # the AMI connection to an Asterisk server is not up
    IVR_DOWN = "ivr_down"  # the FastAGI server does not answer
    IVR_FAILURES = "ivr_failures"  # a campaign stopped after IVR failures in a row
    STORE_DOWN = "store_down"
    ABANDON_NEAR = "abandon_near"  # the abandon rate is near the campaign's cap
    ABANDON_OVER = "abandon_over"  # ... over it
    BREAKER_OPEN = "breaker_open"  # the abandon breaker holds the campaign's dialling
    NO_AGENTS = "no_agents"  # a running agent campaign has no agent logged in


@dataclasses.dataclass(frozen=True)
class Alarm:
    kind: AlarmKind
    subject: str  # a switch, "fastagi", "store" or a campaign name
    message: str
    since: dt.datetime | None = None

    @property
    def key(self) -> tuple[AlarmKind, str]:
        return (self.kind, self.subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "message": self.message,
            "since": self.since.isoformat() if self.since else None,
        }


class AlarmBoard:
    """The alarms that hold now, each with the time it was raised."""

    def __init__(self) -> None:
        self._active: dict[tuple[AlarmKind, str], Alarm] = {}

    def sync(self, found: Iterable[Alarm], now: dt.datetime) -> None:
        fresh = {a.key: a for a in found}
        for key, alarm in list(self._active.items()):
            if key not in fresh:
                del self._active[key]
                log.warning("alarm cleared: %s %s", alarm.kind.value, alarm.subject)
        for key, alarm in fresh.items():
            old = self._active.get(key)
            if old is None:
                log.error("ALARM %s %s: %s", alarm.kind.value, alarm.subject, alarm.message)
                self._active[key] = dataclasses.replace(alarm, since=now)
            else:  # the message may say more now (a rate); the time it began stays
                self._active[key] = dataclasses.replace(alarm, since=old.since)

    def active(self) -> list[Alarm]:
        return sorted(self._active.values(), key=lambda a: (a.kind.value, a.subject))


@dataclasses.dataclass(frozen=True)
class CampaignState:
    """What ``find_alarms`` reads of one campaign."""

    name: str
    running: bool
    uses_agents: bool
    queue: str | None
    live_answers: int
    abandoned: int
    cap: float
    breaker_reason: str | None
    agents_logged_in: int
    stopped_by_ivr: str | None  # why the IVR guard stopped it, while it stays stopped


def find_alarms(
    *,
    switch: str,
    switch_up: bool,
    switch_error: str | None,
    fastagi_up: bool | None,
    fastagi_error: str | None,
    store_up: bool | None,
    store_error: str | None,
    campaigns: Iterable[CampaignState],
    agents_known: bool = True,
) -> list[Alarm]:
    """The alarms that hold for this state (None: not probed yet, no alarm). ``agents_known``:
    the switch has listed its queues' members since it last connected."""
    out: list[Alarm] = []
    if not switch_up:
        out.append(
            Alarm(AlarmKind.SWITCH_DOWN, switch, f"AMI down: {switch_error or 'connecting'}")
        )
    if fastagi_up is False:
        out.append(Alarm(AlarmKind.IVR_DOWN, "fastagi", f"FastAGI unreachable: {fastagi_error}"))
    if store_up is False:
        out.append(Alarm(AlarmKind.STORE_DOWN, "store", f"store unreachable: {store_error}"))
    for c in campaigns:
        if c.stopped_by_ivr:
            out.append(Alarm(AlarmKind.IVR_FAILURES, c.name, c.stopped_by_ivr))
        if not c.running:
            continue
        rate = c.abandoned / c.live_answers if c.live_answers else 0.0
        figures = f"{rate:.1%} of {c.live_answers} live answers, cap {c.cap:.1%}"
        judged = c.abandoned > 0 and c.live_answers >= MIN_LIVE_FOR_RATE
        if judged and rate > c.cap:
            out.append(
                Alarm(AlarmKind.ABANDON_OVER, c.name, f"abandon rate over the cap: {figures}")
            )
        elif judged and rate >= NEAR_CAP * c.cap:
            out.append(
                Alarm(AlarmKind.ABANDON_NEAR, c.name, f"abandon rate near the cap: {figures}")
            )
        if c.breaker_reason:
            out.append(Alarm(AlarmKind.BREAKER_OPEN, c.name, f"dialling held: {c.breaker_reason}"))
        if c.uses_agents and switch_up and agents_known and not c.agents_logged_in:
            out.append(Alarm(AlarmKind.NO_AGENTS, c.name, f"no agent logged in to queue {c.queue}"))
    return out


def _pause(store: Store, cid: int, actor: str, reason: str) -> None:
    with store.session() as s:
        row = s.get(Campaign, cid)
        if row is None or row.state == State.PAUSED.value:
            return
        row.state = State.PAUSED.value
        s.add(
            AuditEntry(
                actor=actor,
                action=AuditAction.CAMPAIGN_PAUSE.value,
                campaign_id=cid,
                detail={"reason": reason},
            )
        )


class IvrGuard:
    """Stops a campaign after ``threshold`` answered calls in a row whose IVR flow failed."""

    def __init__(self, store: Store, owner: str, threshold: int = IVR_FAILURES_TO_STOP) -> None:
        self.store = store
        self.owner = owner
        self.threshold = threshold
        self.in_a_row: dict[int, int] = {}
        self.stopped: dict[int, str] = {}  # campaign id -> why, until it runs again
        self._writes: set[asyncio.Future[None]] = set()

    def finished(self, run: CampaignRun, item: FinishedAttempt) -> None:
        if item.outcome is Outcome.IVR_FAILED:
            n = self.in_a_row[run.id] = self.in_a_row.get(run.id, 0) + 1
        elif item.outcome in (Outcome.COMPLETED, Outcome.CUSTOMER_HANGUP) and run.spec.flow:
            self.in_a_row[run.id] = 0  # the flow ran: the IVR is up
            return
        else:
            return
        if n < self.threshold or run.spec.state is not State.RUNNING:
            return
        reason = (
            f"stopped after {n} answered calls in a row whose IVR flow {run.spec.flow} failed "
            "(FastAGI down, the flow unknown to it, or the flow failing mid-way: see the IVR's "
            "log); resume once the IVR is fixed"
        )
        log.error("ALARM campaign %s: %s", run.spec.name, reason)
        self.stopped[run.id] = reason
        self.in_a_row[run.id] = 0
        run.spec = run.spec.model_copy(update={"state": State.PAUSED})  # no further dial now
        task = asyncio.get_running_loop().run_in_executor(
            None, _pause, self.store, run.id, f"{self.owner}:ivr-guard", reason
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def stopped_reason(self, run: CampaignRun) -> str | None:
        """Why the guard stopped the campaign, while it has not been resumed."""
        if run.spec.state is State.RUNNING:
            self.stopped.pop(run.id, None)
        return self.stopped.get(run.id)
