"""An alert on the simulated floor, end to end (AMI, FastAGI, the IVR flow, the queue): it
arrives while a power campaign holds every channel, takes the next free one before any
new campaign call, and the customer who denies the transaction has the card blocked through
the hook and reaches the fraud agents' queue."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dialer.app.demo import SimFloor, demo_start
from dialer.lists import alerts as store_alerts
from dialer.lists.alerts import AlertCounts
from dialer.lists.alertspec import AlertState, campaign_name
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.contacts import import_contacts
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.alerts import Alert
from dialer.store.models import Attempt, Campaign, Contact

from .kit import SHIPPED, body, customer

ALERT_NUMBER = "+8613912340001"
START = demo_start(dt.date(2026, 12, 1))  # a Tuesday, 10:00 in Beijing
QUEUES = """[general]
persistentmembers = no
autofill = yes

[sales]
strategy = rrmemory
timeout = 15
retry = 1
wrapuptime = 3
joinempty = yes
ringinuse = no

[fraud-agents]
strategy = ringall
timeout = 15
joinempty = yes
ringinuse = no
"""


def load_campaign(store: Store, tmp: Path, n: int) -> None:
    """A power campaign (three lines an agent) of ``n`` contacts on the sales agents."""
    spec = parse_campaign(
        {
            "name": "big",
            "mode": "power",
            "queue": "sales",
            "channel": "Local/{number}@customer",
            "max_attempts": 1,
            "pacing": {
                "ring_timeout_s": 20,
                "wrapup_s": 3,
                "calls_per_second": 50,
                "min_agents_predictive": 1,
            },
        }
    )
    path = tmp / "big.csv"
    path.write_text(
        "phone\n" + "".join(f"+86139{i:05d}{i % 7 + 1}{i % 5 + 2}{i % 3 + 5}\n" for i in range(n))
    )
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        assert import_contacts(s, row, path, default_region="CN", now=START).imported == n


def take(s: Any, doc: dict[str, Any], now: dt.datetime) -> int:
    """The alert stored as the API stores it; its id."""
    req = store_alerts.parse_request(doc, SHIPPED, now)
    return store_alerts.intake(s, "test", req, SHIPPED, now)[0].id


async def closed(store: Store, alert_id: int, wait_s: float = 30.0) -> None:
    """Until the alert is no longer open (or ``wait_s`` pass)."""
    for _ in range(int(wait_s / 0.05)):
        await asyncio.sleep(0.05)
        with store.session() as s:
            row = s.get(Alert, alert_id)
            assert row is not None
            if row.state != AlertState.OPEN:
                return


class DeniesTheTransaction:
    """The alert's customer presses 1 (it is me) then 2 (it was not me); everyone else is the
    scenario's called party."""

    def __init__(self, others: Any) -> None:
        self.others = others

    async def run(self, e: Any, ch: Any, number: str) -> None:
        if number != ALERT_NUMBER:
            await self.others.run(e, ch, number)
            return
        e.ringing(ch)
        await e.wait(ch, 1.0)
        e.answer(ch)
        for prompt, key in (("dialer/confirm-customer", "1"), ("dialer/ta-ask", "2")):
            while not any(p.name == prompt for _, p in ch.media_log):
                await e.wait(ch, 0.2)
            await e.wait(ch, 0.5)
            await e.send_dtmf(ch, key)
        await e.wait(ch, None)


def scenario() -> dict[str, Any]:
    return {
        "seed": 5,
        "called_party": {
            "answer_probability": 0.6,
            "ring_s": {"dist": "uniform", "min": 6, "max": 12, "mean": 9},
            "no_answer_ring_s": 20,
        },
        "agents": [
            {
                "queue": "sales",
                "count": 4,
                "interface": "PJSIP/s-{n:02d}",
                "answer_s": 0.5,
                "talk_s": 40,
                "wrapup_s": 3,
            },
            {
                "queue": "fraud-agents",
                "count": 1,
                "interface": "PJSIP/f-{n:02d}",
                "answer_s": 0.5,
                "talk_s": 20,
                "wrapup_s": 3,
            },
        ],
    }


async def test_an_alert_takes_the_next_channel_and_a_denial_blocks_and_transfers(
    store: Store, tmp_path: Path
) -> None:
    load_campaign(store, tmp_path, 300)
    customer(store, numbers=(ALERT_NUMBER,))
    queues = tmp_path / "queues.conf"
    queues.write_text(QUEUES)
    floor = SimFloor(
        store,
        Settings(),
        start=START,
        speed=20.0,
        scenario=scenario(),
        queues=queues,
        tick_s=0.5,
        max_channels=6,
        alerts=SHIPPED,
    )
    async with floor:
        floor.pbx.engine.party_model = DeniesTheTransaction(floor.pbx.engine.party_model)
        runner = asyncio.create_task(floor.dialer.run())
        try:
            for _ in range(400):  # until the campaign holds every channel
                await asyncio.sleep(0.05)
                if floor.core.live_calls() >= 6:
                    break
            assert floor.core.live_calls() >= 6, "the campaign never filled the channels"
            with store.session() as s:
                before = s.scalar(select(func.max(Attempt.id))) or 0
                # campaign calls already decided (leased or being sent) may still leave first
                decided = sum(r.pending for r in floor.dialer.loop.runs.values())
                alert_id = take(s, body("floor-1"), floor.dialer.now())
            desk = floor.root.desk
            assert desk is not None
            desk.wake(new_alert=True)  # as the API does once the alert is stored
            floor.dialer.loop.wake()
            await closed(store, alert_id)
            # the desk counted the open alert for /metrics while it was open, and counts it
            # gone once a pass after its close has counted again (every COUNT_EVERY_S)
            for _ in range(400):
                if desk.counts.get("transaction_alert", AlertCounts(1, 0)).open == 0:
                    break
                await asyncio.sleep(0.05)
            assert desk.counts["transaction_alert"] == AlertCounts(open=0, overdue=0)
        finally:
            floor.dialer.stop()
            await asyncio.wait_for(runner, 30)
    with store.session() as s:
        row = s.get(Alert, alert_id)
        assert row is not None and (row.state, row.result) == ("acknowledged", "denied")
        ours = s.scalars(
            select(Attempt)
            .join(Campaign)
            .where(Campaign.name == campaign_name("transaction_alert"))
        ).one()
        assert ours.queue == "fraud-agents" and ours.queued_at is not None  # to the fraud agents
        later = s.scalars(select(Attempt).where(Attempt.id > before, Attempt.id != ours.id)).all()
        assert later, "the campaign dialled nothing after the alert"
        # no campaign call decided after the alert arrived left before it
        assert ours.originated_at is not None
        first = [a for a in later if a.originated_at and a.originated_at < ours.originated_at]
        assert len(first) <= decided, (len(first), decided)  # none decided after it arrived
        vessel = s.get(Contact, ours.contact_id)
        assert vessel is not None and "card_blocked_at" in vessel.fields  # the block hook ran
        assert ours.detail["fields"]["txn_amount"] == "8999.00"
    assert dt.timedelta(0) <= ours.originated_at - row.created_at < dt.timedelta(seconds=60)


class Roster:
    """The first person on duty lets it ring out; the second confirms and takes it (1, 1)."""

    async def run(self, e: Any, ch: Any, number: str) -> None:
        e.ringing(ch)
        await e.wait(ch, 1.0)
        if number == "+8613800000001":
            await e.wait(ch, 3.0)
            e.request_hangup(ch)  # never answered
            return
        e.answer(ch)
        for prompt in ("dialer/df-on-duty", "dialer/df-ask"):
            while not any(p.name == prompt for _, p in ch.media_log):
                await e.wait(ch, 0.2)
            await e.wait(ch, 0.5)
            await e.send_dtmf(ch, "1")
        await e.wait(ch, None)


async def test_a_device_fault_walks_the_roster_until_the_second_person_takes_it(
    store: Store, tmp_path: Path
) -> None:
    queues = tmp_path / "queues.conf"
    queues.write_text(QUEUES)
    floor = SimFloor(
        store,
        Settings(),
        start=START,
        speed=None,  # simulated time: a loaded machine's stalls cannot time out a menu
        max_speed=20.0,
        scenario={"seed": 1},
        queues=queues,
        tick_s=0.5,
        alerts=SHIPPED,
    )
    async with floor:
        floor.pbx.engine.party_model = Roster()
        runner = asyncio.create_task(floor.dialer.run())
        try:
            doc = {
                "idempotency_key": "atm-1",
                "type": "device_fault",
                "target": {"roster": "atm-duty-east"},
                "payload": {"device_no": "0123"},
            }
            with store.session() as s:
                alert_id = take(s, doc, floor.dialer.now())
            floor.dialer.loop.wake()
            await closed(store, alert_id)
        finally:
            floor.dialer.stop()
            await asyncio.wait_for(runner, 30)
    with store.session() as s:
        row = s.get(Alert, alert_id)
        assert row is not None
        assert (row.state, row.result, row.acknowledged_by, row.calls) == (
            "acknowledged",
            "acknowledged",
            "值班员乙",
            2,
        )
        timeline = store_alerts.timeline(s, alert_id, floor.dialer.now())
        assert timeline is not None
        ended = [e for e in timeline["timeline"] if e["kind"] == "call_ended"]
        assert [e["result"] for e in ended] == [None, "acknowledged"]
