"""The agent's side of one switch: queue membership, ready and pause, and who just got a call.

An agent's desktop acts on their queue member interface through app_queue's own AMI actions
- ``QueueAdd`` / ``QueueRemove`` to log in and out of a campaign's queue, ``QueuePause`` with
``Reason`` for a pause (no ``Queue``: every queue the member is in) - and is told, the moment
the switch reports ``AgentConnect`` for that interface, which attempt it was handed
(``on_connect``: the screen-pop). The agent pool learns the results from the events the
actions cause (QueueMemberAdded/Removed/Pause), as it learns everything else: the desk keeps no
agent state of its own.

Wrap-up held by the desktop: after ``AgentComplete`` the member is paused with the reason
``WRAPUP_REASON`` until the agent saves the disposition (``end_wrapup``) or the campaign's
``wrapup_limit_s`` passes; the pool shows such a member in wrap-up, so pacing sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dialer.errors import AMIError
from dialer.telephony.agents import WRAPUP_PAUSE, Agent
from dialer.telephony.ami.messages import Event

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignLoop

log = logging.getLogger(__name__)

WRAPUP_REASON = WRAPUP_PAUSE
#: What an agent may give as the reason of a pause (``QueuePause`` ``Reason``).
PAUSE_REASONS = ("break", "lunch", "training", "meeting", "coaching", "system")


@dataclass(frozen=True)
class Connected:
    """The switch bridged a followed attempt to a member (``AgentConnect``)."""

    interface: str
    member: str
    attempt_id: int
    campaign: str | None
    queue: str | None
    at: float  # the loop's clock


class AgentDesk:
    """Agents' actions and screen-pop triggers on one switch (one campaign loop)."""

    def __init__(self, loop: CampaignLoop) -> None:
        self.loop = loop
        self._listeners: list[Callable[[Connected], None]] = []
        self._complete: list[Callable[[str, AgentDesk], None]] = []
        self._wrapups: dict[str, asyncio.TimerHandle] = {}
        loop.core.subscribe(self._on_event)

    # -- what the switch says ---------------------------------------------------------------

    def on_connect(self, listener: Callable[[Connected], None]) -> None:
        self._listeners.append(listener)

    def on_complete(self, listener: Callable[[str, AgentDesk], None]) -> None:
        """``listener(interface, desk)`` when a member's call ends (``AgentComplete``)."""
        self._complete.append(listener)

    def completed(self, interface: str) -> None:
        """The member's call ended (``AgentComplete``, or a personal callback's bridge)."""
        for done in self._complete:
            try:
                done(interface, self)
            except Exception:
                log.exception("wrap-up listener failed")

    def connected(self, connected: Connected) -> None:
        """A followed attempt reached the member (``AgentConnect``, or a personal callback's
        customer bridged to their waiting phone): the screen-pop."""
        for listener in self._listeners:
            try:
                listener(connected)
            except Exception:  # one listener's fault must not stop the event stream
                log.exception("screen-pop listener failed")

    def _on_event(self, event: Event) -> None:
        if event.name == "AgentComplete":
            self.completed(event.headers.get("Interface") or "")
            return
        if event.name != "AgentConnect":
            return
        h = event.headers
        iface = h.get("Interface") or h.get("StateInterface") or ""
        attempt_id = self.loop.core.tracker.attempt_for(event)
        if not iface or attempt_id is None:
            return  # not a call this dialer placed
        cid = self.loop.attempt_campaign.get(attempt_id)
        run = self.loop.runs.get(cid) if cid is not None else None
        self.connected(
            Connected(
                interface=iface,
                member=h.get("MemberName") or iface,
                attempt_id=attempt_id,
                campaign=run.spec.name if run is not None else None,
                queue=h.get("Queue"),
                at=self.loop.clock.time(),
            )
        )

    # -- reading ----------------------------------------------------------------------------

    def agent(self, interface: str) -> Agent | None:
        return self.loop.pool.agents.get(interface)

    def queues_of(self, campaigns: Sequence[str]) -> dict[str, str]:
        """Campaign name -> its agent queue, for the running campaigns named (all if empty)."""
        return {
            r.spec.name: r.spec.queue
            for r in self.loop.runs.values()
            if r.spec.queue and (not campaigns or r.spec.name in campaigns)
        }

    @property
    def ready(self) -> bool:
        return self.loop.core.ready

    # -- acting -----------------------------------------------------------------------------

    async def _act(self, name: str, fields: list[tuple[str, str]]) -> str:
        result = await self.loop.core.client.action(name, fields)
        message = result.response.headers.get("Message") or ""
        if result.response.status != "Success":
            raise AMIError(f"{name}: {message or result.response.status}")
        return message

    async def join(
        self,
        interface: str,
        member: str,
        queues: Sequence[str],
        *,
        paused: bool,
        reason: str = "",
        penalty: int = 0,
    ) -> list[str]:
        """``QueueAdd`` to each queue; returns the queues joined (one already joined counts)."""
        joined = []
        for queue in queues:
            fields = [
                ("Queue", queue),
                ("Interface", interface),
                ("MemberName", member),
                ("Penalty", str(penalty)),
                ("Paused", "true" if paused else "false"),
            ]
            if paused and reason:
                fields.append(("Reason", reason))
            try:
                await self._act("QueueAdd", fields)
            except AMIError as exc:
                if "Already there" not in str(exc):
                    raise
            joined.append(queue)
        return joined

    async def leave(self, interface: str, queues: Sequence[str]) -> list[str]:
        left = []
        for queue in queues:
            try:
                await self._act("QueueRemove", [("Queue", queue), ("Interface", interface)])
            except AMIError as exc:
                if "Not there" in str(exc) or "No such queue" in str(exc):
                    continue
                raise
            left.append(queue)
        self.cancel_wrapup(interface)
        return left

    async def pause(self, interface: str, reason: str) -> None:
        """Pause in every queue the member is in, with the reason app_queue keeps."""
        await self._act(
            "QueuePause", [("Interface", interface), ("Paused", "true"), ("Reason", reason)]
        )

    async def unpause(self, interface: str) -> None:
        self.cancel_wrapup(interface)
        await self._act("QueuePause", [("Interface", interface), ("Paused", "false")])

    # -- wrap-up held until the disposition -------------------------------------------------

    async def hold_wrapup(self, interface: str, limit_s: float | None) -> None:
        """Pause the member for wrap-up; it ends by itself after ``limit_s`` (if given)."""
        await self.pause(interface, WRAPUP_REASON)
        self.cancel_wrapup(interface)
        if limit_s:
            loop = asyncio.get_running_loop()
            self._wrapups[interface] = loop.call_later(
                limit_s, lambda: loop.create_task(self._wrapup_over(interface))
            )

    async def _wrapup_over(self, interface: str) -> None:
        self._wrapups.pop(interface, None)
        agent = self.agent(interface)
        if agent is not None and agent.paused and agent.pause_reason == WRAPUP_REASON:
            try:
                await self.unpause(interface)
            except AMIError as exc:
                log.warning("wrap-up limit of %s: %s", interface, exc)

    def cancel_wrapup(self, interface: str) -> None:
        handle = self._wrapups.pop(interface, None)
        if handle is not None:
            handle.cancel()


@runtime_checkable
class DeskFloor(Protocol):
    """A floor whose agents can work from a desktop: one desk per switch it serves."""

    def desks(self) -> list[AgentDesk]: ...


__all__ = ["PAUSE_REASONS", "WRAPUP_REASON", "AgentDesk", "Connected", "DeskFloor"]
