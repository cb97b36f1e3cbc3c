"""Results back to the bank: a closed alert's result is POSTed, signed, to the type's webhook;
while the bank's endpoint answers 503 or is not there at all, every try is recorded and the
next waits its back-off; once it is back the result is delivered, once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select

from dialer.floor.webhooks import WebhookSender
from dialer.lists.alertspec import sign_webhook
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.alerts import AlertDelivery

from .kit import DAY, alert, body, config, customer, end_call, kinds, post
from .kit import run_pass as pass_at

SECRET = "bank-webhook-secret-for-tests-only"


class Bank:
    """The bank's endpoint on loopback: down (503), gone (closed) or up (200)."""

    def __init__(self) -> None:
        self.up = False
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def hook(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=200 if self.up else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_the_result_is_retried_while_the_bank_is_down_and_delivered_once(
    store: Store,
) -> None:
    bank = Bank()
    await bank.start()
    cfg = config(
        transaction_alert={
            "webhook": {"url": f"http://127.0.0.1:{bank.port}/hook", "secret_env": "BANK_HOOK"}
        }
    )
    customer(store)
    alert_id, _ = post(store, body(), cfg=cfg)
    call = pass_at(store, DAY, cfg=cfg).attempts[0]
    end_call(store, call, Outcome.COMPLETED, "confirmed", DAY + dt.timedelta(seconds=30))
    closed = DAY + dt.timedelta(seconds=31)
    pass_at(store, closed, cfg=cfg)
    assert alert(store, alert_id).webhook == "pending"
    sender = WebhookSender(store, cfg, env={"BANK_HOOK": SECRET})
    try:
        assert await sender.tick(closed) == 0  # 503: the bank's system is down
        assert await sender.tick(closed + dt.timedelta(seconds=1)) == 0  # waits its back-off
        await bank.stop()
        assert await sender.tick(closed + dt.timedelta(seconds=3)) == 0  # nothing listens
        await bank.start()
        bank.up = True
        assert await sender.tick(closed + dt.timedelta(seconds=5)) == 0  # still backing off
        assert await sender.tick(closed + dt.timedelta(seconds=9)) == 1
        assert await sender.tick(closed + dt.timedelta(hours=1)) == 0  # delivered once
    finally:
        await bank.stop()
    with store.session() as s:
        tries = s.scalars(select(AlertDelivery).order_by(AlertDelivery.id)).all()
        assert [(t.status, t.delivered) for t in tries] == [
            (503, False),
            (None, False),
            (200, True),
        ]
        assert tries[1].error and "Connect" in tries[1].error
    assert len(bank.got) == 2
    headers, raw = bank.got[-1]
    assert headers["X-Dialer-Signature"] == sign_webhook(SECRET, headers["X-Dialer-Timestamp"], raw)
    sent: dict[str, Any] = json.loads(raw)
    assert (sent["id"], sent["state"], sent["result"]) == (alert_id, "acknowledged", "confirmed")
    assert "payload" not in sent and "8999" not in raw.decode()
    row = alert(store, alert_id)
    assert (row.webhook, row.webhook_tries) == ("delivered", 3)
    assert kinds(store, alert_id)[-1] == "webhook"


async def test_nothing_is_sent_unsigned(store: Store) -> None:
    cfg = config(
        transaction_alert={"webhook": {"url": "http://127.0.0.1:9/hook", "secret_env": "NO_SUCH"}}
    )
    customer(store)
    alert_id, _ = post(store, body(deadline_s=5), cfg=cfg)
    pass_at(store, DAY + dt.timedelta(seconds=10), cfg=cfg)  # expired before its call
    assert alert(store, alert_id).state == "expired"
    sender = WebhookSender(store, cfg, env={})
    assert await sender.tick(DAY + dt.timedelta(seconds=11)) == 0
    with store.session() as s:
        (only,) = s.scalars(select(AlertDelivery)).all()
        assert only.status is None and "NO_SUCH is not set" in (only.error or "")
