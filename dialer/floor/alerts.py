"""The alert desk: alerts from the bank's systems, dialled ahead of every campaign.

Why it is shaped like this: the desk is its own task beside the campaign loop, woken with it
(and at once by a new alert), so an alert never waits behind a campaign's pass (a lease, a
hopper explanation over a large list). Each pass settles what ended (calls, SMS replies,
deadlines) and starts the due rungs of open alerts, most urgent first, on the channels free
under the floor's channel limit. While any due alert waits for a channel, and while a pass
woken by a new alert runs, the campaigns dial nothing (``reserved``), so the next free
channel is the alert's. Its calls leave at once (no campaign pacer), through the same dialer core.
The store holds the whole state of every alert (``dialer.lists.alerts``): a restart, or
another worker, carries on where this one stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dialer.errors import DialerError
from dialer.floor.webhooks import WebhookSender
from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import AlertsConfig
from dialer.messaging import outbox
from dialer.messaging.compose import render_sms
from dialer.messaging.templates import MessagePurpose, TemplateLibrary
from dialer.settings import BankSettings
from dialer.telephony.core import FinishedAttempt, OriginateStatus
from dialer.telephony.originate import OriginateRequest
from dialer.telephony.rows import NotDialled

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignLoop

log = logging.getLogger(__name__)

#: how often (floor seconds) a pass also counts the open and overdue alerts (for /metrics)
COUNT_EVERY_S = 5.0


class AlertSms:
    """Renders an alert's SMS rung from the template library and queues it (the messaging
    dispatcher hands it to the gateway; a keyword reply comes back on the message)."""

    def __init__(self, library: TemplateLibrary, bank: BankSettings) -> None:
        self.library = library
        self.bank = bank

    def __call__(self, session: Session, order: store_alerts.SmsOrder) -> int:
        template = self.library.get(order.template)
        values = {"name": order.name, **order.values}
        preview = render_sms(
            template, values, sensitive=set(), bank=self.bank, language=order.language
        )
        row = outbox.enqueue_sms(
            session,
            to=order.number,
            text=preview.text,
            purpose=MessagePurpose.SERVICE,
            campaign_id=order.campaign_id,
            contact_id=order.contact_id,
            template=order.template,
        )
        return row.id


#: how often the results waiting for the bank's webhooks are looked at
WEBHOOK_EVERY_S = 1.0


class AlertDesk:
    def __init__(
        self,
        loop: CampaignLoop,
        config: AlertsConfig,
        send_sms: store_alerts.SendSms,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.loop = loop
        self.webhooks = webhooks
        self.config = config
        self.send_sms = send_sms
        self.campaigns: dict[str, int] = {}
        self.attempt_alert: dict[int, int] = {}
        self.waiting = 0  # due alerts the last pass left for want of a channel
        self.pending = 0  # alert calls being originated
        self.originated = 0
        self.last_error: str | None = None
        #: open and overdue alerts per type, counted by a pass at most every COUNT_EVERY_S
        self.counts: dict[str, store_alerts.AlertCounts] = {}
        self._counted_at = float("-inf")
        #: observers of each alert call as its Originate leaves: (alert id, attempt id)
        self.on_originate: list[Callable[[int, int], None]] = []
        self._busy = False
        #: Originates prepared by a pass (or why not), until its calls are sent
        self._prepared: dict[int, OriginateRequest | NotDialled | Exception] = {}
        self._wake = asyncio.Event()
        self._arrived = False
        loop.core.on_finished(self._finished)

    @property
    def reserved(self) -> int:
        """Channels the campaigns must leave free: the alert calls being sent; all of them
        while an alert waits for a channel or a new one has not been looked at yet."""
        if self.waiting or self._arrived:  # every free channel waits for the desk's pass
            return self.loop.max_channels
        return self.pending

    def _finished(self, item: FinishedAttempt) -> None:
        if self.attempt_alert.pop(item.attempt_id, None) is not None:
            self.loop.attempt_phone.pop(item.attempt_id, None)
            self.loop.wake()  # the next rung (or the acknowledgement) without a tick's wait

    def wake(self, *, new_alert: bool = False) -> None:
        """A pass now; ``new_alert``: the campaigns dial nothing until it has looked."""
        self._wake.set()
        if new_alert:
            self._arrived = True

    async def serve(self) -> None:
        """Pass after pass until cancelled: at once when woken (a new alert, a call ended),
        else every tick of the loop."""
        results = asyncio.create_task(self._deliver(), name="alert-webhooks")
        try:
            await self._passes()
        finally:
            results.cancel()
            await asyncio.gather(results, return_exceptions=True)

    async def _passes(self) -> None:
        loop = self.loop
        while True:
            self._wake.clear()
            await self.tick(loop.clock.time())
            if not self._wake.is_set():  # no alert came during the pass: the hold ends
                self._arrived = False
            # on the loop's clock (simulated time in the demo); its wait never swallows the
            # cancellation that stops the desk when the wake-up lands at the same moment
            await loop.clock.wait(self._wake, loop.tick_s)

    async def _deliver(self) -> None:
        """Closed alerts' results to the bank's webhooks, every ``WEBHOOK_EVERY_S``."""
        if self.webhooks is None:
            return
        loop = self.loop
        while True:
            try:
                await self.webhooks.tick(dt.datetime.fromtimestamp(loop.clock.time(), dt.UTC))
            except (DialerError, SQLAlchemyError) as exc:
                log.warning("alert webhooks: %s", exc)
            await loop.clock.sleep(WEBHOOK_EVERY_S)

    def room(self) -> int:
        loop = self.loop
        busy = loop.core.live_calls() + sum(r.pending for r in loop.runs.values())
        return max(0, loop.max_channels - busy - self.pending)

    async def tick(self, now: float) -> int:
        """One pass: settle and start what is due; returns the calls started."""
        if self._busy or not self.loop.core.ready:
            return 0
        self._busy = True
        try:
            at = dt.datetime.fromtimestamp(now, dt.UTC)
            # on the core's database thread, with every other write of the floor (one SQLite
            # writer: no lock waits between our own threads)
            count = now - self._counted_at >= COUNT_EVERY_S
            done, prepared = await self.loop.core.in_db(self._pass, at, self.room(), count)
        except (DialerError, SQLAlchemyError) as exc:  # the store is away: the next pass retries
            self.last_error = str(exc)
            log.warning("alerts: %s", exc)
            return 0
        finally:
            self._busy = False
        self.waiting = done.waiting_for_channel
        self._prepared.update(prepared)
        if done.counts is not None:  # every type of the file, zeros included (no gaps)
            zeros = {t: store_alerts.AlertCounts() for t in self.config.types}
            self.counts, self._counted_at = zeros | done.counts, now
        for attempt_id in done.attempts:
            self.attempt_alert[attempt_id] = done.attempt_alert[attempt_id]
            self.pending += 1
            task = asyncio.create_task(self._originate(attempt_id), name=f"alert-{attempt_id}")
            self.loop.tasks.add(task)
            task.add_done_callback(self.loop.tasks.discard)
        return len(done.attempts)

    def _pass(self, at: dt.datetime, room: int, count: bool) -> tuple[store_alerts.Pass, Any]:
        """Settle and start what is due, the started calls' Originates prepared in the same
        transaction (a campaign call leased after the pass never leaves before them)."""
        with self.loop.store.session() as s:
            done = store_alerts.run_due(
                s, self.config, at, room, self.send_sms, self.campaigns, count=count
            )
            reqs = self.loop.core.rows.prepare_in(s, done.attempts) if done.attempts else []
            return done, zip(done.attempts, reqs, strict=True)

    async def _originate(self, attempt_id: int) -> None:
        alert_id = self.attempt_alert.get(attempt_id, 0)

        async def announce() -> None:  # right before the Originate is written
            for cb in self.on_originate:
                cb(alert_id, attempt_id)

        try:
            req = self._prepared.pop(attempt_id, None)
            if isinstance(req, Exception):
                raise req
            status = await self.loop.core.originate(attempt_id, before_send=announce, prepared=req)
            if status is not OriginateStatus.REJECTED:
                self.originated += 1
        except DialerError as exc:
            self.last_error = str(exc)
            log.warning("alert %s: attempt %s: %s", alert_id, attempt_id, exc)
        finally:
            self.pending -= 1


__all__ = ["AlertDesk", "AlertSms"]
