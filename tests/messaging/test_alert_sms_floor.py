"""An alert's SMS rung on the simulated floor and a real Kannel: the customer does not answer
the call, the ladder's SMS goes out through the gateway, the customer's reply "1" (it was me)
acknowledges the alert and nothing more is dialled or sent."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import select

from dialer.app.demo import SimFloor, demo_start
from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import AlertState
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.alerts import Alert, AlertEvent
from dialer.store.messages import Message
from dialer.store.models import Attempt
from tests.alerts.kit import MAIN, body, config, customer

from .conftest import SmsRig

START = demo_start(dt.date(2026, 12, 1))  # a Tuesday, 10:00 in Beijing
LADDER = config(
    transaction_alert={
        "ring_timeout_s": 15,
        "ladder": [{"call": "main"}, {"sms": "fraud-alert-sms", "after": "10s"}],
    }
)


def scenario() -> dict[str, Any]:
    """Nobody answers (the phone rings out); one fraud agent, never needed."""
    return {
        "seed": 3,
        "called_party": {"answer_probability": 0.0, "no_answer_ring_s": 30},
        "agents": [
            {"queue": "fraud-agents", "count": 1, "interface": "PJSIP/f-{n:02d}",
             "answer_s": 0.5, "talk_s": 20, "wrapup_s": 3},
        ],
    }  # fmt: skip


def alert_row(store: Store, alert_id: int) -> Alert:
    with store.session() as s:
        row = s.get(Alert, alert_id)
        assert row is not None
        return row


async def test_no_answer_then_the_sms_and_its_reply_acknowledge_on_the_floor(
    store: Store, sms_rig: SmsRig
) -> None:
    customer(store, numbers=(MAIN,))
    floor = SimFloor(
        store, Settings(), start=START, speed=10.0, scenario=scenario(), tick_s=0.5, alerts=LADDER
    )
    box = sms_rig.box
    async with floor:
        with store.session() as s:
            req = store_alerts.parse_request(body("floor-sms"), LADDER, floor.dialer.now())
            alert_id = store_alerts.intake(s, "test", req, LADDER, floor.dialer.now())[0].id
        runner = asyncio.create_task(floor.dialer.run())
        desk = floor.root.desk
        assert desk is not None
        desk.wake(new_alert=True)
        floor.dialer.loop.wake()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            replied = False
            while asyncio.get_running_loop().time() < deadline:
                await sms_rig.dispatcher.dispatch_batch()  # `dialer messages run` does this
                if not replied and box.received():
                    box.reply(MAIN, "1")
                    replied = True
                if alert_row(store, alert_id).state != AlertState.OPEN:
                    break
                await asyncio.sleep(0.2)
        finally:
            floor.dialer.stop()
            await asyncio.wait_for(runner, 30)
    row = alert_row(store, alert_id)
    assert (row.state, row.result) == (AlertState.ACKNOWLEDGED, "confirmed")
    with store.session() as s:
        calls = s.scalars(select(Attempt).where(Attempt.phone == MAIN)).all()
        sms = s.scalars(select(Message)).all()
        kinds = list(
            s.scalars(
                select(AlertEvent.kind)
                .where(AlertEvent.alert_id == alert_id)
                .order_by(AlertEvent.id)
            )
        )
    assert [a.outcome for a in calls] == ["no_answer"]  # rang out on the switch
    assert len(sms) == 1 and sms[0].address == MAIN and len(box.received()) == 1
    assert "8999.00" in box.received()[0].text and "回复1" in box.received()[0].text
    assert kinds[-3:] == ["sms", "reply", "acknowledged"], kinds
