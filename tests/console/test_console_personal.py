"""A personal callback goes to its agent first, on the simulated floor through the real dialer,
dialplan and app_queue model: every agent's desktop also joins the personal queue with the
user's number as penalty; the callback's call restricts that queue to its agent
(QUEUE_MIN/MAX_PENALTY) and joins it only while that agent is free; otherwise, and after
the fallback time, any agent of the campaign takes it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from dialer.lists.callbacks import PERSONAL_QUEUE, book_callback
from dialer.lists.users import Role, add_user
from dialer.store import Store
from dialer.store.models import Attempt, Contact

from .test_console_desk import CAMPAIGN, CHEAP, PASSWORD, PHONE, Desk, desk_floor

OTHER = "PJSIP/desk-02"
QUEUES = """\
[general]
persistentmembers = no

[sales]
strategy = rrmemory
timeout = 15
retry = 1
wrapuptime = 3
joinempty = yes
ringinuse = no

[dialer-personal]
strategy = ringall
timeout = 15
retry = 1
wrapuptime = 3
joinempty = penalty,paused,inuse,ringing,unavailable,invalid,unknown,wrapup
ringinuse = no
"""
# the agents are ready before each callback is due: a hold limit no stall breaks
PERSONAL = {**CAMPAIGN, "pacing": {**CAMPAIGN["pacing"], "hold_limit_s": 60}}
HOLD_CEILING = "compliance: {hold_limit_s: 60}\n"
DUE_IN = dt.timedelta(seconds=20)  # simulated: 2 s of real time at 10x


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite: a running floor per test is costly; the store side runs on both engines in
    tests/test_wrapup.py."""
    return sqlite_url


async def ready_agent(desk: Desk, name: str) -> aiohttp.ClientSession:
    http = desk.client()
    await desk.sign_in(http, name)
    joined = await desk.post(http, "/api/desk/queues", {"action": "login"})
    assert joined["queues"] == ["sales", PERSONAL_QUEUE]
    await desk.post(http, "/api/desk/state", {"state": "ready"})
    await desk.wait_state(http, "idle")
    return http


def book(desk: Desk, contact_id: int, agent: str) -> dt.datetime:
    now = desk.sim.dialer.now()
    with desk.store.session() as s:
        contact = s.get(Contact, contact_id)
        assert contact is not None
        cb = book_callback(
            s, contact, now + DUE_IN, now=now, booked_by=f"user:{agent}", agent=agent
        )
        return cb.due_at


async def connected_for(desk: Desk, contact_id: int, timeout: float = 20) -> tuple[Any, Attempt]:
    """The AgentConnect of the call to ``contact_id``, and its attempt row."""
    t0 = time.monotonic()
    while True:
        with desk.store.session() as s:
            ids = set(s.scalars(select(Attempt.id).where(Attempt.contact_id == contact_id)))
        hits = [c for _, c in desk.connects if c.attempt_id in ids]
        if hits:
            with desk.store.session() as s:
                attempt = s.get(Attempt, hits[0].attempt_id)
                assert attempt is not None
                s.expunge(attempt)
            return hits[0], attempt
        if time.monotonic() - t0 > timeout:
            with desk.store.session() as s:
                rows = [
                    (a.id, a.state, a.outcome, a.queue, a.agent, a.detail)
                    for a in s.scalars(select(Attempt))
                ]
            raise AssertionError(f"the callback never reached an agent: {rows} {desk.connects}")
        await asyncio.sleep(0.1)


async def test_a_personal_callback_is_dialled_to_its_agent_first(
    store: Store, tmp_path: Path
) -> None:
    queues = tmp_path / "queues.conf"
    queues.write_text(QUEUES, encoding="utf-8")
    with store.session() as s:
        add_user(s, "li.agent", Role.AGENT, PASSWORD, actor="t", passwords=CHEAP, interface=OTHER)
    async with desk_floor(store, tmp_path, PERSONAL, HOLD_CEILING, queues) as desk:
        with store.session() as s:  # nothing to dial but the callbacks booked below
            s.execute(
                update(Contact).values(next_attempt_at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
            )
            first, second, *_ = s.scalars(select(Contact.id).order_by(Contact.id))
        wang = await ready_agent(desk, "wang.agent")
        li = await ready_agent(desk, "li.agent")
        try:
            # both agents free: the call goes to the agent who booked it, through their queue
            due = book(desk, first, "wang.agent")
            hit, attempt = await connected_for(desk, first)
            assert hit.interface == PHONE and hit.queue == PERSONAL_QUEUE
            assert attempt.detail["personal"]["agent"] == "wang.agent"
            assert abs((attempt.created_at - due).total_seconds()) < 10  # at T (simulated)
            # that agent on a break: it is not held for them, any agent takes it at once
            await desk.post(wang, "/api/desk/state", {"state": "pause", "reason": "break"})
            t0 = time.monotonic()  # paused on the switch (the end of the call may hold wrap-up)
            while (await desk.agent_state(wang))["state"] not in ("paused", "wrapup"):
                assert time.monotonic() - t0 < 5
                await asyncio.sleep(0.05)
            book(desk, second, "wang.agent")
            hit, attempt = await connected_for(desk, second)
            assert hit.interface == OTHER and hit.queue == "sales"
            assert attempt.detail["personal"]["agent"] == "wang.agent"  # tried first
        finally:
            await wang.close()
            await li.close()
