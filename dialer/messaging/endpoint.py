"""Our HTTP endpoint for Kannel's callbacks: delivery reports and incoming SMS.

It binds 127.0.0.1 by default (port 0 in tests). Each callback is stored before it is
answered, so Kannel retries (``http-request-retry``) a callback we could not store; a
repeated callback changes nothing (reports move the lifecycle through idempotent rows,
replies are keyed by Kannel's MO id). A malformed callback gets ``400`` and one log line.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from aiohttp import web

from dialer.errors import IllegalTransition, RemoteProtocolError
from dialer.lists.contacts import parse_phone
from dialer.messaging import outbox
from dialer.messaging.dispatcher import Clock, WallClock
from dialer.messaging.kannel import DLR_PATH, MO_PATH, event_of, read_dlr, read_mo
from dialer.messaging.keywords import Classifier
from dialer.messaging.lifecycle import MsgEvent, MsgState
from dialer.messaging.templates import Channel
from dialer.privacy import mask_phone
from dialer.store import Store

log = logging.getLogger(__name__)

ReportHook = Callable[[str, MsgState], None]
ReplyHook = Callable[[outbox.ReplyOutcome], None]


class SmsEndpoint:
    def __init__(
        self,
        store: Store,
        classify: Classifier,
        *,
        clock: Clock | None = None,
        on_report: ReportHook | None = None,
        on_reply: ReplyHook | None = None,
        default_region: str = "CN",
    ) -> None:
        self.store = store
        self.default_region = default_region
        self.classify = classify
        self.clock: Clock = clock or WallClock()
        self.on_report = on_report
        self.on_reply = on_reply
        self.app = web.Application()
        self.app.router.add_get(DLR_PATH, self._dlr)
        self.app.router.add_get(MO_PATH, self._mo)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def _number(self, sender: str) -> str:
        """The sender in E.164 as our messages were addressed (the SMSC's form varies)."""
        parsed = parse_phone(sender, self.default_region)
        return parsed.e164 if parsed is not None else sender

    async def _dlr(self, request: web.Request) -> web.Response:
        try:
            report = read_dlr(request.query)
        except RemoteProtocolError as exc:
            log.warning("delivery report refused: %s", exc)
            return web.Response(status=400, text=str(exc))
        event = event_of(report)
        failed = event in (MsgEvent.FAILED, MsgEvent.EXPIRED)
        try:
            with self.store.session() as s:
                state = outbox.apply_report(
                    s,
                    report.uid,
                    event,
                    self._now(),
                    dlr=int(report.type),
                    answer=report.answer[:200],
                    reason=(report.answer or event.value) if failed else None,
                )
        except IllegalTransition as exc:
            log.error("delivery report for %s out of place: %s", report.uid, exc)
            return web.Response(status=409, text="out of place")
        if state is None:
            log.warning("delivery report for an unknown message %s", report.uid)
        elif self.on_report is not None:
            self.on_report(report.uid, state)
        return web.Response(text="ok")

    async def _mo(self, request: web.Request) -> web.Response:
        try:
            mo = read_mo(request.query)
        except RemoteProtocolError as exc:
            log.warning("incoming SMS refused: %s", exc)
            return web.Response(status=400, text=str(exc))
        with self.store.session() as s:
            outcome = outbox.apply_reply(
                s,
                channel=Channel.SMS,
                gateway_id=f"kannel:{mo.gateway_id}",
                sender=self._number(mo.sender),
                receiver=mo.receiver,
                text=mo.text,
                now=self._now(),
                classify=self.classify,
            )
        log.info("SMS reply from %s: %s", mask_phone(mo.sender), outcome.action.value)
        if self.on_reply is not None and not outcome.duplicate:
            self.on_reply(outcome)
        return web.Response(text="")

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["SmsEndpoint"]
