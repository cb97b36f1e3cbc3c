"""The floor's guard of its agent campaigns: the abandon breaker of each, fed from the switch.

``dialer.pacing.breaker`` holds the rule (pure); this module feeds it what the switch says
(agent and member events, calls bridged or abandoned, calls finished), limits what a held campaign may dial, raises the
alarm (log, audit row, metric, the console's ``held_reason``) and reads back from the store
a breaker that was open when the last run stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dialer.audit import AuditAction
from dialer.lists.campaigns import State
from dialer.outcomes import Outcome
from dialer.pacing.breaker import BreakerEvent, BreakerState
from dialer.store import Store
from dialer.store.models import AuditEntry
from dialer.telephony.agents import UNREACHABLE_STATUSES, AgentPool, AgentState
from dialer.telephony.core import FinishedAttempt

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignRun

log = logging.getLogger(__name__)


def write_audit(
    store: Store, cid: int, actor: str, action: AuditAction, detail: dict[str, Any]
) -> None:
    with store.session() as s:
        s.add(AuditEntry(actor=actor, action=action.value, campaign_id=cid, detail=detail))


class BreakerGuard:
    """Every agent campaign's abandon breaker on one floor."""

    def __init__(self, store: Store, pool: AgentPool, owner: str) -> None:
        self.store = store
        self.pool = pool
        self.owner = owner
        self.metrics: Any = None  # DialerMetrics, when the console runs
        self._writes: set[asyncio.Future[None]] = set()
        self._judged: set[int] = set()  # calls the breaker heard of before they ended

    # --- what the loop asks ------------------------------------------------------------

    def limit(self, run: CampaignRun, n: int) -> int:
        """What of ``n`` calls a campaign may place now (a held one: none, or one probe)."""
        if not run.uses_agents or not run.breaker.is_open:
            return n
        run.effective_mode = f"held ({run.breaker.state.value})"
        return run.breaker.allowed(n)

    def placed(self, run: CampaignRun, attempt_ids: list[int]) -> None:
        if run.uses_agents and run.breaker.is_open:
            run.breaker.placed(len(attempt_ids))
            run.probes.update(attempt_ids)

    def restore(self, run: CampaignRun, now: float, held: tuple[Any, str] | None) -> None:
        if held is not None:
            run.breaker.hold(now, held[1])

    def held_reason(self, run: CampaignRun) -> str | None:
        """Why a running campaign that sends its calls to agents is not dialling."""
        if not run.uses_agents or run.spec.state is not State.RUNNING:
            return None
        if run.breaker.is_open:
            return run.breaker.reason
        queue = run.spec.queue
        members = self.pool.in_queue(queue)
        unreachable = sum(1 for a in members if a.effective_state is AgentState.UNAVAILABLE)
        if unreachable and not self.pool.logged_in(queue):
            return (
                f"no agent can be rung: {unreachable} member(s) of queue {queue} are "
                "INVALID or UNAVAILABLE on the switch"
            )
        return None

    # --- what the switch says ----------------------------------------------------------

    def floor_event(
        self, runs: Mapping[int, CampaignRun], name: str, fields: Mapping[str, str], now: float
    ) -> None:
        """Before the pool applies an agent/member event: does it give a held breaker a
        reason to try one probe call?"""
        event = self._meaning(name, fields)
        if event is None:
            return
        queue = fields.get("Queue")
        for run in runs.values():
            if run.uses_agents and run.spec.queue == queue and run.breaker.is_open:
                before = run.breaker.state
                run.breaker.on_floor(now, event)
                if run.breaker.state is not before:
                    log.warning(
                        "campaign %s: abandon breaker %s after %s on queue %s",
                        run.spec.name,
                        run.breaker.state.value,
                        event.value,
                        queue,
                    )

    def _meaning(self, name: str, fields: Mapping[str, str]) -> BreakerEvent | None:
        if name == "AgentConnect":
            return BreakerEvent.AGENT_ACTIVITY
        if name in ("QueueMemberAdded", "QueueMemberRemoved"):
            return BreakerEvent.FLOOR_CHANGED
        if name not in ("QueueMemberStatus", "QueueMemberPause"):
            return None
        iface = fields.get("StateInterface") or fields.get("Interface") or ""
        agent = self.pool.agents.get(iface)
        if agent is None:
            return BreakerEvent.FLOOR_CHANGED
        paused = fields.get("Paused")
        status = fields.get("Status", "")
        # a member ringing (2) and idle again (1) is no news; reachable or not, paused or not is
        if paused is not None and (paused == "1") != agent.paused:
            return BreakerEvent.FLOOR_CHANGED
        if status.isdigit() and (int(status) in UNREACHABLE_STATUSES) != (
            agent.device_status in UNREACHABLE_STATUSES
        ):
            return BreakerEvent.FLOOR_CHANGED
        return None

    # A call's verdict for the breaker is given as soon as the switch shows it - bridged at
    # AgentConnect, abandoned when the caller leaves the queue - not when the call ends: a
    # long call's bridge would clear the strikes (or close a half-open breaker) minutes late,
    # and an abandon would be counted after its safe-harbour message, with the agents free
    # by then. ``finished`` judges only the calls not judged before.

    def bridged(self, run: CampaignRun, attempt_id: int, now: float) -> None:
        """An agent took the call (AgentConnect)."""
        if run.uses_agents and self._judge(attempt_id):
            self._bridged(run, self._probe(run, attempt_id), now)

    def abandoned(self, run: CampaignRun, attempt_id: int, now: float) -> None:
        """The caller left the queue unanswered (the hold limit ran out, or they hung up)."""
        if run.uses_agents and self._judge(attempt_id):
            self._abandoned(run, self._probe(run, attempt_id), now)

    def finished(self, run: CampaignRun, item: FinishedAttempt, now: float) -> None:
        judged = item.attempt_id in self._judged
        self._judged.discard(item.attempt_id)
        if not run.uses_agents or judged:
            return
        probe = self._probe(run, item.attempt_id)
        if item.facts.bridged_at is not None:
            self._bridged(run, probe, now)
        elif item.outcome is Outcome.ABANDONED:
            self._abandoned(run, probe, now)
        else:
            run.breaker.on_other_end(probe=probe)

    def _judge(self, attempt_id: int) -> bool:
        """True the first time a call is judged before its end."""
        if attempt_id in self._judged:
            return False
        self._judged.add(attempt_id)
        return True

    @staticmethod
    def _probe(run: CampaignRun, attempt_id: int) -> bool:
        probe = attempt_id in run.probes
        run.probes.discard(attempt_id)
        return probe

    def _bridged(self, run: CampaignRun, probe: bool, now: float) -> None:
        before = run.breaker.state
        run.breaker.on_bridged(now, probe=probe)
        if before is not BreakerState.CLOSED and run.breaker.state is BreakerState.CLOSED:
            log.warning("campaign %s: abandon breaker closed: agents take calls", run.spec.name)
            self._audit(run, AuditAction.BREAKER_CLOSED, {})

    def _abandoned(self, run: CampaignRun, probe: bool, now: float) -> None:
        breaker = run.breaker
        queue = run.spec.queue
        free = self.pool.count(AgentState.IDLE, queue) + self.pool.count(AgentState.RINGING, queue)
        if breaker.on_abandon(now, free_agents=free, probe=probe):
            log.error("ALARM campaign %s: dialling held: %s", run.spec.name, breaker.reason)
            self._audit(run, AuditAction.BREAKER_OPEN, {"reason": breaker.reason})
            if self.metrics is not None:
                self.metrics.count_breaker_trip(run.spec.name)

    def _audit(self, run: CampaignRun, action: AuditAction, detail: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().run_in_executor(
            None, write_audit, self.store, run.id, self.owner, action, detail
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
