"""Shared pieces of the alert tests: the shipped alerts file, a customer, a pass of the desk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.floor.alerts import AlertSms
from dialer.lists import alerts as store_alerts
from dialer.lists import hopper
from dialer.lists.alertspec import AlertsConfig, load_alerts, parse_alerts
from dialer.lists.campaigns import CampaignSpec, apply_campaign
from dialer.lists.numbers import add_numbers, rows_for
from dialer.messaging.templates import TemplateLibrary
from dialer.outcomes import Outcome
from dialer.settings import BankSettings
from dialer.store import Store
from dialer.store.alerts import Alert, AlertEvent
from dialer.store.models import Attempt, Contact
from dialer.yamlfile import load_mapping

SHIPPED = load_alerts(CONFIG_DIR / "alerts.yaml")
SMS = AlertSms(TemplateLibrary.load(CONFIG_DIR / "messages"), BankSettings())
#: 10:00 in Beijing on a Tuesday
DAY = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
MAIN, HOME = "+8613912340001", "+8613912340002"


def config(**types: Any) -> AlertsConfig:
    """The shipped file with some types replaced (dict documents)."""
    doc = load_mapping(CONFIG_DIR / "alerts.yaml")
    for name, spec in types.items():
        doc["types"][name] = {**doc["types"].get(name, {}), **spec}
    return parse_alerts(doc)


def customer(
    store: Store, customer_id: str = "C0001", numbers: tuple[str, ...] = (MAIN, HOME)
) -> int:
    """A repayment campaign's contact carrying the bank's customer id and two numbers."""
    with store.session() as s:
        spec = CampaignSpec.model_validate(
            {"name": "repay", "queue": "collections", "mode": "progressive"}
        )
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        c = Contact(
            campaign_id=row.id,
            phone=numbers[0],
            name="王五",
            language="zh",
            timezone="Asia/Shanghai",
            external_id=customer_id,
            fields={"card_last4": "1234"},
        )
        s.add(c)
        s.flush()
        kinds = [("main", numbers[0]), *(("home", n) for n in numbers[1:])]
        add_numbers(s, rows_for(c.id, kinds))
        return c.id


def body(key: str = "txn-1", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "idempotency_key": key,
        "type": "transaction_alert",
        "target": {"customer": "C0001"},
        "priority": 9,
        "payload": {
            "txn_amount": "8999.00",
            "merchant_kind": "online",
            "card_last4": "1234",
            "txn_time": "2026-12-01T09:58:00",
        },
    }
    doc.update(over)
    return doc


def post(
    store: Store, doc: dict[str, Any], now: dt.datetime = DAY, cfg: AlertsConfig = SHIPPED
) -> tuple[int, bool]:
    with store.session() as s:
        req = store_alerts.parse_request(doc, cfg, now)
        row, created = store_alerts.intake(s, "fraud-engine", req, cfg, now)
        return row.id, created


def run_pass(
    store: Store, now: dt.datetime, room: int = 10, cfg: AlertsConfig = SHIPPED
) -> store_alerts.Pass:
    with store.session() as s:
        return store_alerts.run_due(s, cfg, now, room, SMS)


def end_call(
    store: Store, attempt_id: int, outcome: Outcome, result: str | None, at: dt.datetime
) -> None:
    """The attempt's one outcome, as the dialer core writes it."""
    with store.session() as s:
        row = s.get(Attempt, attempt_id)
        assert row is not None
        hopper.finish_attempt(s, row, outcome, at, hopper.AttemptFacts(result=result))


def alert(store: Store, alert_id: int) -> Alert:
    with store.session() as s:
        row = s.get(Alert, alert_id)
        assert row is not None
        return row


def kinds(store: Store, alert_id: int) -> list[str]:
    with store.session() as s:
        return list(
            s.scalars(
                select(AlertEvent.kind)
                .where(AlertEvent.alert_id == alert_id)
                .order_by(AlertEvent.id)
            )
        )


def attempt(store: Store, attempt_id: int) -> Attempt:
    with store.session() as s:
        row = s.get(Attempt, attempt_id)
        assert row is not None
        return row


__all__ = ["DAY", "HOME", "MAIN", "SHIPPED", "SMS", "Path"]
