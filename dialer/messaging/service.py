"""The messaging service: SMS and e-mail dispatchers, their callback endpoints, and the
multi-step sequencer, on one event loop (``dialer messages run``).

Each part is optional (``sms``, ``email``, ``steps``); a part whose secret is missing is an
error before anything starts. The sequencer ticks every running campaign that has steps
every ``tick_s`` seconds and reacts at once to a confirming SMS or e-mail reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from dialer.errors import DialerError, SecretMissing
from dialer.messaging import email as mail
from dialer.messaging.config import MessagingSettings
from dialer.messaging.dispatcher import Clock, EmailDispatcher, SmsDispatcher, WallClock
from dialer.messaging.endpoint import SmsEndpoint
from dialer.messaging.kannel import KannelGateway
from dialer.messaging.keywords import Classifier
from dialer.messaging.mailin import MailEndpoint
from dialer.messaging.outbox import ReplyOutcome
from dialer.messaging.sequencer import Sequencer
from dialer.messaging.smtp import MailSender
from dialer.messaging.templates import TemplateLibrary
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Campaign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secrets:
    kannel_password: str | None
    smtp_password: str | None
    kannel_status_password: str | None = None


def step_campaigns(store: Store) -> list[str]:
    """Running campaigns whose files declare steps."""
    with store.session() as s:
        rows = s.execute(select(Campaign.name, Campaign.spec).where(Campaign.state == "running"))
        return [name for name, spec in rows if (spec or {}).get("steps")]


async def serve(
    store: Store,
    settings: Settings,
    cfg: MessagingSettings,
    library: TemplateLibrary,
    secrets: Secrets,
    stop: asyncio.Event,
    *,
    sms: bool = True,
    email: bool = True,
    steps: bool = True,
    tick_s: float = 5.0,
    clock: Clock | None = None,
    started: Callable[[str], None] = lambda line: None,
) -> None:
    clock = clock or WallClock()
    classify = Classifier(cfg.keywords)
    per_day = settings.max_calls_per_number_per_day
    seq = Sequencer(store, library, settings.bank, calls_per_day=per_day) if steps else None

    def on_reply(outcome: ReplyOutcome) -> None:
        if seq is not None:
            seq.on_reply(outcome)

    def on_mail(item: mail.Inbound, result: Any) -> None:
        if seq is not None and isinstance(result, ReplyOutcome) and not result.duplicate:
            seq.on_reply(result)

    tasks: list[Awaitable[None]] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        if sms:
            if not secrets.kannel_password:
                raise SecretMissing("SMS needs DIALER_KANNEL_PASSWORD (or ..._FILE)")
            sms_in = SmsEndpoint(
                store,
                classify,
                clock=clock,
                on_reply=on_reply,
                default_region=settings.default_region,
            )
            port = await sms_in.start(cfg.sms.listen.host, cfg.sms.listen.port)
            closers.append(sms_in.stop)
            gateway = KannelGateway(
                cfg.sms.kannel,
                secrets.kannel_password,
                status_password=secrets.kannel_status_password,
            )
            closers.append(gateway.close)
            tasks.append(SmsDispatcher(store, gateway, cfg.sms, clock=clock).run(stop))
            started(
                f"SMS: callbacks on {cfg.sms.listen.host}:{port}, sendsms at "
                f"{cfg.sms.kannel.sendsms_url}, {cfg.sms.kannel.rate:g} parts/s"
            )
        if email:
            if not secrets.smtp_password:
                raise SecretMissing("e-mail needs DIALER_SMTP_PASSWORD (or ..._FILE)")
            m = cfg.email.mail
            mail_in = MailEndpoint(store, classify, domain=m.domain, clock=clock, on_mail=on_mail)
            port = await mail_in.start(m.listen_host, m.listen_port)
            closers.append(mail_in.stop)
            sender = MailSender(m, secrets.smtp_password)
            closers.append(sender.close)
            tasks.append(
                EmailDispatcher(
                    store, sender, cfg.email, bank_name=settings.bank.name_zh, clock=clock
                ).run(stop)
            )
            started(f"e-mail: inbound on {m.listen_host}:{port}, relay {m.smtp_host}:{m.smtp_port}")
        if seq is not None:
            tasks.append(_tick_steps(store, seq, stop, tick_s, clock))
            started(f"steps: every {tick_s:g} s for running campaigns with steps")
        await asyncio.gather(*tasks)
    finally:
        for close in reversed(closers):
            await close()


async def _tick_steps(
    store: Store, seq: Sequencer, stop: asyncio.Event, tick_s: float, clock: Clock
) -> None:
    while not stop.is_set():
        now = dt.datetime.fromtimestamp(clock.time(), dt.UTC)
        for name in await asyncio.to_thread(step_campaigns, store):
            try:
                report = await asyncio.to_thread(seq.tick, name, now)
            except DialerError as exc:  # one campaign's bad step must not stop the others
                log.error("steps of %s: %s", name, exc)
                continue
            if report.queued or report.ended:
                log.info(
                    "%s: queued %s, held %d, ended %d",
                    name,
                    dict(report.queued),
                    report.held,
                    report.ended,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)


__all__ = ["Secrets", "serve", "step_campaigns"]
