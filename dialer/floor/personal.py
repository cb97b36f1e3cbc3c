"""Personal callbacks on the floor, agent-first: the agent's phone, then the customer.

A personal callback belongs to the agent who booked it from its due time to its fallback
time (``dialer.lists.personal``). Each pass of the campaign loop (``serve``, before pacing
decides) looks for the campaign's due personal callbacks whose agent is logged in to the
campaign's queue and ready; for each:

1. the agent is held (``Agent.reserved`` at once, then ``QueuePause`` with the reason
   ``callback`` on the switch): app_queue offers them no other call, and pacing, occupancy and
   supervisors count them busy with this call;
2. the callback is claimed in the store and the compliance rules are checked (an agent is not
   rung for a customer who may not be called now);
3. the agent's phone is rung (an Originate into ``dialer-personal``, where the answered
   channel waits);
4. answered: the customer's attempt row is written under every rule again and originated
   like any call, with ``DIALER_AGENT`` = the agent's channel: the agent's desktop shows the
   customer at once (the screen-pop: they hear the customer's phone ring); the customer who
   answers is bridged to that channel (``Bridge()``); the tracker follows that leg to its
   outcome and the bridge is the agent's connect;
5. at the end the agent's channel is hung up if still there, the hold is released, and a
   bridged call goes to wrap-up as a queue call does.

An agent who is away (logged out, paused, busy) is not waited for here: the callback stays
pending, tried again each pass, and at its fallback time the campaign's hopper dials it as an
ordinary callback to any agent. An agent who does not answer, or a rule that says no, leaves
it pending and it is tried again after ``RETRY_AFTER_S``. Personal calls are not paced: they
are left out of the campaign's pacing input (their agent is already counted busy).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dialer.errors import ComplianceError, DialerError
from dialer.floor.desk import AgentDesk, Connected
from dialer.floor.view import AgentState
from dialer.lists import personal as store_side
from dialer.lists.campaigns import State
from dialer.telephony.agents import CALLBACK_PAUSE, Activity
from dialer.telephony.ami.messages import Event
from dialer.telephony.core import FinishedAttempt
from dialer.telephony.originate import AGENT_RING_S, build_agent_leg

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignLoop, CampaignRun

log = logging.getLogger(__name__)

#: clock seconds between two looks at a campaign's due personal callbacks
POLL_S = 1.0
#: a callback whose agent did not answer, or whose customer may not be called now, waits this
#: long (clock seconds) before its agent is rung again
RETRY_AFTER_S = 60.0
#: how long past the agent's ring time an Originate's answer is awaited
RESPONSE_GRACE_S = 15.0
#: an agent the switch shows paused for a callback that this floor is not serving (its dialer
#: stopped mid-way) is released after this many clock seconds
STALE_HOLD_S = 60.0


@dataclass
class _Leg:
    """One personal callback being served."""

    callback_id: int
    interface: str
    agent: str
    campaign: str
    channel_id: str = ""
    channel: str | None = None  # the agent's answered channel
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    response: Event | None = None
    gone: bool = False  # the agent's channel hung up
    held: bool = False  # paused with CALLBACK_PAUSE by us
    attempt_id: int | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: FinishedAttempt | None = None


class PersonalCallbacks:
    """Serves the floor's personal callbacks agent-first (see the module's text)."""

    def __init__(self, loop: CampaignLoop, desk: AgentDesk) -> None:
        self.loop = loop
        self.desk = desk
        self.serving: dict[int, _Leg] = {}  # callback id -> its leg
        self.by_action: dict[str, _Leg] = {}
        self.by_channel: dict[str, _Leg] = {}  # the agent leg's uniqueid
        self.by_attempt: dict[int, _Leg] = {}
        self.later: dict[int, float] = {}  # callback id -> clock time it may be tried again
        self._polled: dict[int, float] = {}  # campaign id -> clock time of the last look
        self._released: dict[str, float] = {}  # interface -> when a stale hold was lifted
        self.served = 0  # agents rung
        loop.core.subscribe(self._on_event)
        loop.core.on_finished(self._on_finished)

    @property
    def attempts(self) -> set[int]:
        """The attempts of personal calls in flight (pacing leaves them out)."""
        return set(self.by_attempt)

    # -- the pass ---------------------------------------------------------------------------

    async def serve(self, run: CampaignRun, now: float) -> None:
        """Start the campaign's due personal callbacks whose agent is ready."""
        if not run.uses_agents or run.spec.state is not State.RUNNING:
            return
        if now - self._polled.get(run.id, float("-inf")) < POLL_S:
            return
        self._polled[run.id] = now
        self._release_stale(run, now)
        ready = {
            a.interface: a
            for a in self.loop.pool.in_queue(run.spec.queue)
            if a.effective_state is AgentState.IDLE
        }
        if not ready:
            return  # nobody to ring: the callbacks wait (and fall back in time)
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        # a read, off the core's database thread (that one prepares the Originates)
        due = await asyncio.to_thread(self._due, run.id, when)
        for d in due:
            agent = ready.pop(d.interface, None)
            if agent is None or d.callback_id in self.serving:
                continue  # the agent is away or busy: the callback waits for them
            if self.later.get(d.callback_id, float("-inf")) > now:
                ready[d.interface] = agent
                continue
            agent.reserved = True  # from now on no pass counts them free
            leg = _Leg(d.callback_id, d.interface, d.agent, run.spec.name)
            self.serving[d.callback_id] = leg
            task = asyncio.create_task(self._serve(run, leg), name=f"personal-{d.callback_id}")
            self.loop.tasks.add(task)  # awaited or cancelled with the loop's Originates
            task.add_done_callback(self.loop.tasks.discard)

    def _release_stale(self, run: CampaignRun, now: float) -> None:
        """Lift a ``callback`` pause nobody serves any more: a dialer that stopped while it
        held the agent (the switch kept the pause) must not leave them out of work."""
        mine = {leg.interface for leg in self.serving.values()}
        for a in self.loop.pool.in_queue(run.spec.queue):
            if (
                a.paused
                and a.pause_reason == CALLBACK_PAUSE
                and a.interface not in mine
                and now - a.since >= STALE_HOLD_S
                and now - self._released.get(a.interface, float("-inf")) >= STALE_HOLD_S
            ):
                log.warning("agent %s held for a callback nobody serves: released", a.name)
                self._released[a.interface] = now
                task = asyncio.create_task(
                    self._act("QueuePause", [("Interface", a.interface), ("Paused", "false")])
                )
                self.loop.tasks.add(task)
                task.add_done_callback(self.loop.tasks.discard)

    def _due(self, campaign_id: int, when: dt.datetime) -> list[store_side.PersonalDue]:
        with self.loop.store.session() as s:
            return store_side.due_personal(s, campaign_id, when)

    # -- one callback -----------------------------------------------------------------------

    async def _serve(self, run: CampaignRun, leg: _Leg) -> None:
        claimed = False
        try:
            claimed = await self.loop.core.in_db(self._claim, leg.callback_id)
            if not claimed:
                return  # another worker serves it
            why = await self.loop.core.in_db(self._refusal, leg.callback_id)
            if why is not None:
                log.info("personal callback %s waits: %s", leg.callback_id, why)
                self._later(leg)
                return
            await self.desk.pause(leg.interface, CALLBACK_PAUSE)
            leg.held = True
            agent = self.loop.pool.agents.get(leg.interface)
            if agent is None or agent.activity is not Activity.IDLE:
                return  # a queue call reached them first: the callback waits
            if not await self._ring_agent(run, leg):
                log.info("personal callback %s: %s did not answer", leg.callback_id, leg.agent)
                self._later(leg)
                return
            try:
                attempt_id, phone = await self.loop.core.in_db(self._start, leg)
            except ComplianceError as exc:
                log.info("personal callback %s: %s", leg.callback_id, exc)
                self._later(leg)
                return
            claimed = False  # dialled: the attempt closes it
            await self._call_customer(run, leg, attempt_id, phone)
        except DialerError as exc:
            log.warning("personal callback %s: %s", leg.callback_id, exc)
            self._later(leg)
        finally:
            await self._release(leg, claimed)

    def _claim(self, callback_id: int) -> bool:
        with self.loop.store.session() as s:
            return store_side.claim(s, callback_id)

    def _refusal(self, callback_id: int) -> str | None:
        with self.loop.store.session() as s:
            return store_side.refusal(
                s,
                callback_id,
                self.loop.now(),
                daily_cap=self.loop.settings.max_calls_per_number_per_day,
            )

    def _start(self, leg: _Leg) -> tuple[int, str]:
        assert leg.channel is not None
        with self.loop.store.session() as s:
            attempt = store_side.start_personal(
                s,
                leg.callback_id,
                self.loop.now(),
                owner=self.loop.owner,
                daily_cap=self.loop.settings.max_calls_per_number_per_day,
                agent_channel=leg.channel,
            )
            return attempt.id, attempt.phone

    def _later(self, leg: _Leg) -> None:
        self.later[leg.callback_id] = self.loop.clock.time() + RETRY_AFTER_S

    async def _ring_agent(self, run: CampaignRun, leg: _Leg) -> bool:
        """Ring the agent's phone; True once it answered (its channel waits for the bridge)."""
        req = build_agent_leg(interface=leg.interface, callback_id=leg.callback_id, spec=run.spec)
        leg.channel_id = req.channel_id
        self.by_action[req.action_id] = leg
        self.by_channel[req.channel_id] = leg
        self.served += 1
        result = await self.loop.core.client.action(
            "Originate", req.fields, action_id=req.action_id
        )
        if not result.response.ok:
            log.warning("personal callback %s: Originate refused", leg.callback_id)
            return False
        await self.loop.clock.wait(leg.answered, AGENT_RING_S + RESPONSE_GRACE_S)
        response = leg.response
        if response is None or (response.headers.get("Response") or "").lower() != "success":
            return False
        leg.channel = response.headers.get("Channel") or None
        return leg.channel is not None and not leg.gone

    async def _call_customer(
        self, run: CampaignRun, leg: _Leg, attempt_id: int, phone: str
    ) -> None:
        """Originate the customer's attempt (bridged to the agent's channel) and wait for its
        outcome."""
        leg.attempt_id = attempt_id
        self.by_attempt[attempt_id] = leg
        self.loop.attempt_campaign[attempt_id] = run.id
        self.loop.attempt_phone[attempt_id] = phone
        self.desk.connected(  # the agent is on the line: they see whom they are calling
            Connected(
                interface=leg.interface,
                member=leg.agent,
                attempt_id=attempt_id,
                campaign=leg.campaign,
                queue=None,
                at=self.loop.clock.time(),
            )
        )
        await self.loop.core.originate(attempt_id)
        while not leg.finished.is_set():  # the tracker's outcome (its watchdog ends it)
            await self.loop.clock.wait(leg.finished, 60.0)

    async def _release(self, leg: _Leg, claimed: bool) -> None:
        """The callback is over for now: hang the agent's channel up if it is still there,
        give the claim back if it was not dialled, end the hold; a bridged call goes on to
        wrap-up as a queue call does."""
        try:
            if leg.channel is not None and not leg.gone:
                await self._act("Hangup", [("Channel", leg.channel)])
            if claimed:
                await self.loop.core.in_db(self._unclaim, leg.callback_id)
            agent = self.loop.pool.agents.get(leg.interface)
            paused_since = (
                agent is not None
                and agent.paused
                and agent.pause_reason
                not in (
                    None,
                    CALLBACK_PAUSE,
                )
            )  # the agent (or a supervisor) paused them meanwhile: that pause stays
            if leg.held and not paused_since:
                await self._act("QueuePause", [("Interface", leg.interface), ("Paused", "false")])
            if leg.outcome is not None and leg.outcome.facts.bridged_at is not None:
                self.desk.completed(leg.interface)
        finally:
            agent = self.loop.pool.agents.get(leg.interface)
            if agent is not None:
                agent.reserved = False
            self.serving.pop(leg.callback_id, None)
            self.by_channel.pop(leg.channel_id, None)
            if leg.attempt_id is not None:
                self.by_attempt.pop(leg.attempt_id, None)
            for k in [k for k, v in self.by_action.items() if v is leg]:
                del self.by_action[k]

    def _unclaim(self, callback_id: int) -> None:
        with self.loop.store.session() as s:
            store_side.unclaim(s, callback_id)

    async def _act(self, name: str, fields: list[tuple[str, str]]) -> None:
        try:
            await self.loop.core.client.action(name, fields)
        except DialerError as exc:  # the switch went away: the call is over anyway
            log.warning("personal callback: %s: %s", name, exc)

    # -- what the switch and the tracker say -------------------------------------------------

    def _on_event(self, event: Event) -> None:
        h = event.headers
        if event.name == "OriginateResponse":
            leg = self.by_action.get(h.get("ActionID") or "")
            if leg is not None and leg.response is None:
                leg.response = event
                leg.answered.set()
        elif event.name == "Hangup":
            leg = self.by_channel.get(h.get("Uniqueid") or "")
            if leg is not None:
                leg.gone = True

    def _on_finished(self, item: FinishedAttempt) -> None:
        leg = self.by_attempt.get(item.attempt_id)
        if leg is not None:
            leg.outcome = item
            leg.finished.set()


__all__ = ["POLL_S", "RETRY_AFTER_S", "PersonalCallbacks"]
