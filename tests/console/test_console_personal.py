"""A personal callback on the simulated floor (virtual clock), agent-first: at its due time
the dialer holds its agent, rings the agent's phone, and once the agent answered dials the
customer and bridges them (the shipped dialplan: ``dialer-personal``, ``Bridge()``); no other
agent gets it. An agent who is away is not replaced: the callback waits, and after its
fallback time the campaign's queue takes it as any callback."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from argon2 import PasswordHasher
from sqlalchemy import select, update

from dialer.app.demo import SimFloor, demo_start
from dialer.floor.desk import Connected
from dialer.lists.callbacks import book_callback
from dialer.lists.campaigns import apply_campaign, load_campaign_file
from dialer.lists.contacts import import_contacts
from dialer.lists.users import Passwords, Role, add_user
from dialer.settings import load_settings
from dialer.store import Store
from dialer.store.models import Attempt, Contact
from dialer.store.people import Callback
from dialer.telephony.agents import CALLBACK_PAUSE

from .test_console_live_runner import QUEUES, numbers

START = demo_start(dt.date(2026, 12, 1))  # a Tuesday, 10:00 in Beijing
WANG, LI = "PJSIP/pc-1", "PJSIP/pc-2"
DUE_IN = dt.timedelta(seconds=10)
FALLBACK = dt.timedelta(seconds=45)  # after the first call (20 s talk) and its wrap-up
CAMPAIGN = {
    "name": "collect-personal",
    "state": "running",
    "mode": "progressive",
    "queue": "sales",
    "channel": "Local/{number}@customer",
    "caller_id": "95588",
    "max_attempts": 3,
    "retry": {"no_answer": "2h"},
    "pacing": {"hold_limit_s": 2, "ring_timeout_s": 20, "wrapup_s": 2},
}
SCENARIO = {
    "seed": 3,
    "called_party": {
        "invalid_share": 0.0,
        "busy_share": 0.0,
        "congestion_share": 0.0,
        "answer_probability": 1.0,
        "ring_s": 3,
        "machine_share": 0.0,
        "hangup_after_s": None,
        "queue_patience_s": None,
    },
    "agents": [
        {
            "queue": "sales",
            "count": 2,
            "interface": "PJSIP/pc-{n}",
            "name": "agent {n}",
            "answer_s": 0.5,
            "talk_s": 20,
            "wrapup_s": 1,
            "exclusive": True,
        }
    ],
}


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite: the store side runs on both engines in tests/test_wrapup.py."""
    return sqlite_url


class Floor:
    def __init__(self, sim: SimFloor, store: Store) -> None:
        self.sim = sim
        self.store = store
        self.connects: list[Connected] = []
        self.states: list[tuple[str, str]] = []  # (interface, pacing state) while held

    def now(self) -> dt.datetime:
        return self.sim.dialer.now()

    def book(self, contact_id: int, agent: str) -> Callback:
        with self.store.session() as s:
            contact = s.get(Contact, contact_id)
            assert contact is not None
            now = self.now()
            cb = book_callback(
                s,
                contact,
                now + DUE_IN,
                now=now,
                booked_by=f"user:{agent}",
                agent=agent,
                fallback_after=FALLBACK,
            )
            s.flush()
            s.expunge(cb)
            return cb

    async def ended(self, contact_id: int, timeout: float = 30) -> Attempt:
        """The first attempt of ``contact_id`` once it has its outcome."""
        t0 = time.monotonic()
        while True:
            with self.store.session() as s:
                a = s.scalars(
                    select(Attempt).where(Attempt.contact_id == contact_id).order_by(Attempt.id)
                ).first()
                if a is not None and a.outcome is not None:
                    s.expunge(a)
                    return a
            assert time.monotonic() - t0 < timeout, f"no outcome for contact {contact_id}"
            await asyncio.sleep(0.05)


async def personal_floor(store: Store, tmp_path: Path) -> AsyncIterator[Floor]:
    settings_file = tmp_path / "dialer.yaml"
    settings_file.write_text("default_region: CN\n", encoding="utf-8")
    cfile = tmp_path / "c.yaml"
    cfile.write_text(yaml.safe_dump(CAMPAIGN), encoding="utf-8")
    contacts = tmp_path / "contacts.csv"
    with contacts.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["phone", "name"])
        for i, p in enumerate(numbers(3)):
            w.writerow([p, f"王{i}"])
    cheap = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    with store.session() as s:
        row, _ = apply_campaign(s, load_campaign_file(cfile), source=str(cfile), actor="t")
        assert import_contacts(s, row, contacts, default_region="CN", now=START).imported == 3
        for name, iface in (("wang.agent", WANG), ("li.agent", LI)):
            add_user(
                s, name, Role.AGENT, "violet-harbour-ledger-42", actor="t", passwords=cheap,
                interface=iface,
            )  # fmt: skip
        # nothing to dial but the callbacks booked in the test
        s.execute(update(Contact).values(next_attempt_at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)))
    sim = SimFloor(
        store,
        load_settings(settings_file),
        start=START,
        speed=None,  # the virtual clock: a loaded machine costs no simulated time
        max_speed=None,  # as fast as the machine allows: the test reads store facts only
        scenario=SCENARIO,
        queues=QUEUES,
    )
    async with sim:
        floor = Floor(sim, store)
        sim.dialer.desk.on_connect(floor.connects.append)
        pool = sim.dialer.loop.pool

        def held(_run: Any, _inp: Any, _n: int) -> None:
            for a in pool.agents.values():
                if a.reserved or a.pause_reason == CALLBACK_PAUSE:
                    floor.states.append((a.interface, a.effective_state.value))

        sim.dialer.loop.on_decision.append(held)
        await sim.dialer.load_campaigns()
        task = asyncio.create_task(sim.dialer.run(until_idle=False))
        try:
            yield floor
        finally:
            sim.dialer.stop()
            await asyncio.wait_for(task, 30)


async def test_a_personal_callback_rings_its_agent_then_the_customer_at_its_time(
    store: Store, tmp_path: Path
) -> None:
    async for floor in personal_floor(store, tmp_path):
        with store.session() as s:
            first, second, _ = s.scalars(select(Contact.id).order_by(Contact.id))
        # li is away (paused): their callback is not given to wang before its fallback time
        await floor.sim.dialer.desk.pause(LI, "lunch")
        mine = floor.book(first, "wang.agent")
        theirs = floor.book(second, "li.agent")

        attempt = await floor.ended(first)
        assert attempt.outcome == "agent_handled"
        assert attempt.detail["personal"]["agent"] == "wang.agent"
        assert attempt.detail["personal"]["channel"].startswith(WANG + "-")
        assert attempt.agent == "wang.agent"
        due = mine.due_at.replace(tzinfo=dt.UTC)
        created = attempt.created_at.replace(tzinfo=dt.UTC)
        # at T on the simulated clock: the agent's phone rang at T (polled each second), the
        # customer's leg left once the agent answered (2 s)
        assert due <= created <= due + dt.timedelta(seconds=6), (due, created)
        pops = [c for c in floor.connects if c.attempt_id == attempt.id]
        assert [(c.interface, c.queue) for c in pops] == [(WANG, None)]  # not another agent
        assert attempt.bridged_at is not None  # the agent saw the customer as it was dialled
        assert pops[0].at <= attempt.bridged_at.replace(tzinfo=dt.UTC).timestamp()
        # while held for the callback, pacing saw wang busy, never free
        assert (WANG, "talking") in floor.states
        assert {st for iface, st in floor.states if iface == WANG} == {"talking"}

        later = await floor.ended(second)
        fallback = theirs.fallback_at.replace(tzinfo=dt.UTC) if theirs.fallback_at else None
        assert fallback is not None
        assert later.created_at.replace(tzinfo=dt.UTC) >= fallback  # waited for li until then
        assert "personal" not in (later.detail or {})  # then the campaign's, any agent
        assert later.outcome == "agent_handled" and later.queue == "sales"
        assert [c.interface for c in floor.connects if c.attempt_id == later.id] == [WANG]
        with store.session() as s:
            states = {cb.contact_id: cb.state for cb in s.scalars(select(Callback))}
        assert states == {first: "dialled", second: "dialled"}


async def test_a_callback_hold_nobody_serves_is_lifted(store: Store, tmp_path: Path) -> None:
    """A dialer that stopped while it held an agent leaves the switch's ``callback`` pause:
    the floor that serves the switch lifts it, so the agent is not left out of work."""
    async for floor in personal_floor(store, tmp_path):
        desk = floor.sim.dialer.desk
        await desk.pause(LI, CALLBACK_PAUSE)
        t0 = time.monotonic()
        while (agent := desk.agent(LI)) is None or agent.pause_reason != CALLBACK_PAUSE:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.05)
        held_at = floor.now()
        assert agent.effective_state.value == "talking"  # counted busy while held
        while agent.paused:
            assert time.monotonic() - t0 < 20, "the stale hold was never lifted"
            await asyncio.sleep(0.05)
        assert floor.now() - held_at >= dt.timedelta(seconds=60)
        assert agent.effective_state.value == "idle"
