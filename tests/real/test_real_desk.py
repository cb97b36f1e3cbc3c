"""The agent's desktop on a real Asterisk 22: the agent's phone is a Local channel that joins
the queue from the desktop (``QueueAdd``), pauses with a reason (``QueuePause``, seen in the
switch's own ``QueueStatus``), goes ready, gets the screen-pop within a second of the real
``AgentConnect`` and saves a disposition against the attempt."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import aiohttp
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.floor.console import start_console
from dialer.floor.desk import Connected
from dialer.lists.callbacks import book_callback
from dialer.lists.users import Passwords, Role, add_user
from dialer.privacy import mask_phone
from dialer.store import Store
from dialer.store.models import Attempt, Contact

from .conftest import RealFloor, campaign, load, phone

PHONE = "Local/agent04@test-agents/n"  # answers, talks 4 s, hangs up
PASSWORD = "violet-harbour-ledger-42"
TOKEN = "tQ8-vX2kR7pLm4Zs9WcN1bYh"
CHEAP = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def test_the_desk_on_the_real_switch(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    doc = campaign(
        "desk-real",
        "progressive",
        queue="deskq",
        pacing={"hold_limit_s": 15},
        dispositions={"promise_to_pay": {"fields": {"amount": "decimal"}, "then": "retry 3d"}},
        script="Hello, this is the card centre.",
    )
    load(store, tmp_path, doc, [{"phone": phone("999", 1), "name": "张三"}])
    with store.session() as s:
        add_user(s, "zhang", Role.AGENT, PASSWORD, actor="t", passwords=CHEAP, interface=PHONE)
    floor = real_floor.dialer
    connects: list[tuple[float, Connected]] = []
    floor.desk.on_connect(lambda c: connects.append((time.monotonic(), c)))
    await real_floor.core.wait_ready(10)
    await floor.load_campaigns()
    runner, port = await start_console(
        floor, port=0, token=TOKEN, registry=CollectorRegistry(), store=store, passwords=CHEAP
    )
    url = f"http://127.0.0.1:{port}"
    task = asyncio.create_task(floor.run(until_idle=False))
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:

            async def post(path: str, body: object) -> dict:
                async with http.post(url + path, json=body) as r:
                    data = await r.json()
                    assert r.status == 200, (path, data)
                    return dict(data)

            async def state() -> dict:
                async with http.get(url + "/api/desk") as r:
                    return dict((await r.json())["agent"])

            async def wait_state(want: str) -> dict:
                t0 = time.monotonic()
                while (got := await state())["state"] != want:
                    assert time.monotonic() - t0 < 5, got
                    await asyncio.sleep(0.05)
                return got

            await post("/api/login", {"username": "zhang", "password": PASSWORD})
            joined = (await post("/api/desk/queues", {"action": "login"}))["queues"]
            assert joined == ["deskq"]
            await post("/api/desk/state", {"state": "pause", "reason": "lunch"})
            assert (await wait_state("paused"))["pause_reason"] == "lunch"
            status = await real_floor.core.client.action("QueueStatus", [("Queue", "deskq")])
            (member,) = [e.headers for e in status.events if e.name == "QueueMember"]
            assert member.get("Paused") == "1" and member.get("PausedReason") == "lunch"
            assert not connects  # paused: the campaign's call waits for a ready agent
            async with http.get(url + "/api/desk/events") as stream:
                await post("/api/desk/state", {"state": "ready"})
                pop = None
                event = None
                async with asyncio.timeout(20):
                    async for raw in stream.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "pop":
                            arrived, pop = time.monotonic(), json.loads(line[6:])
                            break
            assert pop is not None
            (connected_at, connected), *_ = connects
            assert connected.interface == PHONE and arrived - connected_at < 1.0
            assert pop["customer"]["phone"] == mask_phone(phone("999", 1))
            assert pop["customer"]["name"] == "张三" and pop["script"].startswith("Hello")
            saved = await post(
                "/api/desk/disposition",
                {
                    "attempt_id": pop["attempt_id"],
                    "code": "promise_to_pay",
                    "fields": {"amount": "300"},
                },
            )
            assert saved["code"] == "promise_to_pay"
            t0 = time.monotonic()
            while True:
                with store.session() as s:
                    a = s.scalars(select(Attempt)).one()
                    if a.outcome is not None:
                        break
                assert time.monotonic() - t0 < 20
                await asyncio.sleep(0.2)
            assert a.outcome == "agent_handled" and a.result == "promise_to_pay"
            await post("/api/desk/queues", {"action": "logout"})
            t0 = time.monotonic()
            while "deskq" in (await state())["queues"]:  # QueueMemberRemoved reached the pool
                assert time.monotonic() - t0 < 5
                await asyncio.sleep(0.05)
    finally:
        floor.stop()
        await asyncio.wait_for(task, 10)
        await runner.cleanup()


async def test_a_personal_callback_rings_its_agent_first_on_the_real_switch(
    store: Store, tmp_path: Path, real_floor: RealFloor
) -> None:
    """Two agents ready on the desk's queue; a personal callback for one of them at T rings
    that agent's phone (a Local channel into ``dialer-personal``), then the customer, who is
    bridged to it (``Bridge()``); with that agent paused, the next one waits for them until
    its fallback time, then the campaign's queue gives it to the other agent."""
    mine = "Local/agent05@test-agents/n"  # answers, talks 10 s
    other = "Local/agent02@test-agents/n"
    doc = campaign("desk-personal", "progressive", queue="deskq", pacing={"hold_limit_s": 15})
    rows = [{"phone": phone("999", i), "name": f"客户{i}"} for i in (1, 2)]
    load(store, tmp_path, doc, rows)
    with store.session() as s:
        add_user(s, "zhang", Role.AGENT, PASSWORD, actor="t", passwords=CHEAP, interface=mine)
        add_user(s, "li", Role.AGENT, PASSWORD, actor="t", passwords=CHEAP, interface=other)
        contacts = list(s.scalars(select(Contact).order_by(Contact.id)))
        for c in contacts:  # nothing to dial but the callbacks booked below
            c.next_attempt_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        first, second = (c.id for c in contacts)
    floor = real_floor.dialer
    connects: list[Connected] = []
    floor.desk.on_connect(connects.append)
    await real_floor.core.wait_ready(10)
    await floor.load_campaigns()
    runner, port = await start_console(
        floor, port=0, token=TOKEN, registry=CollectorRegistry(), store=store, passwords=CHEAP
    )
    url = f"http://127.0.0.1:{port}"
    task = asyncio.create_task(floor.run(until_idle=False))
    try:
        sessions = {}
        for name in ("zhang", "li"):
            http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            sessions[name] = http
            for path, body in (
                ("/api/login", {"username": name, "password": PASSWORD}),
                ("/api/desk/queues", {"action": "login"}),
                ("/api/desk/state", {"state": "ready"}),
            ):
                async with http.post(url + path, json=body) as r:
                    assert r.status == 200, await r.text()

        def book(contact_id: int, fallback_s: float) -> dt.datetime:
            now = floor.now()
            with store.session() as s:
                c = s.get(Contact, contact_id)
                assert c is not None
                cb = book_callback(
                    s,
                    c,
                    now + dt.timedelta(seconds=2),
                    now=now,
                    booked_by="t",
                    agent="zhang",
                    fallback_after=dt.timedelta(seconds=fallback_s),
                )
                return cb.due_at

        async def connect_for(contact_id: int) -> tuple[Connected, Attempt]:
            t0 = time.monotonic()
            while True:
                with store.session() as s:
                    rows = {
                        a.id: a
                        for a in s.scalars(select(Attempt).where(Attempt.contact_id == contact_id))
                    }
                    for a in rows.values():
                        s.expunge(a)
                hit = [c for c in connects if c.attempt_id in rows]
                if hit:
                    return hit[0], rows[hit[0].attempt_id]
                assert time.monotonic() - t0 < 40, (connects, rows)
                await asyncio.sleep(0.1)

        for _ in range(50):  # both members joined and ready on the switch
            agents = {a.interface: a for a in floor.desk.loop.pool.agents.values()}
            if all(i in agents and not agents[i].paused for i in (mine, other)):
                break
            await asyncio.sleep(0.1)
        due = book(first, 600)
        hit, attempt = await connect_for(first)
        assert (hit.interface, hit.queue) == (mine, None)  # the agent's phone, no queue
        assert attempt.detail["personal"]["agent"] == "zhang"
        assert attempt.created_at.replace(tzinfo=dt.UTC) >= due
        async with sessions["zhang"].post(
            url + "/api/desk/state", json={"state": "pause", "reason": "break"}
        ) as r:
            assert r.status == 200
        for _ in range(150):
            agent = floor.desk.agent(mine)
            if agent is not None and agent.paused and agent.pause_reason == "break":
                break
            await asyncio.sleep(0.1)
        due = book(second, 6)
        hit, attempt = await connect_for(second)
        assert (hit.interface, hit.queue) == (other, "deskq")
        assert attempt.created_at.replace(tzinfo=dt.UTC) >= due + dt.timedelta(seconds=6)
        assert "personal" not in (attempt.detail or {})
        for http in sessions.values():
            await http.close()
    finally:
        floor.stop()
        await asyncio.wait_for(task, 10)
        await runner.cleanup()
