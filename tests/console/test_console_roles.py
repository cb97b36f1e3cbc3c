"""Users and roles on the console: every route tried with each role and without a session.

``EXPECTED`` is the table the product must keep (written here, not read from the product):
the least role each route needs. A route the console serves that the table does not list fails
the test, so a new route is never open by accident.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.floor.console import start_console
from dialer.floor.service import Dialer
from dialer.lists.users import LOCKOUT_AFTER, Passwords, Role, add_user, list_users
from dialer.store import Store
from dialer.store.models import AuditEntry

from .floorkit import TOKEN

CHEAP = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
PASSWORD = "violet-harbour-ledger-42"
A, S, M = Role.AGENT, Role.SUPERVISOR, Role.ADMIN
OPEN = None  # no session needed

EXPECTED: dict[tuple[str, str], Role | None] = {
    ("GET", "/"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/desk"): OPEN,
    ("GET", "/users"): OPEN,  # the page; its API calls need an admin
    ("PATCH", "/api/users/{username}"): M,
    ("POST", "/api/login"): OPEN,
    ("POST", "/api/logout"): A,
    ("GET", "/api/session"): A,
    ("GET", "/api/snapshot"): S,
    ("GET", "/api/campaigns"): S,
    ("GET", "/api/campaigns/{name}"): S,
    ("GET", "/api/campaigns/{name}/report"): S,
    ("POST", "/api/campaigns/{name}/pause"): S,
    ("POST", "/api/campaigns/{name}/resume"): S,
    ("PATCH", "/api/campaigns/{name}/pacing"): S,
    ("POST", "/api/campaigns/{name}/preview-next"): S,
    ("GET", "/api/agents"): S,
    ("GET", "/api/calls"): S,
    ("GET", "/api/history"): S,
    ("GET", "/api/workers"): S,
    ("GET", "/api/events"): S,
    ("POST", "/api/reload"): M,
    ("GET", "/api/reloads"): S,
    ("GET", "/api/alarms"): S,
    ("GET", "/api/messages"): S,
    ("POST", "/api/replies/{id}/handled"): S,
    ("GET", "/api/audit"): S,
    ("GET", "/api/handle-times"): S,
    ("GET", "/api/users"): M,
    ("GET", "/api/desk"): A,
    ("GET", "/api/desk/events"): A,
    ("POST", "/api/desk/queues"): A,
    ("POST", "/api/desk/state"): A,
    ("POST", "/api/desk/disposition"): A,
    ("POST", "/api/desk/next"): A,
    ("POST", "/api/desk/preview/dial"): A,
    ("POST", "/api/desk/preview/skip"): A,
    ("POST", "/api/desk/manual"): A,
    ("POST", "/api/agents/force"): S,
    ("POST", "/api/users"): M,
    ("POST", "/api/users/{username}/disable"): M,
    ("POST", "/api/users/{username}/enable"): M,
    ("POST", "/api/users/{username}/password"): M,
    ("POST", "/api/v1/alerts"): M,  # the bank's systems (the token, or their own credential)
    ("GET", "/api/v1/alerts"): S,
    ("GET", "/api/v1/alerts/{id}"): S,
}
FILL = {"{name}": "card-activation-test", "{id}": "1", "{username}": "nobody-here"}
USERS = {
    "agent": (A, "Local/1000@agents", ()),
    "supervisor": (S, "Local/1001@agents", ()),  # a supervisor may take calls too
    "admin": (M, "Local/1002@agents", ()),
    "narrow": (S, None, ("preview-test",)),  # a supervisor of another campaign
}


@dataclass
class Site:
    url: str
    store: Store


@pytest.fixture
async def site(floor: Dialer, store: Store) -> AsyncIterator[Site]:
    with store.session() as s:
        for name, (role, iface, camps) in USERS.items():
            add_user(
                s,
                f"{name}.user",
                role,
                PASSWORD,
                actor="test",
                passwords=CHEAP,
                interface=iface,
                campaigns=camps,
            )
    runner, port = await start_console(
        floor,
        port=0,
        token=TOKEN,
        registry=CollectorRegistry(),
        store=store,
        passwords=CHEAP,
        push_interval_s=0.2,
    )
    yield Site(f"http://127.0.0.1:{port}", store)
    await runner.cleanup()


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1


async def _signed_in(site: Site, name: str) -> aiohttp.ClientSession:
    http = _client()
    async with http.post(
        site.url + "/api/login", json={"username": f"{name}.user", "password": PASSWORD}
    ) as r:
        assert r.status == 200, await r.text()
    return http


async def _status(http: aiohttp.ClientSession, url: str, method: str, path: str) -> int:
    for k, v in FILL.items():
        path = path.replace(k, v)
    kw = {"json": {}} if method in ("POST", "PATCH") and path != "/api/login" else {}
    async with http.request(method, url + path, timeout=aiohttp.ClientTimeout(5), **kw) as r:
        return r.status


async def test_every_route_with_each_role_and_without_a_session(site: Site) -> None:
    async with aiohttp.ClientSession() as probe:
        async with probe.get(site.url + "/healthz") as r:
            assert r.status == 503  # open to all; the seeded floor's switch never connected
    from dialer.floor.console.app import ROUTES

    served = {(m, p) for m, p, _ in ROUTES}
    assert served == set(EXPECTED), "every route needs a row in EXPECTED"
    sessions = {name: await _signed_in(site, name) for name in ("agent", "supervisor", "admin")}
    sessions["none"] = _client()
    rank = {"agent": A, "supervisor": S, "admin": M}
    try:
        for (method, path), need in sorted(EXPECTED.items(), key=lambda kv: kv[0][1]):
            if path in ("/api/logout", "/api/login"):
                continue  # signing out would end the sessions under test
            for who, http in sessions.items():
                status = await _status(http, site.url, method, path)
                where = f"{method} {path} as {who}: {status}"
                if need is None:
                    assert status not in (401, 403), where
                elif who == "none":
                    assert status == 401, where
                elif rank[who].at_least(need):
                    assert status not in (401, 403), where
                else:
                    assert status == 403, where
    finally:
        for http in sessions.values():
            await http.close()


async def test_a_supervisor_sees_only_their_campaigns(site: Site) -> None:
    http = await _signed_in(site, "narrow")
    try:
        assert await _status(http, site.url, "POST", "/api/campaigns/{name}/pause") == 403
        assert await _status(http, site.url, "GET", "/api/desk") == 403  # no phone bound
        async with http.post(site.url + "/api/campaigns/preview-test/pause", json={}) as r:
            assert r.status == 200
        for path in ("/api/campaigns", "/api/snapshot"):
            async with http.get(site.url + path) as r:
                got = await r.json()
            camps = got if path == "/api/campaigns" else got["campaigns"]
            assert [c["name"] for c in camps] == ["preview-test"], path
        async with http.get(site.url + "/healthz") as r:
            assert r.status == 503  # the seeded floor's switch never connected
            assert list((await r.json())["campaigns"]) == ["preview-test"]
        async with _client() as anonymous, anonymous.get(site.url + "/healthz") as r:
            assert r.status == 503
            body = await r.json()  # up or down, no campaign named
            assert set(body) == {"ok", "at", "dependencies"}, body
        async with http.get(site.url + "/api/audit") as r:
            rows = await r.json()
        assert {row["campaign"] for row in rows} == {"preview-test"}
        async with http.get(site.url + "/api/handle-times") as r:
            assert r.status == 200
            theirs = await r.json()
        assert theirs["rows"] == [] and theirs["all"]["calls"] == 0
    finally:
        await http.close()


async def first_snapshot(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The first ``snapshot`` event of the console's event stream."""
    async with http.get(url + "/api/events") as r:
        assert r.status == 200
        async with asyncio.timeout(10):
            async for raw in r.content:
                line = raw.decode()
                if line.startswith("data: "):
                    return dict(json.loads(line[6:]))
    raise AssertionError("no snapshot event")


async def test_the_event_stream_carries_only_a_supervisors_campaigns(site: Site) -> None:
    narrow = await _signed_in(site, "narrow")
    full = await _signed_in(site, "supervisor")
    try:
        theirs = await first_snapshot(narrow, site.url)
        everything = await first_snapshot(full, site.url)
        async with narrow.get(site.url + "/api/agents") as r:
            agents = await r.json()
    finally:
        await narrow.close()
        await full.close()
    assert [c["name"] for c in theirs["campaigns"]] == ["preview-test"]
    assert all(k["campaign"] == "preview-test" for k in theirs["calls"]["calls"])
    assert sum(theirs["calls"]["by_state"].values()) == len(theirs["calls"]["calls"])
    # the floor's agents all work activation-agents: none is on preview-test's queue
    assert theirs["agents"]["agents"] == [] and theirs["agents"]["by_state"] == {}
    assert agents["agents"] == []
    assert "card-activation-test" not in json.dumps(theirs, ensure_ascii=False)
    assert {c["name"] for c in everything["campaigns"]} == {"card-activation-test", "preview-test"}
    assert len(everything["agents"]["agents"]) == 5
    assert any(a["subject"] == "card-activation-test" for a in everything["health"]["alarms"])
    assert theirs["health"]["alarms"] == [] and list(theirs["health"]["campaigns"]) == [
        "preview-test"
    ]


async def test_average_handle_time_per_agent_and_queue_over_the_shift(site: Site) -> None:
    """The seeded floor's handled calls: 89 s of talk each, no disposition (the queue's
    wrap-up of 10 s): 99 s each, in the API and in the supervisors' snapshot."""
    http = await _signed_in(site, "supervisor")
    try:
        async with http.get(site.url + "/api/handle-times") as r:
            got = await r.json()
        assert got["since"].startswith("2026-11-29T16:00")  # midnight in Beijing
        (camp,) = got["by_campaign"]
        assert camp["name"] == "card-activation-test" and camp["calls"] > 0
        assert camp["aht_s"] == 99.0 and camp["talk_s"] == 89.0 * camp["calls"]
        assert {q["name"] for q in got["by_queue"]} == {"activation-agents"}
        assert {a["name"] for a in got["by_agent"]} == {"Local/1000@agents", "Local/1001@agents"}
        async with http.get(site.url + "/api/handle-times?from=2026-12-01") as r:
            assert (await r.json())["all"]["calls"] == 0
        async with http.get(site.url + "/api/handle-times?tz=Mars/Base") as r:
            assert r.status == 400
        for _ in range(100):  # the board reads the store every second
            async with http.get(site.url + "/api/snapshot") as r:
                snap = await r.json()
            if "handle_times" in snap:
                break
            await asyncio.sleep(0.05)
        assert snap["handle_times"]["by_agent"] == got["by_agent"]
    finally:
        await http.close()


async def test_actions_are_audited_under_the_user_and_disabling_ends_sessions(
    site: Site,
) -> None:
    sup = await _signed_in(site, "supervisor")
    admin = await _signed_in(site, "admin")
    try:
        async with sup.post(
            site.url + "/api/campaigns/card-activation-test/pause",
            json={},
            headers={"X-Actor": "someone-else"},  # a user cannot claim another name
        ) as r:
            assert r.status == 200
        async with admin.post(site.url + "/api/users/supervisor.user/disable") as r:
            assert r.status == 200
        async with sup.get(site.url + "/api/campaigns") as r:
            assert r.status == 401
        async with admin.get(site.url + "/api/audit?format=csv") as r:
            assert r.status == 200 and r.content_type == "text/csv"
            text = await r.text()
        assert "user:supervisor.user,campaign.pause,card-activation-test" in text
        assert "user:admin.user,user.disable" in text
    finally:
        await sup.close()
        await admin.close()


async def test_wrong_passwords_lock_the_account_and_the_address(site: Site) -> None:
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(LOCKOUT_AFTER + 1):
            async with http.post(
                site.url + "/api/login", json={"username": "agent.user", "password": "nope-nope"}
            ) as r:
                statuses.append(r.status)
        assert statuses[:LOCKOUT_AFTER] == [401] * LOCKOUT_AFTER
        assert statuses[-1] == 429  # the address throttle (issue 20) holds for users too
    await asyncio.sleep(0)
    with site.store.session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry))]
        locked = [a for a in s.scalars(select(AuditEntry)) if a.action == AuditAction.USER_LOCKED]
    assert actions.count(AuditAction.USER_LOGIN_FAILED) == LOCKOUT_AFTER
    assert locked and dt.datetime.fromisoformat(locked[0].detail["until"]) > dt.datetime.now(dt.UTC)


async def test_the_session_cookie_is_httponly_and_samesite(site: Site) -> None:
    async with _client() as http:
        async with http.post(
            site.url + "/api/login", json={"username": "supervisor.user", "password": PASSWORD}
        ) as r:
            cookie = r.headers["Set-Cookie"]
            body = await r.json()
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert body["user"]["role"] == "supervisor" and "password" not in str(body)
        pause = site.url + "/api/campaigns/card-activation-test/pause"
        async with http.post(pause, json={}, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403  # a cookie write from a foreign page
        async with http.post(pause, json={}, headers={"Origin": site.url}) as r:
            assert r.status == 200
        async with http.post(site.url + "/api/logout") as r:
            assert r.status == 200
        async with http.get(site.url + "/api/session") as r:
            assert r.status == 401  # signed out: the session is gone


async def test_an_admin_changes_a_users_role_and_campaigns_through_the_api(site: Site) -> None:
    admin = await _signed_in(site, "admin")
    sup = await _signed_in(site, "supervisor")
    try:
        path = site.url + "/api/users/narrow.user"
        async with admin.patch(path, json={"campaigns": ["card-activation-test"]}) as r:
            assert r.status == 200 and (await r.json())["campaigns"] == ["card-activation-test"]
        for body, why in [
            ({"role": "boss"}, "role is one of"),
            ({"campaigns": "all"}, "list of campaign names"),
            ({"password": "x"}, "unknown keys"),
            ({"role": "agent"}, "needs --interface"),
        ]:
            async with admin.patch(path, json=body) as r:
                assert r.status == 400 and why in (await r.json())["error"], body
        async with admin.patch(
            path, json={"role": "admin"}, headers={"Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403  # a page of another site cannot act with the cookie
        async with sup.patch(path, json={"role": "admin"}) as r:
            assert r.status == 403
        async with admin.get(site.url + "/api/users") as r:
            (narrow,) = [u for u in await r.json() if u["username"] == "narrow.user"]
        assert narrow["role"] == "supervisor"
    finally:
        await admin.close()
        await sup.close()


def drive_the_users_page(browser: Any, url: str) -> dict[str, str]:
    """An admin in the users page (blocking Selenium; run in a thread)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from .test_console_browser import wait_for

    def el(css: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, css)

    def row(name: str) -> Any:
        return el(f'#users tr[data-user="{name}"]')

    browser.get(url + "/users")
    wait_for(lambda: el("#login").is_displayed(), what="sign-in form")
    el("#username").send_keys("supervisor.user")
    el("#password").send_keys(PASSWORD)
    el("#login-btn").click()
    wait_for(lambda: "for admins" in el("#login-msg").text, what="a supervisor refused")
    el("#username").clear()
    el("#username").send_keys("admin.user")
    el("#password").send_keys(PASSWORD)
    el("#login-btn").click()
    wait_for(lambda: el("#admin").is_displayed(), what="the users page")
    wait_for(lambda: row("narrow.user").is_displayed(), what="the users")
    # add: a weak password is refused with the reason, then a good one
    el("#new-username").send_keys("zhao.agent")
    el("#new-display").send_keys("赵坐席")
    el("#new-interface").send_keys("PJSIP/2001")
    el("#new-campaigns").send_keys("card-activation-test")
    el("#new-password").send_keys("password123")
    el("#add-btn").click()
    wait_for(lambda: "too easy" in el("#add-msg").text, what="weak password refused")
    el("#new-password").send_keys("amber-kettle-orbit-93")
    el("#add-btn").click()
    wait_for(lambda: el("#add-msg").text == "added zhao.agent", what="added")
    wait_for(lambda: row("zhao.agent").is_displayed(), what="the new row")
    # role and campaigns of a supervisor
    r = row("narrow.user")
    Select(r.find_element(By.CSS_SELECTOR, ".role")).select_by_value("admin")
    camps = r.find_element(By.CSS_SELECTOR, ".campaigns")
    camps.clear()
    camps.send_keys("preview-test, card-activation-test")
    r.find_element(By.CSS_SELECTOR, ".save").click()
    wait_for(lambda: el("#users-msg").text == "narrow.user: saved", what="saved")
    # disable, enable, disable again; a password reset
    wait_for(lambda: row("agent.user").find_element(By.CSS_SELECTOR, ".disable"), what="row")
    row("agent.user").find_element(By.CSS_SELECTOR, ".disable").click()
    wait_for(lambda: "disabled" in row("agent.user").text, what="disabled")
    row("agent.user").find_element(By.CSS_SELECTOR, ".enable").click()
    wait_for(lambda: "active" in row("agent.user").text, what="enabled")
    r = row("zhao.agent")
    r.find_element(By.CSS_SELECTOR, ".pw").send_keys("short")
    r.find_element(By.CSS_SELECTOR, ".reset").click()
    wait_for(lambda: "at least 10" in el("#users-msg").text, what="short refused")
    row("zhao.agent").find_element(By.CSS_SELECTOR, ".pw").send_keys("cobalt-meadow-lantern-58")
    row("zhao.agent").find_element(By.CSS_SELECTOR, ".reset").click()
    wait_for(lambda: el("#users-msg").text == "zhao.agent: password set", what="reset")
    return {"page": browser.page_source}


@pytest.mark.slow  # Chromium: ~10 s
async def test_the_users_page_in_chromium(site: Site, browser: Any) -> None:
    if not str(site.store.url).startswith("sqlite"):
        pytest.skip("the page once: the API tests cover both engines")
    seen = await asyncio.to_thread(drive_the_users_page, browser, site.url)
    assert "amber-kettle" not in seen["page"] and "cobalt-meadow" not in seen["page"]
    with site.store.session() as s:
        users = {u.username: u for u in list_users(s)}
        actions = [
            (e.actor, e.action, e.detail.get("user"))
            for e in s.scalars(select(AuditEntry).where(AuditEntry.actor == "user:admin.user"))
        ]
    zhao = users["zhao.agent"]
    assert (zhao.role, zhao.interface, zhao.campaigns) == (
        Role.AGENT,
        "PJSIP/2001",
        ("card-activation-test",),
    )
    narrow = users["narrow.user"]
    assert narrow.role is Role.ADMIN
    assert narrow.campaigns == ("card-activation-test", "preview-test")
    assert not users["agent.user"].disabled
    for action, who in [
        (AuditAction.USER_ADD, "zhao.agent"),
        (AuditAction.USER_UPDATE, "narrow.user"),
        (AuditAction.USER_DISABLE, "agent.user"),
        (AuditAction.USER_ENABLE, "agent.user"),
        (AuditAction.USER_PASSWORD, "zhao.agent"),
    ]:
        assert ("user:admin.user", action, who) in actions, action
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            site.url + "/api/login",
            json={"username": "zhao.agent", "password": "cobalt-meadow-lantern-58"},
        ) as r:
            assert r.status == 200  # the reset password is the one that works
