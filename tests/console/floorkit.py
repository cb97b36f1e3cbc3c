"""A small ``Floor`` over a REAL store, for testing the console before the runner lands.

Campaigns, contacts, attempts, IVR sessions and audit rows are real rows in a real SQLite
store; the figures come from ``dialer.lists.stats``. Agents and calls live in memory (the runner
tracks them from AMI). ``tick()`` plays one more call so numbers move.

Deliberately, ``preview_next`` passes the contact's stored fields through WITHOUT masking
(seeded with a card number and an ID number in clear): the leak tests then check that the
console's own scrubbing keeps them out of every response.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import func, select

from dialer.errors import ConfigError
from dialer.floor.console import DialerMetrics
from dialer.floor.view import (
    AgentSnapshot,
    AgentState,
    CallSnapshot,
    CampaignSnapshot,
    Floor,
    HistoryPoint,
    RateWindow,
)
from dialer.lists.campaigns import (
    Pacing,
    apply_campaign,
    get_campaign,
    load_campaign_file,
    spec_of,
)
from dialer.lists.stats import abandon_rates, outcome_counts
from dialer.outcomes import Outcome
from dialer.privacy import keyed_hash, mask_phone
from dialer.settings import format_validation_error
from dialer.store import Store
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact, IvrSession, IvrStep

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


class StoreFloor:
    def __init__(
        self, store: Store, clock: Callable[[], dt.datetime], files: Mapping[str, Path]
    ) -> None:
        self.store = store
        self.clock = clock
        self.files = dict(files)  # campaign name -> its file
        self.errors: dict[str, str] = {}
        self.rng = random.Random(7)
        now = clock()
        self._agents = [
            AgentSnapshot(
                f"Local/10{i:02d}@agents",
                ("activation-agents",),
                st,
                now - dt.timedelta(seconds=30 * i),
                i,
            )
            for i, st in enumerate(
                [
                    AgentState.IDLE,
                    AgentState.TALKING,
                    AgentState.TALKING,
                    AgentState.WRAPUP,
                    AgentState.PAUSED,
                ]
            )
        ]
        self._calls: list[CallSnapshot] = []
        self._history: list[HistoryPoint] = [
            HistoryPoint(
                T0 + dt.timedelta(minutes=5 * i), 0.5 + 0.04 * (i % 10), 0.01 + 0.001 * i, 5, 3
            )
            for i in range(12)
        ]
        self.ticks = 0

    def now(self) -> dt.datetime:
        return self.clock()

    # --- reads ----------------------------------------------------------------------------
    def campaigns(self) -> list[CampaignSnapshot]:
        now = self.now()
        out = []
        with self.store.session() as s:
            for row in s.scalars(select(Campaign).order_by(Campaign.name)):
                spec = spec_of(row)
                n_contacts = (
                    s.scalar(select(func.count()).where(Contact.campaign_id == row.id)) or 0
                )
                n_done = (
                    s.scalar(
                        select(func.count()).where(
                            Contact.campaign_id == row.id, Contact.status == "done"
                        )
                    )
                    or 0
                )
                n_attempts = (
                    s.scalar(select(func.count()).where(Attempt.campaign_id == row.id)) or 0
                )
                answered = (
                    s.scalar(
                        select(func.count()).where(
                            Attempt.campaign_id == row.id, Attempt.answered_at.is_not(None)
                        )
                    )
                    or 0
                )
                later = (
                    s.scalar(
                        select(func.count()).where(
                            Contact.campaign_id == row.id,
                            Contact.status == "active",
                            Contact.next_attempt_at > now,
                        )
                    )
                    or 0
                )
                rates = abandon_rates(s, row.id, now, cap_window=spec.pacing.abandon_window)
                in_flight = sum(1 for c in self._calls if c.campaign == row.name)
                idle = sum(1 for a in self._agents if a.state is AgentState.IDLE)
                logged_in = sum(1 for a in self._agents if a.state is not AgentState.LOGGED_OUT)
                out.append(
                    CampaignSnapshot(
                        name=row.name,
                        state=row.state,
                        mode=row.mode,
                        effective_mode=row.mode,
                        purpose=row.purpose,
                        contacts=n_contacts,
                        contacts_done=n_done,
                        attempts=n_attempts,
                        calls_in_flight=in_flight,
                        dial_level=in_flight / max(1, idle),
                        lines_per_agent=round((in_flight + 1.5) / max(1, logged_in), 3),
                        answer_rate=answered / n_attempts if n_attempts else 0.0,
                        abandon={
                            k: RateWindow(v.live_answers, v.abandoned, v.rate)
                            for k, v in rates.items()
                        },
                        abandon_cap=spec.pacing.abandon_cap,
                        hopper_eligible=n_contacts - n_done - later,
                        hopper_reasons={"retry_later": later, "done": n_done},
                        pacing=spec.to_document()["pacing"],
                        outcomes=outcome_counts(s, row.id),
                        last_error=self.errors.get(row.name),
                    )
                )
        return out

    def agents(self) -> list[AgentSnapshot]:
        return list(self._agents)

    def calls(self) -> list[CallSnapshot]:
        return list(self._calls)

    def history(self) -> list[HistoryPoint]:
        return list(self._history)

    # --- actions --------------------------------------------------------------------------
    async def _set_state(self, campaign: str, state: str, actor: str) -> None:
        with self.store.session() as s:
            row = get_campaign(s, campaign)
            row.state = state
            s.add(
                AuditEntry(actor=actor, action=f"campaign.{state}", campaign_id=row.id, detail={})
            )

    async def pause(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, "paused", actor)

    async def resume(self, campaign: str, *, actor: str) -> None:
        await self._set_state(campaign, "running", actor)

    async def set_pacing(
        self, campaign: str, changes: Mapping[str, Any], *, actor: str
    ) -> Mapping[str, Any]:
        with self.store.session() as s:
            row = get_campaign(s, campaign)
            spec = spec_of(row)
            try:
                pacing = Pacing.model_validate({**row.spec["pacing"], **changes})
            except ValidationError as exc:
                raise ConfigError(format_validation_error("pacing", exc)) from exc
            doc = spec.model_copy(update={"pacing": pacing}).to_document()
            row.spec = {**doc, "state": row.state}
            s.add(
                AuditEntry(
                    actor=actor,
                    action="pacing.change",
                    campaign_id=row.id,
                    detail={"changes": dict(changes)},
                )
            )
            return doc["pacing"]

    async def preview_next(
        self, campaign: str, agent: str, *, actor: str
    ) -> Mapping[str, Any] | None:
        with self.store.session() as s:
            row = get_campaign(s, campaign)
            c = s.scalars(
                select(Contact)
                .where(Contact.campaign_id == row.id, Contact.status == "active")
                .order_by(Contact.priority.desc(), Contact.id)
            ).first()
            if c is None:
                return None
            s.add(
                AuditEntry(
                    actor=actor, action="preview.next", campaign_id=row.id, detail={"agent": agent}
                )
            )
            # fields in clear on purpose: see the module docstring
            return {
                "contact_id": c.id,
                "name": c.name,
                "phone": mask_phone(c.phone),
                "fields": dict(c.fields),
            }

    async def reload(self, path: str | None = None, *, actor: str) -> list[str]:
        targets = [(n, f) for n, f in self.files.items() if path is None or str(f) == str(path)]
        specs = []
        for name, f in targets:
            try:
                specs.append((name, f, load_campaign_file(f)))
            except ConfigError as exc:
                self.errors[name] = f"reload refused: {exc}"
                raise
        changed = []
        with self.store.session() as s:
            for name, f, spec in specs:
                row = get_campaign(s, name)
                before = dict(row.spec)
                apply_campaign(s, spec, source=str(f), actor=actor)
                self.errors.pop(name, None)
                if row.spec != before:
                    changed.append(name)
        return changed

    # --- simulation ---------------------------------------------------------------------
    def tick(self) -> None:
        """One more call ends; agents and calls move; a history point is added."""
        now = self.now()
        self.ticks += 1
        with self.store.session() as s:
            row = s.scalars(
                select(Campaign).where(Campaign.state == "running").order_by(Campaign.id)
            ).first()
            if row is not None:
                outcome = self.rng.choice(
                    [Outcome.AGENT_HANDLED, Outcome.NO_ANSWER, Outcome.BUSY, Outcome.COMPLETED]
                )
                answered = outcome in (Outcome.AGENT_HANDLED, Outcome.COMPLETED)
                s.add(
                    Attempt(
                        campaign_id=row.id,
                        phone=PHONES[self.ticks % len(PHONES)],
                        state="ended",
                        outcome=outcome.value,
                        live_answer=answered,
                        created_at=now - dt.timedelta(seconds=40),
                        answered_at=now - dt.timedelta(seconds=30) if answered else None,
                        ended_at=now,
                    )
                )
        states = list(AgentState)[:4]
        i = self.ticks % len(self._agents)
        a = self._agents[i]
        self._agents[i] = AgentSnapshot(
            a.name, a.queues, states[self.ticks % 4], now, a.calls_handled + 1
        )
        self._calls = [
            CallSnapshot(
                10_000 + self.ticks + k, "card-activation-test", st, now, mask_phone(PHONES[k])
            )
            for k, st in enumerate(["dialing", "ringing", "with_agent"][: 1 + self.ticks % 3])
        ]
        self._history.append(
            HistoryPoint(
                now, self.rng.uniform(0.6, 0.95), self.rng.uniform(0.0, 0.03), 5, len(self._calls)
            )
        )


def as_floor(f: StoreFloor) -> Floor:
    """mypy checks here that the test floor really implements the protocol."""
    return f


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
            for i, phone in enumerate(PHONES[:6]):
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
    floor: StoreFloor
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


async def run_ticks(floor: StoreFloor, every_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        floor.tick()
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
