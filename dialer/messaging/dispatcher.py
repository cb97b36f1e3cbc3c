"""Dispatchers: due messages out through their channel's gateway, at the gateway's pace.

``Dispatcher`` holds the rules every channel keeps; ``SmsDispatcher`` hands over to an
``SmsGateway`` (Kannel), ``EmailDispatcher`` to the SMTP relay. Each message is claimed
(``queued`` -> ``submitting``, committed) right before it is handed over, so a crash strands
at most the messages in flight (``in_flight``: 4 for SMS, 1 for e-mail), and those are marked
*in doubt* on restart rather than sent twice. When the gateway is unavailable the message
goes back to ``queued`` with a delay and the rest of the batch waits for the next round.
The clock and the gateway are injected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session

from dialer.errors import RemoteProtocolError
from dialer.messaging import email, outbox
from dialer.messaging.config import DispatchSettings, EmailSettings, SmsSettings
from dialer.messaging.errors import (
    GatewayInDoubt,
    GatewayUnavailable,
    MessageRejected,
    RecipientRefused,
)
from dialer.messaging.kannel import OutboundSms, SmsGateway
from dialer.messaging.lifecycle import MsgEvent, MsgState
from dialer.messaging.sms import Encoding
from dialer.messaging.smtp import MailSender
from dialer.messaging.templates import Channel, MessagePurpose, Rendered
from dialer.messaging.throttle import Throttle
from dialer.privacy import mask_phone
from dialer.store import Store
from dialer.store.messages import Message

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Epoch seconds and a sleep (the runner's clocks have this shape)."""

    def time(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class HandOver:
    event: MsgEvent
    reason: str | None = None
    bad_address: bool = False  # refused because of the address: flag it


@dataclass
class DispatchStats:
    accepted: int = 0
    unavailable: int = 0
    in_doubt: int = 0
    rejected: int = 0
    suppressed: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    """The channel-independent loop: due -> claim -> pace -> hand over -> record."""

    channel: Channel
    clears_doubts = False  # only where the network acknowledges messages in order

    def __init__(
        self,
        store: Store,
        cfg: DispatchSettings,
        *,
        rate: float,
        clock: Clock | None = None,
        on_submitted: Callable[[int, MsgState], None] | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.clock: Clock = clock or WallClock()
        self.throttle = Throttle(rate, burst=1.0)
        self.stats = DispatchStats()
        self._on_submitted = on_submitted

    async def _hand_over(self, c: outbox.Claimed) -> HandOver:
        raise NotImplementedError

    def _bad_address(self, s: Session, c: outbox.Claimed, reason: str | None) -> None:
        """The gateway refused the address for good (e-mail flags it)."""

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def recover(self) -> int:
        with self.store.session() as s:
            n = outbox.recover(s, self.channel, self._now())
        if n:
            log.warning(
                "%d %s were being handed over at the last stop: now in doubt", n, self.channel.value
            )
        return n

    def _due_ids(self) -> list[int]:
        """Due messages: DNC-blocked ones are suppressed here, the rest returned in order."""
        with self.store.session() as s:
            return outbox.due_messages(s, self.channel, self._now(), self.cfg.batch)

    def _retry_at(self, tries: int) -> dt.datetime:
        delays = self.cfg.retry_s
        return self._now() + dt.timedelta(seconds=delays[min(tries, len(delays) - 1)])

    async def _pace(self, parts: int) -> None:
        wait = self.throttle.wait(self.clock.time(), parts)
        if wait > 0:
            await self.clock.sleep(wait)
        self.throttle.take(self.clock.time(), parts)

    def _record(self, s: Session, c: outbox.Claimed, answer: HandOver) -> MsgState:
        event, reason = answer.event, answer.reason
        row = s.get(Message, c.id)
        tries = row.tries if row is not None else 0
        retry_at = self._retry_at(tries) if event is MsgEvent.UNAVAILABLE else None
        state = outbox.record_submit(s, c.id, event, self._now(), retry_at=retry_at, reason=reason)
        counter = {
            MsgEvent.ACCEPTED: "accepted",
            MsgEvent.UNAVAILABLE: "unavailable",
            MsgEvent.NO_ANSWER: "in_doubt",
            MsgEvent.REJECTED: "rejected",
        }[event]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if answer.bad_address:
            self._bad_address(s, c, reason)
        if event is not MsgEvent.ACCEPTED:
            shown = mask_phone(c.address) if self.channel is Channel.SMS else c.address
            log.warning(
                "%s %s to %s: %s (%s)", self.channel.value, c.uid, shown, event.value, reason
            )
        if self._on_submitted is not None:
            self._on_submitted(c.id, state)
        return state

    async def dispatch_batch(self) -> tuple[int, bool]:
        """Hand over what is due now: (how many went to the gateway, is it down).

        A message is claimed and committed, paced, then handed over; up to
        ``cfg.in_flight`` hand-overs run at once (a gateway answers each in some
        milliseconds, the link's throughput is what paces). Once the gateway is found down
        nothing more is claimed this round; what is in flight finishes and is recorded."""
        done = 0
        down = False
        slots = asyncio.Semaphore(self.cfg.in_flight)
        running: set[asyncio.Task[None]] = set()

        async def one(c: outbox.Claimed) -> None:
            nonlocal down
            try:
                answer = await self._hand_over(c)
                with self.store.session() as s:
                    self._record(s, c, answer)
                if answer.event is MsgEvent.UNAVAILABLE:
                    down = True
            finally:
                slots.release()

        for message_id in self._due_ids():
            await slots.acquire()
            if down:
                slots.release()
                break
            with self.store.session() as s:
                c = outbox.claim_one(s, message_id, self._now(), daily_cap=self.cfg.daily_cap)
            if c is None:  # suppressed or taken meanwhile
                slots.release()
                continue
            await self._pace(c.parts)
            done += 1
            task = asyncio.create_task(one(c))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
        return done, down

    def settle_doubts(self) -> tuple[int, int]:
        """(cleared for another try, given up as unknown)."""
        now = self._now()
        with self.store.session() as s:
            cleared = (
                outbox.clear_doubts(
                    s, self.channel, now, dt.timedelta(seconds=self.cfg.doubt_grace_s)
                )
                if self.clears_doubts
                else 0
            )
            unknown = outbox.expire_doubts(s, now, dt.timedelta(seconds=self.cfg.doubt_timeout_s))
        return cleared, unknown

    async def settle_idle(self) -> int:
        """Doubts nothing later can clear: ask the gateway whether it still holds anything."""
        return 0

    async def run(self, stop: asyncio.Event) -> None:
        self.recover()
        while not stop.is_set():
            handed, down = await self.dispatch_batch()
            self.settle_doubts()
            await self.settle_idle()
            if handed == 0 or down:
                try:
                    await asyncio.wait_for(stop.wait(), self.cfg.idle_poll_s)
                except TimeoutError:
                    pass


class SmsDispatcher(Dispatcher):
    channel = Channel.SMS
    clears_doubts = True  # Kannel keeps a route's messages in order and acks each

    def __init__(
        self,
        store: Store,
        gateway: SmsGateway,
        cfg: SmsSettings,
        *,
        clock: Clock | None = None,
        on_submitted: Callable[[int, MsgState], None] | None = None,
    ) -> None:
        super().__init__(store, cfg, rate=gateway.rate, clock=clock, on_submitted=on_submitted)
        self.gateway = gateway

    async def settle_idle(self) -> int:
        """A doubt at the end of the traffic has no later message to clear it: if bearerbox
        holds nothing and the doubt is older than the grace with no report, Kannel never
        took it (had it, its SMSC acknowledgement would have come by now)."""
        before = self._now() - dt.timedelta(seconds=self.cfg.doubt_grace_s)
        with self.store.session() as s:
            if not outbox.doubts_older_than(s, self.channel, before):
                return 0
        if await self.gateway.held() != 0:
            return 0
        with self.store.session() as s:
            n = outbox.clear_when_idle(s, self.channel, before, self._now())
        if n:
            log.warning("%d SMS in doubt cleared: the gateway holds nothing", n)
        return n

    async def _hand_over(self, c: outbox.Claimed) -> HandOver:
        msg = OutboundSms(c.uid, c.address, c.body, Encoding(c.encoding or "ucs2"), c.parts)
        return await _outcome(self.gateway.submit(msg))


class EmailDispatcher(Dispatcher):
    channel = Channel.EMAIL

    def __init__(
        self,
        store: Store,
        sender: MailSender,
        cfg: EmailSettings,
        *,
        bank_name: str,
        clock: Clock | None = None,
        on_submitted: Callable[[int, MsgState], None] | None = None,
    ) -> None:
        super().__init__(store, cfg, rate=sender.rate, clock=clock, on_submitted=on_submitted)
        self.sender = sender
        self.bank_name = bank_name

    async def _hand_over(self, c: outbox.Claimed) -> HandOver:
        marketing = c.purpose == MessagePurpose.MARKETING.value
        stored = Rendered("(stored)", Channel.EMAIL, marketing, c.body, c.subject or "", c.html)
        out = email.compose(
            stored, to=c.address, uid=c.uid, bank_name=self.bank_name, cfg=self.sender.cfg
        )
        return await _outcome(self.sender.send(out))

    def _bad_address(self, s: Session, c: outbox.Claimed, reason: str | None) -> None:
        outbox.flag_address(
            s,
            Channel.EMAIL,
            c.address,
            outbox.Flag.INVALID,
            reason=reason,
            source="smtp-rcpt",
            message_id=c.id,
        )


async def _outcome(handing: Awaitable[object]) -> HandOver:
    """A gateway's answer to one hand-over, as a lifecycle event."""
    try:
        await handing
    except GatewayUnavailable as exc:
        return HandOver(MsgEvent.UNAVAILABLE, str(exc))
    except (GatewayInDoubt, RemoteProtocolError) as exc:
        return HandOver(MsgEvent.NO_ANSWER, str(exc))
    except RecipientRefused as exc:
        return HandOver(MsgEvent.REJECTED, str(exc), bad_address=True)
    except MessageRejected as exc:
        return HandOver(MsgEvent.REJECTED, str(exc))
    return HandOver(MsgEvent.ACCEPTED)


__all__ = ["Clock", "DispatchStats", "Dispatcher", "EmailDispatcher", "SmsDispatcher", "WallClock"]
