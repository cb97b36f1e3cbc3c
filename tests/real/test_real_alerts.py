"""An alert on a real Asterisk 22: posted to the console's API over HTTP while a campaign
dials, it rings the customer's phone (the switch's own Newstate) within a second of the 202,
through the project's dialplan and the alert type's own flow variables."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
from sqlalchemy import select

from dialer import CONFIG_DIR
from dialer.app.compose import serve_console
from dialer.lists.alertspec import campaign_name, load_alerts
from dialer.outcomes import AttemptState
from dialer.store import Store
from dialer.store.models import Attempt, Campaign, Contact

from .conftest import RealFloor, campaign, load, phone
from .pbx import Asterisk

ALERTS = load_alerts(CONFIG_DIR / "alerts.yaml")


async def test_alert_to_first_ring(store: Store, tmp_path: Path, asterisk: Asterisk) -> None:
    customer = phone("111", 9)  # the default persona: rings 1 s, answers, listens
    load(
        store,
        tmp_path,
        campaign("busyq", "progressive"),
        [{"phone": phone("480", i)} for i in range(4)],  # rings until the timeout
    )
    with store.session() as s:
        s.add(
            Contact(
                campaign_id=1,
                phone=customer,
                timezone="UTC",
                external_id="C42",
                fields={"card_last4": "0042"},
            )
        )
    rang: dict[int, float] = {}
    async with RealFloor(store, asterisk, alerts=ALERTS) as floor:
        floor.core.on_transition(
            lambda t: (
                t.after is AttemptState.RINGING
                and rang.setdefault(t.attempt_id, time.perf_counter())
            )
        )
        runner, port = await serve_console(
            floor.dialer, host="127.0.0.1", port=0, watch_config=False, sighup=False, alerts=ALERTS
        )
        task = asyncio.create_task(floor.dialer.run())
        try:
            await asyncio.sleep(2.0)  # the campaign's calls are ringing
            body = {
                "idempotency_key": "real-1",
                "type": "transaction_alert",
                "target": {"customer": "C42"},
                "priority": 9,
                "payload": {
                    "txn_amount": "18.00",
                    "merchant_kind": "store",
                    "txn_time": "2026-12-01T09:58:00",
                },
            }
            headers = {"Authorization": f"Bearer {os.environ['DIALER_API_TOKEN']}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(f"http://127.0.0.1:{port}/api/v1/alerts", json=body) as r:
                    assert r.status == 202, await r.text()
                    accepted = time.perf_counter()
            ours = None
            for _ in range(100):
                await asyncio.sleep(0.05)
                with store.session() as s:
                    ours = s.scalars(
                        select(Attempt.id)
                        .join(Campaign)
                        .where(Campaign.name == campaign_name("transaction_alert"))
                    ).first()
                if ours is not None and ours in rang:
                    break
            assert ours is not None and ours in rang, "the alert's call never rang"
            latency = rang[ours] - accepted
            print(f"real switch: alert 202 -> first ring {latency * 1000:.0f} ms")
            assert latency < 1.0
        finally:
            floor.dialer.stop()
            await asyncio.wait_for(task, 15)
            await runner.cleanup()
    with store.session() as s:
        row = s.get(Attempt, ours)
        assert row is not None and row.phone == customer and row.detail["alert_id"] == 1
