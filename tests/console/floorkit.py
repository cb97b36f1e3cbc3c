"""Seeding data for the console tests, which run against the REAL floor objects.

Campaigns, contacts, attempts, IVR sessions and audit rows are real rows in a real store;
``build_floor`` makes the real ``dialer.floor.service.Dialer`` over it (its AMI client never
started) and seeds its agent pool, its tracker and its history; ``play`` seeds one more moment
so numbers move. Contacts carry a card number and an ID number in clear in their fields: the
leak tests check that none reaches a response.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.floor.console import DialerMetrics
from dialer.floor.loop import wait_real
from dialer.floor.service import Dialer
from dialer.floor.view import (
    HistoryPoint,
)
from dialer.lists.campaigns import (
    apply_campaign,
    get_campaign,
    load_campaign_file,
)
from dialer.outcomes import Outcome
from dialer.privacy import keyed_hash
from dialer.settings import Settings
from dialer.store import Store
from dialer.store.models import Attempt, Campaign, Contact, IvrSession, IvrStep
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.core import DialerCore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
)
TOKEN = "tQ8-vX2kR7pLm4Zs9WcN1bYh"  # strong: the console refuses a weak one
CARD = "6222021234567890"
ID_NUMBER = "110101199003071234"
PHONES = [f"+86138001380{i:02d}" for i in range(12)]
SENSITIVE = [CARD, ID_NUMBER, *PHONES, *(p.removeprefix("+86") for p in PHONES)]

CAMPAIGN_YAML = """\
name: card-activation-test
state: running
purpose: service
mode: predictive
channel: "Local/{number}@customer"
flow: card_activation
queue: activation-agents
retry: {busy: 10m, no_answer: 2h, abandoned: 72h}
fields:
  card_number: {type: digits, length: 16}
  id_number: {type: text}
pacing:
  abandon_cap: 0.03
  hold_limit_s: 2
  ring_timeout_s: 25
  max_lines_per_agent: 3.0
"""

PREVIEW_YAML = """\
name: preview-test
state: running
purpose: collections
mode: preview
queue: collections-agents
"""

T0 = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)  # 09:00 Asia/Shanghai


@dataclass
class Clock:
    """Real time shifted so that the seeded shift started at T0."""

    start_real: dt.datetime
    start_virtual: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.start_virtual + (dt.datetime.now(dt.UTC) - self.start_real)


class LoopClock:
    """``Clock`` as the campaign loop reads it (epoch seconds), on the shifted test time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def time(self) -> float:
        return self.clock().timestamp()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await wait_real(event, timeout)


#: The queue members on the floor, as ``QueueStatus`` lists them: idle, two on a call, one
#: paused, one not in use.
MEMBERS = [
    {
        "Queue": "activation-agents",
        "Name": f"Local/10{i:02d}@agents",
        "Status": status,
        "Paused": paused,
        "InCall": in_call,
        "StateInterface": f"Local/10{i:02d}@agents",
    }
    for i, (status, paused, in_call) in enumerate(
        [("1", "0", "0"), ("2", "0", "1"), ("2", "0", "1"), ("1", "0", "0"), ("1", "1", "0")]
    )
]


def build_floor(store: Store, clock: Clock) -> Dialer:
    """The REAL floor (``dialer.floor.service.Dialer`` on a ``DialerCore``) over the seeded
    store. Its AMI client is never started: agents, calls and history are seeded into the real
    objects, and a dial the console asks for (preview) ends ``failed`` when the switch is not
    ready, as it does in production. Snapshots are not cached, so a seeded change shows at once.
    """
    client = AMIClient("127.0.0.1", 9, "dialer", "not-used")  # never started
    core = DialerCore(
        store,
        client,
        agi_url="agi://127.0.0.1:4573",
        clock=lambda: clock().timestamp(),
        ready_timeout_s=0.2,
    )
    floor = Dialer(store, core, Settings(), clock=LoopClock(clock), snapshot_cache_s=0.0)

    async def load() -> None:
        await floor.load_campaigns()
        for run in floor.runs.values():  # what the loop's first tick reads
            await floor.loop.refresh_hopper(run, force=True)

    asyncio.run(load())
    now = clock().timestamp()
    floor.pool.load_status(MEMBERS, now - 60.0)
    floor.loop.occupancy.history.extend(
        HistoryPoint(
            T0 + dt.timedelta(minutes=5 * i), 0.5 + 0.04 * (i % 10), 0.01 + 0.001 * i, 5, 3
        )
        for i in range(12)
    )
    return floor


def play(floor: Dialer) -> None:
    """Seed one more moment of the shift: a call of the first running campaign ends (an
    attempt row), an agent is called, a call is followed on the switch, and a history point is
    added."""
    k = len(floor.core.tracker.calls) + 1  # each moment follows one more call
    now = floor.now()
    with floor.store.session() as s:
        row = s.scalars(
            select(Campaign).where(Campaign.state == "running").order_by(Campaign.id)
        ).first()
        if row is None:
            return
        outcome = [Outcome.AGENT_HANDLED, Outcome.NO_ANSWER, Outcome.BUSY, Outcome.COMPLETED][k % 4]
        answered = outcome in (Outcome.AGENT_HANDLED, Outcome.COMPLETED)
        s.add(
            Attempt(
                campaign_id=row.id,
                phone=PHONES[k % len(PHONES)],
                state="ended",
                outcome=outcome.value,
                live_answer=answered,
                created_at=now - dt.timedelta(seconds=40),
                answered_at=now - dt.timedelta(seconds=30) if answered else None,
                ended_at=now,
            )
        )
        cid = row.id
    epoch = now.timestamp()
    member = MEMBERS[k % 4]
    floor.pool.on_event(
        "AgentCalled",
        {
            "Queue": "activation-agents",
            "Interface": member["StateInterface"],
            "MemberName": member["Name"],
        },
        epoch,
    )
    attempt_id = 10_000 + k
    floor.core.tracker.register(attempt_id, f"{attempt_id:036d}", now=epoch)
    floor.loop.attempt_campaign[attempt_id] = cid
    floor.loop.attempt_phone[attempt_id] = PHONES[k % len(PHONES)]
    floor.loop.occupancy.history.append(HistoryPoint(now, 0.6 + 0.01 * (k % 30), 0.01, 5, k))


def seed(store: Store, tmp_path: Path) -> dict[str, Path]:
    """Two campaigns from files, contacts with sensitive fields, a shift of attempts."""
    files = {}
    with store.session() as s:
        for text in (CAMPAIGN_YAML, PREVIEW_YAML):
            f = tmp_path / (text.split("\n", 1)[0].split(": ")[1] + ".yaml")
            f.write_text(text, encoding="utf-8")
            spec = load_campaign_file(f)
            row, _ = apply_campaign(s, spec, source=str(f), actor="test")
            files[spec.name] = f
            # the preview campaign calls other numbers: the shift below put the first six at
            # their daily cap
            phones = PHONES[:6] if spec.name == "card-activation-test" else PHONES[6:]
            for i, phone in enumerate(phones):
                s.add(
                    Contact(
                        campaign_id=row.id,
                        phone=phone,
                        name=f"客户{i}",
                        timezone="Asia/Shanghai",
                        fields={
                            "card_number": CARD,
                            "id_number": ID_NUMBER,
                            "id_hash": keyed_hash(ID_NUMBER[-6:], purpose="id_last6"),
                        },
                        status="done" if i < 2 else "active",
                    )
                )
        s.flush()
        camp = get_campaign(s, "card-activation-test")
        contacts = list(s.scalars(select(Contact).where(Contact.campaign_id == camp.id)))
        # a shift 09:00-11:00 local: 40 attempts, answered/abandoned/handled by two agents
        plan = (
            [Outcome.AGENT_HANDLED] * 14
            + [Outcome.NO_ANSWER] * 10
            + [Outcome.BUSY] * 5
            + [Outcome.MACHINE] * 4
            + [Outcome.COMPLETED] * 4
            + [Outcome.ABANDONED] * 2
            + [Outcome.CUSTOMER_HANGUP]
        )
        for k, outcome in enumerate(plan):
            start = T0 + dt.timedelta(minutes=3 * k)
            answered = outcome not in (Outcome.NO_ANSWER, Outcome.BUSY)
            live = answered and outcome is not Outcome.MACHINE
            a = Attempt(
                campaign_id=camp.id,
                contact_id=contacts[k % len(contacts)].id,
                phone=contacts[k % len(contacts)].phone,
                state="ended",
                outcome=outcome.value,
                live_answer=live,
                created_at=start,
                originated_at=start,
                queue="activation-agents",
            )
            if answered:
                a.answered_at = start + dt.timedelta(seconds=8)
                a.greeting_end_at = start + dt.timedelta(seconds=10)
            if outcome is Outcome.AGENT_HANDLED:
                a.queued_at = a.greeting_end_at
                a.bridged_at = start + dt.timedelta(seconds=11)
                a.agent = f"Local/10{k % 2:02d}@agents"
                a.ended_at = start + dt.timedelta(seconds=100)
            elif outcome is Outcome.ABANDONED:
                a.queued_at = a.greeting_end_at
                a.message_played_at = start + dt.timedelta(seconds=12)
                a.ended_at = start + dt.timedelta(seconds=16)
            else:
                a.ended_at = start + dt.timedelta(seconds=25 if not answered else 60)
            s.add(a)
            s.flush()
            if outcome is Outcome.COMPLETED:
                a.result = "activated"
            if outcome in (Outcome.COMPLETED, Outcome.CUSTOMER_HANGUP):
                sess = IvrSession(
                    attempt_id=a.id,
                    flow="card_activation",
                    status="completed" if outcome is Outcome.COMPLETED else "hangup",
                    result="activated" if outcome is Outcome.COMPLETED else None,
                    started_at=a.answered_at,
                    ended_at=a.ended_at,
                )
                s.add(sess)
                s.flush()
                steps = [
                    ("greeting", "play", "done"),
                    ("verify_id", "verify", "ok"),
                    ("activate", "action", "activated"),
                ]
                if outcome is Outcome.CUSTOMER_HANGUP:
                    steps = [("greeting", "play", "done"), ("verify_id", "verify", "hangup")]
                for seq, (node, kind, res) in enumerate(steps, 1):
                    s.add(
                        IvrStep(
                            session_id=sess.id,
                            seq=seq,
                            node=node,
                            kind=kind,
                            outcome=res,
                            at=a.answered_at,
                        )
                    )
    return files


@dataclass
class Console:
    url: str
    floor: Dialer
    registry: CollectorRegistry
    metrics: DialerMetrics
    session: aiohttp.ClientSession
    responses: list[bytes]

    async def request(
        self, method: str, path: str, *, auth: bool = True, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers["Authorization"] = f"Bearer {TOKEN}"
        async with self.session.request(method, self.url + path, headers=headers, **kw) as r:
            body = await r.read()
            self.responses.append(bytes(r.raw_headers.__repr__(), "utf-8") + body)
            ctype = r.headers.get("Content-Type", "")
            return r.status, (
                await r.json() if ctype.startswith("application/json") else body.decode()
            )


async def run_ticks(floor: Dialer, every_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        play(floor)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
