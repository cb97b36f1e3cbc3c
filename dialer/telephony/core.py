"""The dialer core service: AMI adapter + call tracker + Originate + attempt rows.

What the campaign runner (``dialer run``) calls::

    core = DialerCore(store, AMIClient.from_settings(settings.ami), agi_url="agi://...")
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
import dataclasses
import datetime as dt
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from dialer.errors import (
    AMIDisconnected,
    AMIError,
    ConfigError,
    DialerError,
    IllegalTransition,
    LocalProtocolError,
    StoreError,
)
from dialer.lists import hopper
from dialer.lists.campaigns import spec_of
from dialer.outcomes import AttemptState, Outcome
from dialer.store import Store
from dialer.store.models import Attempt, CallEvent, Campaign, Contact, IvrSession
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.ami.messages import Event
from dialer.telephony.originate import OriginateRequest, build_originate
from dialer.telephony.tracker import (
    RESYNC_VARIABLES,
    CallPlan,
    CallTracker,
    Finished,
    IvrSay,
    Transition,
    Update,
    decide,
    decide_untraced,
)

log = logging.getLogger(__name__)


S_DIALING, S_RINGING = AttemptState.DIALING, AttemptState.RINGING
#: Failures of the database itself (locked, gone): the write is retried, not dropped.
StoreErrors = (OperationalError, StoreError)


class OriginateStatus(enum.StrEnum):
    QUEUED = "queued"  # Asterisk accepted it; events will follow
    REJECTED = "rejected"  # Response: Error - nothing was dialled; the attempt is `failed`
    IN_DOUBT = "in_doubt"  # connection lost or no reply: the resync will tell (never re-sent)


@dataclasses.dataclass(frozen=True, slots=True)
class NotDialled:
    """An attempt that cannot be dialled at all (a number that is not E.164, a bad campaign
    template): it is ended at once with this outcome instead of being left open."""

    outcome: Outcome
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class FinishedAttempt:
    attempt_id: int
    outcome: Outcome
    facts: Finished
    next_attempt_at: dt.datetime | None


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _preload(s: Any, attempt_ids: Any) -> list[Any]:
    """Load attempts, their contacts and campaigns into the session in three queries.

    The caller keeps the returned list alive: the identity map holds objects weakly, and
    ``s.get()`` only skips its query while they are still in it.
    """
    ids = list(attempt_ids)
    if not ids:
        return []
    rows = list(s.scalars(select(Attempt).where(Attempt.id.in_(ids))).all())
    contact_ids = {r.contact_id for r in rows if r.contact_id}
    campaign_ids = {r.campaign_id for r in rows}
    keep: list[Any] = rows
    if contact_ids:
        keep += s.scalars(select(Contact).where(Contact.id.in_(contact_ids))).all()
    if campaign_ids:
        keep += s.scalars(select(Campaign).where(Campaign.id.in_(campaign_ids))).all()
    return keep


class DialerCore:
    def __init__(
        self,
        store: Store,
        client: AMIClient,
        *,
        agi_url: str,
        clock: Callable[[], float] = time.time,
        tick_s: float = 0.5,
        ready_timeout_s: float = 30.0,
        flush_s: float = 0.05,
        owner: str = "dialer",
        server: str = "default",
        trail: bool = False,
    ) -> None:
        self.store = store
        self.owner = owner  # the worker id: this core follows the attempts it owns
        self.server = server  # the switch's name (settings ``asterisk[].name``)
        self.trail = trail  # write each transition as a CallEvent row
        self.client = client
        self.agi_url = agi_url
        self.clock = clock
        self.tick_s = tick_s
        self.ready_timeout_s = ready_timeout_s
        self.flush_s = flush_s
        self.tracker = CallTracker()
        self._finished_cbs: list[Callable[[FinishedAttempt], None]] = []
        self._queue_status_cbs: list[Callable[[Sequence[Event]], None]] = []
        self._writes: list[Update] = []
        self._write_wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dialer-db")
        self._prep_queue: list[tuple[int, asyncio.Future[OriginateRequest | NotDialled]]] = []
        self._prep_task: asyncio.Task[None] | None = None
        self._specs: dict[tuple[Any, ...], Any] = {}
        self.originates_sent = 0
        self.illegal_transitions = 0
        self.finished_count = 0
        self.last_resync: dict[str, int] = {}
        self.recovered = 0
        self.recovered_from_store = 0  # untraced calls whose outcome the IVR's record gave
        self._skew = 0.0  # PBX clock minus ours, from the last stamped event
        self.write_errors = 0
        client.on_connect = self._resync
        client.add_listener(self._on_event)
        client.add_disconnect_listener(self._on_disconnect)

    # -- public API ------------------------------------------------------------------------

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
        """Counters for metrics and the console (all monotonic except the gauges)."""
        return {
            "ami_ready": self.client.ready.is_set(),
            "ami_connections": self.client.connections,
            "ami_events": self.client.events_in,
            "ami_bytes": self.client.bytes_in,
            "ami_last_error": self.client.last_error,
            "originates_sent": self.originates_sent,
            "finished": self.finished_count,
            "illegal_transitions": self.illegal_transitions,
            "write_errors": self.write_errors,
            "recovered": self.recovered,
            "recovered_from_store": self.recovered_from_store,
            "live_calls": len(self.tracker.calls),
            "calls_by_state": self.counts(),
            "last_resync": dict(self.last_resync),
        }

    async def start(self) -> None:
        """Recover this owner's open attempts on this switch from the store, then connect.

        A dialer that died (kill -9, power) left attempts with a ``channel_id`` and no
        outcome. They are followed again: the first resync after login keeps those whose
        channels are still live and ends the others ``unknown``. (A worker taking a switch
        over from a dead one first adopts its attempts: ``dialer.store.workers``.)
        """
        loop = asyncio.get_running_loop()
        open_calls = await loop.run_in_executor(self._db, self._open_attempts)
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
            asyncio.create_task(self._writer(), name="dialer-core-writer"),
            asyncio.create_task(self._ticker(), name="dialer-core-ticker"),
        ]
        await self.client.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        await self.client.wait_ready(self.ready_timeout_s if timeout is None else timeout)

    async def originate(
        self, attempt_id: int, *, before_send: Callable[[], Awaitable[None]] | None = None
    ) -> OriginateStatus:
        """Dial an attempt whose row exists (``hopper.start_attempt``). Sent once, never again.

        Waits for the ready gate (raises ``AMIError`` after ``ready_timeout_s``; the row is
        then ended ``failed`` so it is never left open). ``before_send`` is awaited once the
        row is prepared, right before the gate: the runner's ``calls_per_second`` pacer, so
        the pace holds where the Originate leaves, not where it was decided.
        """
        if self._stopping:
            raise DialerError("the dialer is stopping: no new calls")
        req = await self._prepare_batched(attempt_id)
        if isinstance(req, NotDialled):
            self.tracker.register(attempt_id, f"not-dialled-{attempt_id}", now=self.now())
            self._apply(self.tracker.end(attempt_id, req.outcome, self.now(), req.reason))
            return OriginateStatus.REJECTED
        if before_send is not None:
            await before_send()
        deadline = time.monotonic() + self.ready_timeout_s
        # the gate is set exactly while the session is ready (cleared with the socket's loss)
        while not self.client.ready.is_set() or self._stopping:
            remaining = deadline - time.monotonic()
            if self._stopping or remaining <= 0:
                # never sent: close the row now so it is not left open
                now = self.now()
                self._register(req, now)
                self._apply(self.tracker.originate_rejected(attempt_id, "AMI not ready", now))
                if self._stopping:
                    return OriginateStatus.REJECTED
                raise AMIError(f"AMI not ready after {self.ready_timeout_s} s")
            with contextlib.suppress(AMIError):
                await self.client.wait_ready(remaining)
        # from here to the write there is no await: the gate cannot close in between
        self._register(req, self.now())
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

    def _register(self, req: OriginateRequest, now: float) -> None:
        self.tracker.register(
            req.attempt_id,
            req.channel_id,
            other_channel_id=req.other_channel_id,
            action_id=req.action_id,
            plan=req.plan,
            now=now,
        )

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

            async def cancel(channel_id: str) -> None:
                with contextlib.suppress(AMIError):
                    await self.client.action("Hangup", [("Channel", channel_id)], timeout=2.0)

            await asyncio.gather(*(cancel(c) for c in ringing))
        await self._flush()
        async with self._flush_lock:  # never cancel the writer in the middle of a batch
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        await self._flush()
        await self.client.close()
        self._db.shutdown(wait=True)

    # -- AMI side --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Asterisk stamps events (timestampevents=yes): the call's facts use its time, not
        # the moment we happened to read them; without a stamp, our clock.
        stamp = event.headers.get_exact("Timestamp")
        now = self.now()
        if stamp:
            try:
                now = float(stamp)
            except ValueError:
                pass
            else:
                self._skew = now - self.clock()
        try:
            updates = self.tracker.feed(event, now)
        except IllegalTransition as exc:
            # Asterisk said something our table does not allow: keep the call, log the fact
            self.illegal_transitions += 1
            log.warning("tracker: %s (event %s)", exc, event.name)
            return
        if updates:
            self._apply(updates)

    def _on_disconnect(self) -> None:
        self.tracker.mark_disconnected(self.now())

    async def _resync(self, client: AMIClient) -> None:
        """Runs after every login, before the ready gate opens."""
        channels = await client.action("CoreShowChannels")
        variables: dict[str, dict[str, str]] = {}
        if self.tracker.calls and channels.events:
            # what VarSets we may have missed: AMD, IVR result, queue status, safe harbour
            status = await client.action("Status", [("Variables", ",".join(RESYNC_VARIABLES))])
            for ev in status.events:
                uid = ev.headers.get("Uniqueid")
                if uid:
                    variables[uid] = {k: v for k, v in ev.headers.variables().items() if v}
        queues = await client.action("QueueStatus")
        updates = self.tracker.reconcile(channels.events, self.now(), variables)
        finished = sum(isinstance(u, Finished) for u in updates)
        self.last_resync = {
            "channels": len(channels.events),
            "ended": finished,
            "followed": len(self.tracker.calls),
        }
        if updates:
            log.info("resync: %s", self.last_resync)
            self._apply(updates)
        for cb in self._queue_status_cbs:
            try:
                cb(queues.events)
            except Exception:
                log.exception("queue-status listener failed")

    # -- store side ------------------------------------------------------------------------

    def _spec(self, campaign: Campaign) -> Any:
        key = (campaign.id, campaign.updated_at, campaign.state)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = spec_of(campaign)
        return spec

    def _open_attempts(self) -> list[tuple[int, str, str | None, CallPlan, float]]:
        out = []
        with self.store.session() as s:
            rows = s.scalars(
                select(Attempt).where(
                    Attempt.outcome.is_(None),
                    Attempt.server == self.server,
                    Attempt.owner == self.owner,
                    Attempt.channel_id.is_not(None),
                )
            ).all()
            for row in rows:
                detail = row.detail or {}
                if row.channel_id is None:
                    continue
                campaign = s.get(Campaign, row.campaign_id)
                if campaign is None:
                    continue
                spec = self._spec(campaign)
                plan = CallPlan(
                    amd=spec.amd,
                    flow=spec.flow,
                    queue=spec.queue,
                    ring_timeout_s=spec.pacing.ring_timeout_s,
                )
                originated = (row.originated_at or row.created_at).timestamp()
                out.append(
                    (row.id, row.channel_id, detail.get("other_channel_id"), plan, originated)
                )
        return out

    async def _prepare_batched(self, attempt_id: int) -> OriginateRequest | NotDialled:
        fut: asyncio.Future[OriginateRequest | NotDialled] = (
            asyncio.get_running_loop().create_future()
        )
        self._prep_queue.append((attempt_id, fut))
        if self._prep_task is None or self._prep_task.done():
            self._prep_task = asyncio.create_task(self._prep_runner(), name="dialer-core-prep")
        return await fut

    async def _prep_runner(self) -> None:
        loop = asyncio.get_running_loop()
        while self._prep_queue:
            batch, self._prep_queue = self._prep_queue, []
            try:
                results = await loop.run_in_executor(
                    self._db, self._prepare_many, [a for a, _ in batch]
                )
            except Exception as exc:  # the transaction itself failed: nobody was prepared
                log.exception("preparing %d Originates failed", len(batch))
                results = [exc] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _prepare_many(
        self, attempt_ids: list[int]
    ) -> list[OriginateRequest | NotDialled | Exception]:
        """Build the Originates and write their ids to the rows, in one transaction."""
        out: list[OriginateRequest | NotDialled | Exception] = []
        with self.store.session() as s, s.no_autoflush:
            _keep = _preload(s, attempt_ids)  # s.get() below then hits the identity map
            for attempt_id in attempt_ids:
                try:
                    out.append(self._prepare_one(s, attempt_id))
                except LocalProtocolError as exc:  # the number is not E.164
                    out.append(NotDialled(Outcome.INVALID_NUMBER, f"not dialled: {exc}"))
                except ConfigError as exc:  # the campaign cannot produce a dial string
                    out.append(NotDialled(Outcome.FAILED, f"not dialled: {exc}"))
                except DialerError as exc:
                    out.append(exc)
        return out

    def _prepare_one(self, s: Any, attempt_id: int) -> OriginateRequest:
        attempt = s.get(Attempt, attempt_id)
        if attempt is None:
            raise DialerError(f"no attempt {attempt_id}")
        if attempt.outcome is not None or attempt.channel_id is not None:
            raise DialerError(f"attempt {attempt_id} was already dialled")
        campaign = s.get(Campaign, attempt.campaign_id)
        if campaign is None:
            raise DialerError(f"attempt {attempt_id}: campaign gone")
        contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
        req = build_originate(
            attempt_id=attempt_id,
            phone=attempt.phone,
            spec=spec_of(campaign),
            language=contact.language if contact else None,
            agi_url=self.agi_url,
        )
        attempt.channel_id = req.channel_id
        attempt.state = AttemptState.DIALING.value
        attempt.originated_at = _ts(self.now())
        attempt.owner = self.owner
        attempt.server = self.server
        attempt.detail = {**(attempt.detail or {}), "other_channel_id": req.other_channel_id}
        return req

    def _apply(self, updates: list[Update]) -> None:
        self._writes.extend(updates)
        self._write_wakeup.set()

    async def _writer(self) -> None:
        while True:
            await self._write_wakeup.wait()
            await asyncio.sleep(self.flush_s)  # gather a batch
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if not self._writes:
            return
        batch, self._writes = self._writes, []
        self._write_wakeup.clear()
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self._db, self._write_batch, batch)
        except Exception:
            # one bad update must not hold back the others: write them one by one, and
            # retry later only what failed for a reason other than the update itself
            log.exception("writing %d tracker updates failed; one by one", len(batch))
            done = []
            retry: list[Update] = []
            for u in batch:
                try:
                    done += await loop.run_in_executor(self._db, self._write_batch, [u])
                except StoreErrors:
                    retry.append(u)  # the database is away: keep it for later
                except Exception:
                    self.write_errors += 1
                    log.exception("attempt %s: update dropped: %r", u.attempt_id, u)
            if retry:
                self._writes[:0] = retry
                self._write_wakeup.set()
                await asyncio.sleep(0.5)
        for item in done:
            self.finished_count += 1
            for cb in self._finished_cbs:
                try:
                    cb(item)
                except Exception:
                    log.exception("finished-attempt callback failed")
        if not self.tracker.calls:
            self._idle.set()

    def _write_batch(self, batch: list[Update]) -> list[FinishedAttempt]:
        done: list[FinishedAttempt] = []
        states: dict[int, AttemptState] = {}
        with self.store.session() as s, s.no_autoflush:
            _keep = _preload(s, {u.attempt_id for u in batch})
            for u in batch:
                if isinstance(u, Transition):
                    if u.after is not AttemptState.ENDED:
                        states[u.attempt_id] = u.after
                    if self.trail and s.get(Attempt, u.attempt_id) is not None:
                        s.add(
                            CallEvent(
                                attempt_id=u.attempt_id,
                                at=_ts(u.at),
                                kind=u.after.value,
                                detail={"signal": u.signal.value, "from": u.before.value},
                            )
                        )
                    continue
                states.pop(u.attempt_id, None)
                item = self._finish_row(s, u)
                if item is not None:
                    done.append(item)
            for attempt_id, state in states.items():
                row = s.get(Attempt, attempt_id)
                if row is not None and row.outcome is None:
                    row.state = state.value
        return done

    @staticmethod
    def _ivr_say(s: Any, f: Finished) -> IvrSay | None:
        """The IVR session's own record of the call, when the IVR ran one (not a test)."""
        session = s.scalars(
            select(IvrSession)
            .where(IvrSession.attempt_id == f.attempt_id, IvrSession.is_test.is_(False))
            .order_by(IvrSession.id.desc())
        ).first()
        return None if session is None else IvrSay(session.status, session.result)

    def _finish_row(self, s: Any, f: Finished) -> FinishedAttempt | None:
        attempt = s.get(Attempt, f.attempt_id)
        if attempt is None:
            log.error("finished attempt %s has no row", f.attempt_id)
            return None
        outcome, result = f.outcome, f.result
        if f.facts is not None:
            verdict = decide(f.facts, self._ivr_say(s, f))
            outcome, result = verdict.outcome, verdict.result
        elif outcome is Outcome.UNKNOWN:  # no trace on the switch: the store may know
            verdict = decide_untraced(self._ivr_say(s, f))
            outcome, result = verdict.outcome, verdict.result or result
            if outcome is not Outcome.UNKNOWN:
                self.recovered_from_store += 1
        detail = dict(attempt.detail or {})
        detail.update({"end_reason": f.end_reason, **f.detail})
        if f.resynced:
            detail["resynced"] = True
        if f.ringing_at is not None:  # no column for it; pacing's ring-time estimate reads it
            detail["ringing_at"] = f.ringing_at
        facts = hopper.AttemptFacts(
            result=result,
            live_answer=f.live_answer,
            answered_at=_ts(f.answered_at),
            greeting_end_at=_ts(f.greeting_end_at),
            queued_at=_ts(f.queued_at),
            bridged_at=_ts(f.bridged_at),
            message_played_at=_ts(f.message_played_at),
            ended_at=_ts(f.ended_at),
            originate_reason=f.originate_reason,
            hangup_cause=f.hangup_cause,
            amd_status=f.amd_status,
            queue=f.queue or attempt.queue,
            agent=f.agent,
            detail=detail,
        )
        try:
            ended = dt.datetime.fromtimestamp(f.ended_at, dt.UTC)
            decision = hopper.finish_attempt(s, attempt, outcome, ended, facts)
        except IllegalTransition:
            log.error("attempt %s already had an outcome; %s ignored", f.attempt_id, outcome)
            return None
        return FinishedAttempt(f.attempt_id, outcome, f, decision.next_attempt_at)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            updates = self.tracker.tick(self.now())
            if updates:
                self._apply(updates)
