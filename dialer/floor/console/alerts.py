"""The alert API of the console: the bank's systems post alerts; anyone signed in reads them.

    POST /api/v1/alerts          an alert (JSON); 202 once it is stored, with its id. The same
                                 idempotency key again answers 202 with the same alert
                                 (``Idempotent-Replayed: true``); the key for another alert 409;
                                 503 (Retry-After) when the store did not take it.
    GET  /api/v1/alerts          open alerts (stage, age, past their deadline) for the console
    GET  /api/v1/alerts/{id}     one alert with its timeline

A system proves itself with the console's API token (the machine token) or with its own
credential (``systems:`` in the alerts file: a bearer token read from the variable it names),
which may post only the types listed for it. The body::

    {"idempotency_key": "txn-8812", "type": "transaction_alert",
     "target": {"customer": "C000123"}, "priority": 9, "deadline": "2026-12-03T10:05:00+08:00",
     "payload": {"card_last4": "1234", "txn_amount": "8999.00", "merchant_kind": "online",
                 "txn_time": "2026-12-03T09:58:00"}}

The payload is refused if it holds a card or ID number in clear (400), or if the values the
call would carry (the payload over the customer's own fields) lack a field the type's IVR flow
reads or hold one it cannot say (422, naming the fields); it is masked in every log line. The desk is woken as soon as the alert is committed, so its call starts in the same
instant when a channel is free.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.exc import OperationalError

from dialer.errors import ConfigError
from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import AlertsConfig
from dialer.privacy import scrub_json
from dialer.settings import get_secret

log = logging.getLogger(__name__)

PATH = "/api/v1/alerts"
_LABEL = b"dialer-alert-credential-v1"


def _digest(value: str) -> bytes:
    return hmac.new(_LABEL, value.encode("utf-8", "replace"), hashlib.sha256).digest()


@dataclass
class AlertApi:
    """What the alert routes need: the alerts file, the store, how to wake the desk."""

    config: AlertsConfig
    store: Any
    wake: Callable[[], None] = lambda: None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    env: Mapping[str, str] | None = None
    check: store_alerts.CheckValues | None = None  # the values against the type's flow
    _systems: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, system in self.config.systems.items():
            secret = get_secret("", self.env, required=False, var=system.token_env)
            if secret is None:
                log.warning(
                    "alert system %s: %s is not set; it cannot post", name, system.token_env
                )
                continue
            self._systems.append((name, _digest(secret.get_secret_value())))

    def system_for(self, header: str | None) -> str | None:
        """The system whose own credential is this bearer header, or None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        got = _digest(value.strip())
        found = None
        for name, digest in self._systems:  # compare with every one: no early exit
            if hmac.compare_digest(got, digest):
                found = name
        return found


API = web.AppKey("alerts", AlertApi)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _api(request: web.Request) -> AlertApi:
    api = request.app.get(API)
    if api is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "alerts are not configured (alerts.yaml)"}),
            content_type="application/json",
        )
    return api


async def post_alert(request: web.Request, body: dict[str, Any], via: str) -> web.Response:
    api = _api(request)
    system = via.removeprefix("system:") if via.startswith("system:") else "console"
    if "idempotency_key" not in body and request.headers.get("Idempotency-Key"):
        body = {**body, "idempotency_key": request.headers["Idempotency-Key"]}
    now = api.clock()
    req = store_alerts.parse_request(body, api.config, now)
    allowed = api.config.systems[system].types if system in api.config.systems else None
    if allowed is not None and req.type not in allowed:
        return _json({"error": f"system {system} may not post {req.type} alerts"}, 403)

    def store() -> tuple[dict[str, Any], bool]:
        with api.store.session() as s:  # committed when the block ends: before the answer
            row, created = store_alerts.intake(s, system, req, api.config, now, api.check)
            s.flush()
            got = store_alerts.alert_json(row, now), created
        return got

    try:
        alert, created = await asyncio.to_thread(store)
    except (store_alerts.UnknownTarget, store_alerts.UnusablePayload) as exc:
        return _json({"error": str(exc)}, 422)
    except OperationalError:  # the store is busy or away: nothing was stored
        log.warning("alert %s from %s: the store did not take it; asked to retry", req.key, system)
        busy = {"error": "the store is busy: send the alert again with the same idempotency_key"}
        return _json(busy, 503, {"Retry-After": "1"})
    if created:
        api.wake()
        log.info(
            "alert %s accepted from %s: %s for %s, priority %s, payload %s",
            alert["id"],
            system,
            req.type,
            req.target_kind.value,
            req.priority,
            json.dumps(scrub_json(dict(req.payload)), ensure_ascii=False),
        )
    replay = {} if created else {"Idempotent-Replayed": "true"}
    return _json(alert, 202, replay)


async def list_alerts(request: web.Request) -> web.Response:
    api = _api(request)

    def read() -> list[dict[str, Any]]:
        with api.store.session() as s:
            return store_alerts.open_alerts(s, api.clock())

    rows = await asyncio.to_thread(read)
    return _json({"alerts": rows, "overdue": sum(1 for r in rows if r["overdue"])})


async def get_alert(request: web.Request) -> web.Response:
    api = _api(request)
    try:
        alert_id = int(request.match_info["id"])
    except ValueError:
        raise ConfigError("an alert id is a number") from None

    def read() -> dict[str, Any] | None:
        with api.store.session() as s:
            return store_alerts.timeline(s, alert_id, api.clock())

    got = await asyncio.to_thread(read)
    if got is None:
        return _json({"error": f"no alert {alert_id}"}, 404)
    return _json(got)


__all__ = ["API", "PATH", "AlertApi", "get_alert", "list_alerts", "post_alert"]
