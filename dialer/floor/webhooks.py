"""Results back to the bank: each closed alert's outcome POSTed to its type's webhook.

One module owns this connection. A delivery is JSON, signed (``X-Dialer-Signature``: HMAC-SHA256
of ``<X-Dialer-Timestamp>.<body>`` under the secret the alerts file names), tried until the
bank's system answers 2xx, with the waits of ``alertspec.WEBHOOK_BACKOFF_S``; every try is a
row of ``alert_delivery`` (status or error). The HTTP session is injected (tests give one on
loopback); the store decides what is due (``claim_webhooks``: one sender per alert).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import AlertsConfig, sign_webhook
from dialer.settings import get_secret
from dialer.store import Store
from dialer.store.alerts import Alert

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0


class WebhookSender:
    def __init__(
        self,
        store: Store,
        config: AlertsConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.session = session
        self.env = env
        self.delivered = 0
        self.failed = 0

    async def tick(self, now: dt.datetime) -> int:
        """Try every due delivery once; returns how many the bank took."""
        due = await asyncio.to_thread(self._claim, now)
        if not due:
            return 0
        own = self.session is None
        session = self.session or aiohttp.ClientSession()
        try:
            results = await asyncio.gather(*(self._one(session, a, b, now) for a, b in due))
        finally:
            if own:
                await session.close()
        return sum(results)

    def _claim(self, now: dt.datetime) -> list[tuple[int, dict[str, Any]]]:
        with self.store.session() as s:
            ids = store_alerts.claim_webhooks(s, now)
            return [(i, store_alerts.webhook_body(s, i)) for i in ids]

    async def _one(
        self, session: aiohttp.ClientSession, alert_id: int, body: dict[str, Any], now: dt.datetime
    ) -> bool:
        hook = self.config.type_of(body["type"]).webhook
        if hook is None:
            return False
        status, error = None, None
        secret = get_secret("", self.env, required=False, var=hook.secret_env)
        if secret is None:
            error = f"{hook.secret_env} is not set: nothing is sent unsigned"
        else:
            data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
            stamp = str(int(now.timestamp()))
            headers = {
                "Content-Type": "application/json",
                "X-Dialer-Timestamp": stamp,
                "X-Dialer-Signature": sign_webhook(secret.get_secret_value(), stamp, data),
                "Idempotency-Key": f"alert-{alert_id}",  # a retry the bank saw is the same
            }
            try:
                timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
                async with session.post(hook.url, data=data, headers=headers, timeout=timeout) as r:
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
        ok = await asyncio.to_thread(self._record, alert_id, hook.url, now, status, error)
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning(
                "alert %s: webhook not taken (%s); tried again later", alert_id, error or status
            )
        return ok

    def _record(
        self, alert_id: int, url: str, now: dt.datetime, status: int | None, error: str | None
    ) -> bool:
        with self.store.session() as s:
            return store_alerts.record_delivery(s, alert_id, url, now, status=status, error=error)


def pending(store: Store) -> Callable[[], int]:
    """A gauge: results not yet taken by the bank."""
    from sqlalchemy import func, select

    def count() -> int:
        with store.session() as s:
            return int(s.scalar(select(func.count()).where(Alert.webhook == "pending")) or 0)

    return count


__all__ = ["WebhookSender"]
