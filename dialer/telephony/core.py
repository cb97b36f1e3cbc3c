"""The dialer core service: AMI adapter + call tracker + Originate + attempt rows.

What the campaign runner (``dialer run``) calls::

    core = DialerCore(store, AMIClient.from_settings(settings.ami), agi_url="agi://...")
    core.rows.messages = dialplan_messages(settings.bank)  # ivr.messages; the floor does it
    core.on_finished(callback)          # FinishedAttempt, after its row is committed
    core.subscribe(listener)            # every AMI event (agents, queues), in wire order
    core.on_queue_status(listener)      # QueueStatus list after each (re)connect
    await core.start()                  # connects, logs in, resyncs, opens the ready gate
    status = await core.originate(attempt_id)   # row from hopper.start_attempt
    core.counts(), core.live_calls()    # live calls by state / in all
    core.ready, core.stats()            # the gate; counters for metrics
    await core.stop(grace_s=30)         # SIGTERM: no new dials, wait, the rest `interrupted`

Rules: an ``Originate`` is written to the socket at most once, after the attempt row holds its
``channel_id``; only when the ready gate is open (logged in *and* resynced after the last
reconnect). Every attempt handed to ``originate`` gets exactly one ``FinishedAttempt``.
All database work runs on one dedicated thread (no SQLite lock contention between our own
threads): Originate preparations that arrive together share one transaction, and tracker
updates are batched by one writer task, so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from dialer.errors import (
    AMIDisconnected,
    AMIError,
    DialerError,
    IllegalTransition,
)
from dialer.outcomes import AttemptState, Outcome
from dialer.store import Store
from dialer.telephony.ami.adapter import ActionResult, AMIClient
from dialer.telephony.ami.messages import Event
from dialer.telephony.batches import StoreBatches
from dialer.telephony.lag import EventLag
from dialer.telephony.originate import OriginateRequest
from dialer.telephony.rows import AttemptRows, FinishedAttempt, NotDialled
from dialer.telephony.subscription import EVENT_FILTERS, EventFilter, apply_filters
from dialer.telephony.tracker import (
    RESYNC_VARIABLES,
    CallTracker,
    Finished,
    Transition,
    Update,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


S_DIALING, S_RINGING = AttemptState.DIALING, AttemptState.RINGING
#: how long tracker updates gather before one batch writes them (clock seconds)
WRITE_BATCH_S = 0.05


class OriginateStatus(enum.StrEnum):
    QUEUED = "queued"  # Asterisk accepted it; events will follow
    REJECTED = "rejected"  # Response: Error - nothing was dialled; the attempt is `failed`
    IN_DOUBT = "in_doubt"  # connection lost or no reply: the resync will tell (never re-sent)


async def read_switch(
    client: AMIClient, following: bool
) -> tuple[ActionResult, dict[str, dict[str, str]], ActionResult]:
    """What a resync reads: the live channels, their variables (only when calls are followed:
    the VarSets we may have missed - AMD, IVR result, queue status, safe harbour) and the
    queues' members."""
    channels = await client.action("CoreShowChannels")
    variables: dict[str, dict[str, str]] = {}
    if following and channels.events:
        status = await client.action("Status", [("Variables", ",".join(RESYNC_VARIABLES))])
        for ev in status.events:
            uid = ev.headers.get("Uniqueid")
            if uid:
                variables[uid] = {k: v for k, v in ev.headers.variables().items() if v}
    queues = await client.action("QueueStatus")
    return channels, variables, queues


async def hang_up(client: AMIClient, channel_id: str) -> None:
    """Cancel one channel at the PBX (best effort)."""
    with contextlib.suppress(AMIError):
        await client.action("Hangup", [("Channel", channel_id)], timeout=2.0)


class DialerCore:
    def __init__(
        self,
        store: Store,
        client: AMIClient,
        *,
        agi_url: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
        tick_s: float = 0.5,
        ready_timeout_s: float = 30.0,
        flush_s: float = WRITE_BATCH_S,
        owner: str = "dialer",
        server: str = "default",
        trail: bool = False,
    ) -> None:
        """``clock`` and ``sleep`` are the time of the calls (epoch seconds) and a wait on it
        (the tick, the gathering of a write batch): wall time live, simulated time on the
        simulated floor. ``executor``: the one database thread (default: its own)."""
        self.store = store
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.rows = AttemptRows(
            store, agi_url=agi_url, now=self.now, owner=owner, server=server, trail=trail
        )
        self.tick_s = tick_s
        self.ready_timeout_s = ready_timeout_s
        self.tracker = CallTracker()
        self._finished_cbs: list[Callable[[FinishedAttempt], None]] = []
        self._transition_cbs: list[Callable[[Transition], None]] = []
        self._queue_status_cbs: list[Callable[[Sequence[Event]], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = StoreBatches(self.rows, flush_s, self._finished, sleep, executor)
        self._db = self.batches.db
        self.originates_sent = 0
        self.illegal_transitions = 0
        self.finished_count = 0
        self.last_resync: dict[str, int] = {}
        self.recovered = 0
        self._skew = 0.0  # PBX clock minus ours, from the last stamped event
        self.lag = EventLag()  # how far behind the switch its events are read
        self.event_filters: tuple[EventFilter, ...] = EVENT_FILTERS  # sent on every login
        self.events_filtered = False  # the switch took them all on the last login
        client.on_connect = functools.partial(resync, self)  # after every login
        client.add_listener(self._on_event)
        client.add_disconnect_listener(self._on_disconnect)

    # -- public API ------------------------------------------------------------------------

    @property
    def recovered_from_store(self) -> int:
        """Untraced calls whose outcome the IVR's record gave."""
        return self.rows.recovered_from_store

    @property
    def agi_url(self) -> str:
        return self.rows.agi_url

    @agi_url.setter
    def agi_url(self, value: str) -> None:
        self.rows.agi_url = value

    def on_transition(self, callback: Callable[[Transition], None]) -> None:
        """``callback(transition)`` for every state change of a followed call, as it happens
        (in the event loop, before the store has it): pacing learns of an answer at once."""
        self._transition_cbs.append(callback)

    def on_finished(self, callback: Callable[[FinishedAttempt], None]) -> None:
        """``callback(FinishedAttempt)`` once per attempt, after its row is committed."""
        self._finished_cbs.append(callback)

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Every AMI event in wire order (agent pool: ``pool.on_event(e.name, e.headers, t)``)."""
        self.client.add_listener(listener)

    def on_queue_status(self, listener: Callable[[Sequence[Event]], None]) -> None:
        """The ``QueueStatus`` list (QueueParams/QueueMember/QueueEntry) after each connect."""
        self._queue_status_cbs.append(listener)

    @property
    def ready(self) -> bool:
        return self.client.ready.is_set() and not self._stopping

    @property
    def stopping(self) -> bool:
        return self._stopping

    def counts(self) -> dict[str, int]:
        return {state.value: n for state, n in self.tracker.counts().items()}

    def now(self) -> float:
        """Time on the PBX's clock (our clock plus the offset its event stamps show), so a
        call's facts share one time base even when the two hosts' clocks differ."""
        return self.clock() + self._skew

    def live_calls(self) -> int:
        return len(self.tracker.calls)

    def stats(self) -> dict[str, Any]:
        return core_stats(self)

    async def start(self) -> None:
        """Recover this owner's open attempts on this switch from the store, then connect.

        A dialer that died (kill -9, power) left attempts with a ``channel_id`` and no
        outcome. They are followed again: the first resync after login keeps those whose
        channels are still live and ends the others ``unknown``. (A worker taking a switch
        over from a dead one first adopts its attempts: ``dialer.store.workers``.)
        """
        loop = asyncio.get_running_loop()
        open_calls = await loop.run_in_executor(self._db, self.rows.open_attempts)
        for attempt_id, channel_id, other, plan, originated in open_calls:
            if attempt_id not in self.tracker.calls:
                self.tracker.register(
                    attempt_id, channel_id, other_channel_id=other, plan=plan, now=originated
                )
                self.recovered += 1
        if open_calls:
            log.warning("recovered %d open attempts; the first resync decides", len(open_calls))
            self.tracker.mark_disconnected(self.now())
            self._idle.clear()
        self._tasks = [
            asyncio.create_task(self.batches.writer(), name="dialer-core-writer"),
            asyncio.create_task(self._ticker(), name="dialer-core-ticker"),
        ]
        await self.client.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        await self.client.wait_ready(self.ready_timeout_s if timeout is None else timeout)

    async def originate(
        self,
        attempt_id: int,
        *,
        before_send: Callable[[], Awaitable[None]] | None = None,
        on_followed: Callable[[], None] | None = None,
        prepared: OriginateRequest | NotDialled | None = None,
        may_send: Callable[[], str | None] | None = None,
    ) -> OriginateStatus:
        """Dial an attempt whose row exists (``hopper.start_attempt``). Sent once, never again.

        Waits for the ready gate (raises ``AMIError`` after ``ready_timeout_s``; the row is
        then ended ``failed`` so it is never left open). ``before_send`` is awaited once the
        row is prepared (or ``prepared``: committed with it, ``AttemptRows.prepare_started``),
        right before the gate: the runner's ``calls_per_second`` pacer, so the pace holds where
        the Originate leaves. ``on_followed`` is called once the tracker follows the call
        (pacing counts it from then on), before the Originate leaves; never if not dialled.
        ``may_send``, asked last (no await before the write): a reason it ends ``failed``."""
        if self._stopping and prepared is None:  # (a prepared row is ended below)
            raise DialerError("the dialer is stopping: no new calls")
        req = prepared or await self.batches.prepare(attempt_id)
        if isinstance(req, NotDialled):
            return not_dialled(self, attempt_id, req)
        if before_send is not None:
            await before_send()
        deadline = time.monotonic() + self.ready_timeout_s
        # the gate is set exactly while the session is ready (cleared with the socket's loss)
        while not self.client.ready.is_set() or self._stopping:
            remaining = deadline - time.monotonic()
            if self._stopping or remaining <= 0:
                # never sent: close the row now so it is not left open
                now = self.now()
                follow(self.tracker, req, now)
                self._apply(self.tracker.originate_rejected(attempt_id, "AMI not ready", now))
                if self._stopping:
                    return OriginateStatus.REJECTED
                raise AMIError(f"AMI not ready after {self.ready_timeout_s} s")
            with contextlib.suppress(AMIError):
                await self.client.wait_ready(remaining)
        # from here to the write there is no await: the gate cannot close in between
        if may_send is not None and (refused := may_send()) is not None:
            return not_dialled(self, attempt_id, NotDialled(Outcome.FAILED, refused))
        follow(self.tracker, req, self.now())
        if on_followed is not None:
            on_followed()
        self._idle.clear()
        self.originates_sent += 1
        try:
            result = await self.client.action("Originate", req.fields, action_id=req.action_id)
        except AMIDisconnected:
            return OriginateStatus.IN_DOUBT
        except AMIError:
            log.warning("attempt %s: Originate unanswered; the resync will tell", attempt_id)
            return OriginateStatus.IN_DOUBT
        if not result.response.ok:
            self._apply(
                self.tracker.originate_rejected(attempt_id, result.response.message, self.now())
            )
            return OriginateStatus.REJECTED
        return OriginateStatus.QUEUED

    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the core's one database thread: SQLite's single writer never
        waits on a lock held by another of our threads (its busy handler sleeps up to 100 ms)."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def stop(self, grace_s: float = 30.0, *, hangup_unanswered: bool = True) -> None:
        """SIGTERM semantics: no new dials; live calls get ``grace_s`` to end by themselves;
        the rest are recorded ``interrupted``; those still ringing are then cancelled at the
        PBX, while an answered call is left to finish in Asterisk (cutting off a customer
        mid-conversation is worse than losing sight of the end of the call)."""
        self._stopping = True
        deadline = time.monotonic() + grace_s
        while self.tracker.calls and time.monotonic() < deadline:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        left = list(self.tracker.calls.values())
        ringing = [c.channel_id for c in left if c.state in (S_DIALING, S_RINGING)]
        for call in left:  # recorded first: the events of our own cancels must not decide
            self._apply(
                self.tracker.end(call.attempt_id, Outcome.INTERRUPTED, self.now(), "dialer stopped")
            )
        if hangup_unanswered and ringing and self.client.connected:
            await asyncio.gather(*(hang_up(self.client, c) for c in ringing))
        await self._flush()
        async with self.batches.flush_lock:  # never cancel the writer in the middle of a batch
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        await self._flush()
        await self.client.close()
        self._db.shutdown(wait=True)

    def give_up(self, reason: str) -> int:
        """The switch is gone for longer than anyone waits: every call followed on it ends
        ``unknown`` now (a later resync ignores them). Returns how many ended."""
        calls = list(self.tracker.calls)
        now = self.now()
        for attempt_id in calls:
            self._apply(self.tracker.end(attempt_id, Outcome.UNKNOWN, now, reason))
        return len(calls)

    # -- AMI side --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Asterisk stamps events (timestampevents=yes): the call's facts use its time, not
        # the moment we happened to read them (without a stamp, our clock); how late we read
        # it is the lag pacing watches
        stamp = event.timestamp
        if stamp is None:
            stamp = self.now()
        else:
            read_at = self.clock()
            self.lag.observe(stamp, read_at)
            self._skew = stamp - read_at
        try:
            updates = self.tracker.feed(event, stamp)
        except IllegalTransition as exc:
            # Asterisk said something our table does not allow: keep the call, log the fact
            self.illegal_transitions += 1
            log.warning("tracker: %s (event %s)", exc, event.name)
            return
        if updates:
            self._apply(updates)

    def _on_disconnect(self) -> None:
        self.tracker.mark_disconnected(self.now())

    # -- store side ------------------------------------------------------------------------

    def _apply(self, updates: list[Update]) -> None:
        if self._transition_cbs:
            for u in updates:
                if isinstance(u, Transition):
                    for cb in self._transition_cbs:
                        try:
                            cb(u)
                        except Exception:
                            log.exception("transition listener failed")
        self.batches.add(updates)

    async def _flush(self) -> None:
        await self.batches.flush()

    def _finished(self, done: list[FinishedAttempt]) -> None:
        for item in done:
            self.finished_count += 1
            for cb in self._finished_cbs:
                try:
                    cb(item)
                except Exception:
                    log.exception("finished-attempt callback failed")
        if not self.tracker.calls:
            self._idle.set()

    async def _ticker(self) -> None:
        while True:
            await self.sleep(self.tick_s)
            updates = self.tracker.tick(self.now())
            if updates:
                self._apply(updates)


def not_dialled(core: DialerCore, attempt_id: int, why: NotDialled) -> OriginateStatus:
    """End an attempt whose Originate never leaves (``why``: its outcome and reason)."""
    core.tracker.register(attempt_id, f"not-dialled-{attempt_id}", now=core.now())
    core._apply(core.tracker.end(attempt_id, why.outcome, core.now(), why.reason))
    return OriginateStatus.REJECTED


def follow(tracker: CallTracker, req: OriginateRequest, now: float) -> None:
    """The tracker follows the call of ``req`` from now (before its Originate leaves)."""
    tracker.register(
        req.attempt_id,
        req.channel_id,
        other_channel_id=req.other_channel_id,
        action_id=req.action_id,
        plan=req.plan,
        now=now,
    )


def core_stats(core: DialerCore) -> dict[str, Any]:
    """A core's counters for metrics and the console (all monotonic except the gauges)."""
    return {
        "ami_ready": core.client.ready.is_set(),
        "ami_connections": core.client.connections,
        "ami_events": core.client.events_in,
        "ami_bytes": core.client.bytes_in,
        "ami_events_filtered": core.events_filtered,
        "ami_last_error": core.client.last_error,
        "event_lag_s": core.lag.lag_s(core.clock()),
        "originates_sent": core.originates_sent,
        "finished": core.finished_count,
        "illegal_transitions": core.illegal_transitions,
        "write_errors": core.batches.write_errors,
        "recovered": core.recovered,
        "recovered_from_store": core.recovered_from_store,
        "live_calls": len(core.tracker.calls),
        "calls_by_state": core.counts(),
        "last_resync": dict(core.last_resync),
    }


#: a restarted switch answers AMI before app_queue has loaded its queues; a QueueStatus listing
#: none where the last login listed some is read again this often, at most this many times
QUEUES_BOOT_RETRY_S = 0.5
QUEUES_BOOT_TRIES = 20


def _queue_count(queues: ActionResult) -> int:
    return sum(e.name == "QueueParams" for e in queues.events)


async def queues_after_boot(client: AMIClient, queues: ActionResult, before: int) -> ActionResult:
    """The queues' members once the switch lists its queues again (a restart's boot): without
    this the agent pool stayed empty after the reconnect and the campaign never dialled on."""
    tries = 0
    while before and not _queue_count(queues) and tries < QUEUES_BOOT_TRIES:
        await asyncio.sleep(QUEUES_BOOT_RETRY_S)
        queues = await client.action("QueueStatus")
        tries += 1
    if tries:
        log.warning("switch listed its queues again after %d QueueStatus reads", tries + 1)
    return queues


async def resync(core: DialerCore, client: AMIClient) -> None:
    """After every login, before the ready gate opens: the session's event filters (what the
    service never reads stays at the switch); then what the switch has now reconciles the
    calls the core follows (ending those gone without a trace), and the queue listeners get
    the members."""
    core.events_filtered = await apply_filters(client, core.event_filters)
    channels, variables, queues = await read_switch(client, bool(core.tracker.calls))
    queues = await queues_after_boot(client, queues, core.last_resync.get("queues", 0))
    updates = core.tracker.reconcile(channels.events, core.now(), variables)
    finished = sum(isinstance(u, Finished) for u in updates)
    core.last_resync = {
        "channels": len(channels.events),
        "ended": finished,
        "followed": len(core.tracker.calls),
        "queues": _queue_count(queues),
    }
    if updates:
        log.info("resync: %s", core.last_resync)
        core._apply(updates)
    for cb in core._queue_status_cbs:
        try:
            cb(queues.events)
        except Exception:
            log.exception("queue-status listener failed")
