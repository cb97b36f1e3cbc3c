"""What the switch tells the floor: agent and queue events, calls answered, bridged or
abandoned, calls finished.

The feeds keep the floor's agent pool, each campaign's estimator and abandon window, and its
bookkeeping of attempts in step with the dialer core; every feed wakes the campaign loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dialer.outcomes import AttemptState, Outcome
from dialer.telephony.ami.messages import Event
from dialer.telephony.core import FinishedAttempt
from dialer.telephony.tracker import Transition

if TYPE_CHECKING:  # the loop makes its feeds
    from dialer.floor.loop import CampaignLoop

_LIVE_STATES = frozenset({AttemptState.QUEUED, AttemptState.IN_IVR, AttemptState.WITH_AGENT})


class SwitchFeeds:
    """The dialer core's listeners for one campaign loop."""

    def __init__(self, loop: CampaignLoop) -> None:
        self.loop = loop
        self.live_seen: set[int] = set()  # attempts already counted as live answers
        self.abandon_seen: set[int] = set()  # attempts already counted as abandons

    def on_ami_event(self, event: Event) -> None:
        loop = self.loop
        name = event.name
        if name.startswith(("Agent", "QueueMember")):
            fields = event.headers
            loop.guard.floor_event(loop.runs, name, fields, loop.clock.time())
            loop.pool.on_event(name, fields, loop.clock.time())
            if name in ("AgentComplete", "AgentConnect"):
                queue = fields.get("Queue")
                with contextlib.suppress(ValueError):
                    if name == "AgentComplete":
                        talk = float(fields.get("TalkTime") or 0)
                    else:  # RingTime: whole seconds the agent took to pick up
                        ring = float(fields.get("RingTime") or 0)
                    for run in loop.runs.values():
                        if run.spec.queue == queue:
                            if name == "AgentComplete":
                                run.estimator.observe_talk(talk)
                            else:
                                run.estimator.observe_agent_answer(ring)
            loop.wake()
        elif name == "QueueCallerAbandon":
            self.count_abandons(loop.clock.time())

    def count_abandons(self, now: float) -> None:
        """An abandon is learnt when the caller leaves the queue unanswered (the hold limit ran
        out, or they hung up), as the rehearsal learns it - not seconds later, once the
        safe-harbour message has played, the call has ended and its outcome is committed: in
        between, every decision would see the abandon window without it. The tracker (fed
        before its listeners) has marked the call; a queue reached from the IVR is not an
        abandon."""
        loop = self.loop
        for attempt_id, call in loop.core.tracker.calls.items():
            if not call.queue_abandoned or call.via_ivr or attempt_id in self.abandon_seen:
                continue
            if attempt_id not in self.live_seen:
                continue  # its answer was not counted here (followed after a resync)
            cid = loop.attempt_campaign.get(attempt_id)
            run = loop.runs.get(cid) if cid is not None else None
            if run is not None:
                self.abandon_seen.add(attempt_id)
                run.abandon_counts.abandon(now)
                loop.guard.abandoned(run, attempt_id, now)
        loop.wake()

    def on_queue_status(self, events: Sequence[Event]) -> None:
        loop = self.loop
        members = [e.headers for e in events if e.name == "QueueMember"]
        loop.queues_seen = {e.headers.get("Queue") or "" for e in events if e.name == "QueueParams"}
        loop.pool.load_status(members, loop.clock.time())
        loop.wake()

    def on_transition(self, t: Transition) -> None:
        """A live answer is learnt when it happens, as the rehearsal learns it: the answer
        rate and the live-answer count do not wait for the end of a long call. (Learnt at the
        end, a warm-up hid every answered call for minutes while the unanswered ones showed at
        the ring time-out: the answer rate read ~0.1 for a true 0.3, and the loop over-dialled
        into ~20% abandons in the first minutes.)"""
        loop = self.loop
        if t.after is AttemptState.ENDED:
            # its line is free now (the tracker no longer counts it); the outcome's write
            # follows in the next batch, and the number stays off the hopper until then
            loop.wake()
            return
        if t.after is AttemptState.WITH_AGENT:
            bridged = loop.runs.get(loop.attempt_campaign.get(t.attempt_id, -1))
            if bridged is not None:  # the breaker hears of it now, not minutes later
                loop.guard.bridged(bridged, t.attempt_id, t.at)
        if t.after not in _LIVE_STATES or t.attempt_id in self.live_seen:
            return
        cid = loop.attempt_campaign.get(t.attempt_id)
        run = loop.runs.get(cid) if cid is not None else None
        call = loop.core.tracker.calls.get(t.attempt_id)
        if run is None or call is None or call.answered_at is None:
            return
        self.live_seen.add(t.attempt_id)
        run.abandon_counts.live_answer(t.at)
        run.estimator.observe_ring(t.at, call.answered_at - call.originated_at, live=True)
        loop.wake()

    def on_finished(self, item: FinishedAttempt) -> None:
        loop = self.loop
        cid = loop.attempt_campaign.pop(item.attempt_id, None)
        loop.attempt_phone.pop(item.attempt_id, None)
        seen_live = item.attempt_id in self.live_seen
        seen_abandon = item.attempt_id in self.abandon_seen
        self.live_seen.discard(item.attempt_id)
        self.abandon_seen.discard(item.attempt_id)
        run = loop.runs.get(cid) if cid is not None else None
        if run is None:
            return
        f = item.facts
        live = f.live_answer
        abandoned = item.outcome is Outcome.ABANDONED
        if live and not seen_live:
            run.abandon_counts.live_answer(f.ended_at)
        if abandoned and not seen_abandon:
            run.abandon_counts.abandon(f.ended_at)
        loop.guard.finished(run, item, loop.clock.time())
        loop.ivr_guard.finished(run, item)
        ring_end = f.answered_at if f.answered_at is not None else f.ended_at
        if seen_live:
            pass  # its ring phase was learnt when it was answered
        elif item.outcome not in (Outcome.INTERRUPTED, Outcome.UNKNOWN, Outcome.FAILED):
            run.estimator.observe_ring(
                f.ended_at,
                ring_end - f.originated_at,
                live=live,
                machine=item.outcome is Outcome.MACHINE,
            )
        for cb in loop.on_outcome:
            cb(run.spec.name, item)
        loop.wake()
