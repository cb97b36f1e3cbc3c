"""The alert API over HTTP: stored before the 202, the same key answers the same alert, a
system's own credential posts only its types, the payload never reaches a log in clear, and
the timeline and the open list read back what happened."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.app.alerting import flow_check
from dialer.errors import ConfigError
from dialer.floor.console import start_console
from dialer.floor.console.alerts import AlertApi
from dialer.floor.service import Dialer
from dialer.lists.alerts import CheckValues
from dialer.lists.alertspec import load_alerts, parse_alerts
from dialer.store import Store
from dialer.store.alerts import Alert
from dialer.store.models import Contact
from dialer.yamlfile import load_mapping
from ivr.flow import FlowLibrary

from .floorkit import TOKEN

SYSTEM_TOKEN = "fraud-engine-Hq7wX2pL9vK4mZ8r"
ATM_TOKEN = "atm-monitor-Wd3nB6tY1cR5sJ0u"
CARD = "6222021234567890123"


@pytest.fixture
async def api(
    floor: Dialer, store: Store
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, list[int]]]:
    async for got in serve(floor, store, check=None):
        yield got


@pytest.fixture
async def checked_api(
    floor: Dialer, store: Store
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, list[int]]]:
    """As the composition root builds it: alert values checked against each type's flow."""
    check = flow_check(load_alerts(CONFIG_DIR / "alerts.yaml"), FlowLibrary.load(None))
    async for got in serve(floor, store, check=check):
        yield got


async def serve(
    floor: Dialer, store: Store, check: CheckValues | None
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, list[int]]]:
    with store.session() as s:
        s.add(
            Contact(
                campaign_id=1,
                phone="+8613912340001",
                timezone="Asia/Shanghai",
                external_id="C0001",
                fields={"card_last4": "0123"},
            )
        )
    woken: list[int] = []
    env = {
        "DIALER_ALERT_TOKEN_FRAUD_ENGINE": SYSTEM_TOKEN,
        "DIALER_ALERT_TOKEN_ATM_MONITOR": ATM_TOKEN,
    }
    alerts = AlertApi(
        load_alerts(CONFIG_DIR / "alerts.yaml"),
        store,
        lambda: woken.append(1),
        env=env,
        check=check,
    )
    runner, port = await start_console(
        floor, port=0, token=TOKEN, registry=CollectorRegistry(), store=store, alerts=alerts
    )
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{port}/api/v1/alerts", http, woken
    await runner.cleanup()


def alert_body(key: str, **over: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "type": "transaction_alert",
        "target": {"customer": "C0001"},
        "payload": {"txn_amount": "8999.00", "merchant_kind": "online", "card_last4": "0123"},
        **over,
    }


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str = TOKEN, **kw: Any
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, headers=headers, **kw) as r:
        return r.status, await r.json(), r.headers


async def test_post_is_stored_before_202_and_the_same_key_gives_the_same_alert(
    api: tuple[str, aiohttp.ClientSession, list[int]], store: Store
) -> None:
    url, http, woken = api
    status, got, _ = await call(http, "POST", url, SYSTEM_TOKEN, json=alert_body("t-1"))
    assert status == 202 and got["state"] == "open" and woken == [1]
    with store.session() as s:  # committed: another connection reads it
        row = s.get(Alert, got["id"])
        assert row is not None and (row.system, row.key) == ("fraud-engine", "t-1")
    status, again, headers = await call(http, "POST", url, SYSTEM_TOKEN, json=alert_body("t-1"))
    assert status == 202 and again["id"] == got["id"] and headers["Idempotent-Replayed"] == "true"
    assert woken == [1]
    status, err, _ = await call(http, "POST", url, SYSTEM_TOKEN, json=alert_body("t-1", priority=1))
    assert status == 409 and "different alert" in err["error"]
    with store.session() as s:
        assert len(s.scalars(select(Alert)).all()) == 1


async def test_credentials_and_types(api: tuple[str, aiohttp.ClientSession, list[int]]) -> None:
    url, http, _ = api
    status, _, _ = await call(
        http, "POST", url, "not-a-credential-at-all-1234", json=alert_body("x")
    )
    assert status == 401
    status, err, _ = await call(
        http,
        "POST",
        url,
        ATM_TOKEN,
        json={"idempotency_key": "a", "type": "transaction_alert", "target": {"customer": "C0001"}},
    )
    assert status == 403 and "may not post transaction_alert" in err["error"]
    status, _, _ = await call(http, "GET", url.replace("/v1/alerts", "/campaigns"), SYSTEM_TOKEN)
    assert status == 401  # a system's credential opens the alert routes only
    status, got, _ = await call(http, "POST", url, TOKEN, json=alert_body("by-console"))
    assert status == 202 and got["system"] == "console"  # the machine token works too


async def test_bad_input_is_one_line_and_the_payload_is_masked_in_logs(
    api: tuple[str, aiohttp.ClientSession, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    url, http, _ = api
    caplog.set_level(logging.INFO)
    status, err, _ = await call(
        http, "POST", url, json=alert_body("p", payload={"card": CARD, "txn_amount": "1"})
    )
    assert status == 400 and "card or ID number in clear" in err["error"] and CARD not in str(err)
    status, err, _ = await call(
        http, "POST", url, json=alert_body("u", target={"customer": "nobody"})
    )
    assert status == 422 and "nobody" in err["error"]
    status, got, _ = await call(
        http, "POST", url, json=alert_body("m", payload={"merchant": "ref 88812345678"})
    )
    assert status == 202
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "accepted from console" in logged and "88812345678" not in logged
    assert CARD not in logged


async def test_timeline_and_open_list(api: tuple[str, aiohttp.ClientSession, list[int]]) -> None:
    url, http, _ = api
    _, got, _ = await call(http, "POST", url, json=alert_body("tl", priority=9))
    status, one, _ = await call(http, "GET", f"{url}/{got['id']}")
    assert status == 200 and [e["kind"] for e in one["timeline"]] == ["received"]
    assert one["steps"] == 4  # no other number: main, main, SMS, main
    assert one["next"] == {"act": "call", "who": "main"}
    status, listing, _ = await call(http, "GET", url)
    assert status == 200 and [a["id"] for a in listing["alerts"]] == [got["id"]]
    assert listing["overdue"] == 0
    status, _, _ = await call(http, "GET", f"{url}/999")
    assert status == 404


async def test_values_the_flow_cannot_use_are_refused_at_the_door(
    checked_api: tuple[str, aiohttp.ClientSession, list[int]], store: Store
) -> None:
    """transaction_alert says the card's last four (the customer's own field here), the amount
    and the transaction's date and time: a payload without txn_time, or with an amount it
    cannot say, would break the call after the customer answered; 422 names the fields."""
    url, http, woken = checked_api
    status, err, _ = await call(http, "POST", url, SYSTEM_TOKEN, json=alert_body("v-1"))
    assert (
        status == 422
        and "txn_time is missing" in err["error"]
        and "(as date, time)" in err["error"]
    )
    bad = alert_body("v-2")
    bad["payload"] = {**bad["payload"], "txn_time": "yesterday", "txn_amount": "lots"}
    status, err, _ = await call(http, "POST", url, SYSTEM_TOKEN, json=bad)
    assert status == 422
    assert "txn_amount cannot be said as amount" in err["error"] and "lots" not in err["error"]
    assert "txn_time cannot be said as date" in err["error"]
    good = alert_body("v-3")
    good["payload"] = {**good["payload"], "txn_time": "2026-12-03T09:58:00"}
    good["payload"].pop("card_last4")  # the customer's own field serves
    status, got, _ = await call(http, "POST", url, SYSTEM_TOKEN, json=good)
    assert status == 202 and woken == [1]
    with store.session() as s:
        assert [a.key for a in s.scalars(select(Alert))] == ["v-3"]  # nothing else stored


def test_an_alert_type_naming_no_flow_is_refused_when_the_console_starts() -> None:
    doc = load_mapping(CONFIG_DIR / "alerts.yaml")
    doc["types"]["transaction_alert"]["flow"] = "transaction_alret"
    with pytest.raises(ConfigError, match="type transaction_alert: no IVR flow named"):
        flow_check(parse_alerts(doc), FlowLibrary.load(None))
