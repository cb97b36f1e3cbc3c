"""The console's HTTP API against a real server on loopback and a store-backed floor."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.errors import SecretMissing
from dialer.floor.console import start_console
from dialer.floor.service import Dialer
from dialer.store.models import AuditEntry

from .floorkit import SENSITIVE, TOKEN, Console, play

API_GETS = [
    "/api/session",
    "/api/snapshot",
    "/api/campaigns",
    "/api/campaigns/card-activation-test",
    "/api/agents",
    "/api/calls",
    "/api/history",
    "/api/workers",
    "/api/reloads",
    "/api/events",
    "/api/campaigns/card-activation-test/report",
]
API_ACTIONS = [
    ("POST", "/api/campaigns/card-activation-test/pause"),
    ("POST", "/api/campaigns/card-activation-test/resume"),
    ("PATCH", "/api/campaigns/card-activation-test/pacing"),
    ("POST", "/api/campaigns/preview-test/preview-next"),
    ("POST", "/api/reload"),
    ("POST", "/api/logout"),
]


def audit_rows(console: Console) -> list[tuple[str, str]]:
    with console.floor.store.session() as s:
        return [(a.actor, a.action) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


async def test_public_paths_need_no_token(console: Console) -> None:
    status, body = await console.request("GET", "/", auth=False)
    assert status == 200 and "<canvas" in body and "/static/app.js" in body
    assert "http" not in body.replace("http-equiv", "")  # nothing from a CDN
    for path in ("/static/app.js", "/static/style.css", "/healthz", "/metrics"):
        status, _ = await console.request("GET", path, auth=False)
        # the seeded floor's AMI client never connected: its health says so
        assert status == (503 if path == "/healthz" else 200), path


async def test_api_refuses_without_token(console: Console) -> None:
    before = audit_rows(console)
    for path in API_GETS:
        status, body = await console.request("GET", path, auth=False)
        assert status == 401, path
        assert body == {"error": "unauthorized: send the API token"}
    for method, path in API_ACTIONS:
        status, _ = await console.request(method, path, auth=False, json={"max_lines_per_agent": 2})
        assert status == 401, path
    bad = [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Cookie": f"dialer_session={TOKEN}"},  # the raw token is not a session value
    ]
    for headers in bad:
        status, _ = await console.request(
            "POST", "/api/campaigns/card-activation-test/pause", auth=False, headers=headers
        )
        assert status == 401, headers
    assert audit_rows(console) == before  # nothing happened
    [camp] = [c for c in console.floor.campaigns() if c.name == "card-activation-test"]
    assert camp.state == "running"


async def test_cookie_login(console: Console) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as page:
        r = await page.post(console.url + "/api/login", json={"token": "nope"})
        assert r.status == 401 and "Set-Cookie" not in r.headers
        r = await page.get(console.url + "/api/campaigns")
        assert r.status == 401
        r = await page.post(console.url + "/api/login", json={"token": TOKEN})
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        value = re.search(r"dialer_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
        assert TOKEN not in value and len(value) >= 43  # a random id (32 bytes)
        r = await page.get(console.url + "/api/campaigns")
        assert r.status == 200 and len(await r.json()) == 2
        # a cookie-authenticated action from a foreign origin is refused
        r = await page.post(
            console.url + "/api/campaigns/card-activation-test/pause",
            headers={"Origin": "http://evil.example"},
        )
        assert r.status == 403
        r = await page.post(
            console.url + "/api/campaigns/card-activation-test/pause",
            headers={"Origin": console.url},
        )
        assert r.status == 200 and (await r.json())["state"] == "paused"
        r = await page.post(console.url + "/api/logout")
        assert r.status == 200
        r = await page.get(console.url + "/api/campaigns")
        assert r.status == 401


async def test_json_shapes(console: Console) -> None:
    status, camps = await console.request("GET", "/api/campaigns")
    assert status == 200 and [c["name"] for c in camps] == ["card-activation-test", "preview-test"]
    c = camps[0]
    assert c["state"] == "running" and c["mode"] == "predictive"
    assert (c["contacts"], c["contacts_done"], c["attempts"]) == (6, 2, 40)
    assert c["progress"] == 2 / 6
    assert set(c["abandon"]) >= {"1m", "1h", "today", "24h", "30d", "to_date", "cap_window"}
    # 2 abandoned of 21 live answers (14 handled + 4 completed + 2 abandoned + 1 hangup)
    assert c["abandon"]["30d"] == {"live_answers": 21, "abandoned": 2, "rate": 2 / 21}
    assert c["abandon_status"]["30d"] == "over" and c["cap_status"] == "over"
    assert c["abandon_cap"] == 0.03 and c["pacing"]["max_lines_per_agent"] == 3.0
    # the hopper's own explanation: 2 done, the rest at their daily cap after the shift
    assert c["outcomes"]["agent_handled"] == 14 and c["hopper_reasons"]["done"] == 2
    assert c["hopper_eligible"] + sum(c["hopper_reasons"].values()) == 6
    assert c["last_error"] is None
    status, one = await console.request("GET", "/api/campaigns/card-activation-test")
    assert status == 200 and one["name"] == "card-activation-test"
    status, missing = await console.request("GET", "/api/campaigns/nope")
    assert status == 404 and "nope" in missing["error"]

    status, agents = await console.request("GET", "/api/agents")
    assert agents["by_state"] == {"idle": 2, "talking": 2, "paused": 1}
    a = agents["agents"][1]
    assert set(a) == {
        "name",
        "queues",
        "state",
        "since",
        "calls_handled",
        "pause_reason",
        "seconds_in_state",
    }
    assert a["seconds_in_state"] >= 30.0 and a["since"].endswith("+00:00")

    play(console.floor)
    play(console.floor)
    status, calls = await console.request("GET", "/api/calls")
    assert calls["by_state"] == {"dialing": 2}  # two calls the tracker follows
    assert (
        calls["calls"][0]["phone_masked"].startswith("+86138")
        and "*" in calls["calls"][0]["phone_masked"]
    )
    status, hist = await console.request("GET", "/api/history")
    assert len(hist) == 14 and set(hist[0]) == {
        "at",
        "occupancy",
        "abandon_rate",
        "agents_logged_in",
        "calls_in_flight",
    }
    status, snapshot = await console.request("GET", "/api/snapshot")
    assert set(snapshot) - {"handle_times"} == {  # the handle times once the board has read
        "at",
        "campaigns",
        "agents",
        "calls",
        "history",
        "reloads",
        "workers",
        "health",
    }
    assert snapshot["workers"] == []  # a lone dialer: no worker rows to show


async def test_pause_resume_audited(console: Console) -> None:
    status, c = await console.request(
        "POST", "/api/campaigns/card-activation-test/pause", headers={"X-Actor": "alice<script>"}
    )
    assert status == 200 and c["state"] == "paused"
    status, c = await console.request("POST", "/api/campaigns/card-activation-test/resume")
    assert status == 200 and c["state"] == "running"
    assert audit_rows(console)[-2:] == [
        ("console:alicescript", AuditAction.CAMPAIGN_PAUSE),
        ("console:bearer", AuditAction.CAMPAIGN_RESUME),
    ]
    status, _ = await console.request("POST", "/api/campaigns/nope/pause")
    assert status == 404


async def test_invalid_pacing_refused_nothing_changes(console: Console) -> None:
    path = "/api/campaigns/card-activation-test/pacing"
    _, before = await console.request("GET", "/api/campaigns/card-activation-test")
    audits = audit_rows(console)
    cases = [
        ({"abandon_cap": 0.9}, "abandon_cap"),
        ({"ring_timeout_s": 5}, "ring_timeout_s"),
        (
            {"max_lines_per_agent": 2.5, "hold_limit_s": -1},
            "hold_limit_s",
        ),  # one bad key: none applied
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"max_lines_per_agent": "lots"}, "max_lines_per_agent"),
    ]
    for body, key in cases:
        status, err = await console.request("PATCH", path, json=body)
        assert status == 400, body
        assert key in err["error"], err
    for raw in (b"[1, 2]", b"{not json", b"{}"):
        status, err = await console.request(
            "PATCH", path, data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400 and err["error"]
    _, after = await console.request("GET", "/api/campaigns/card-activation-test")
    assert after["pacing"] == before["pacing"]
    assert audit_rows(console) == audits
    text = (await console.request("GET", "/metrics", auth=False))[1]
    assert (
        'dialer_pacing_changes_total{campaign="card-activation-test",result="refused"} 5.0' in text
    )


async def test_valid_pacing_applied(console: Console) -> None:
    status, body = await console.request(
        "PATCH",
        "/api/campaigns/card-activation-test/pacing",
        json={"max_lines_per_agent": 2.2, "abandon_cap": 0.025},
        headers={"X-Actor": "alice"},
    )
    assert status == 200
    assert body["pacing"]["max_lines_per_agent"] == 2.2 and body["pacing"]["abandon_cap"] == 0.025
    _, c = await console.request("GET", "/api/campaigns/card-activation-test")
    assert c["pacing"]["max_lines_per_agent"] == 2.2 and c["abandon_cap"] == 0.025
    assert c["pacing"]["ring_timeout_s"] == 25.0  # untouched keys stay
    assert audit_rows(console)[-1] == ("console:alice", AuditAction.CAMPAIGN_PACING)


async def test_preview_next(console: Console) -> None:
    path = "/api/campaigns/preview-test/preview-next"
    status, body = await console.request("POST", path, json={"agent": "Local/1000@agents"})
    assert status == 200 and body["agent"] == "Local/1000@agents"
    contact = body["contact"]
    # the floor leases the next contact and dials it; the agent sees who, never the fields
    assert set(contact) == {"attempt_id", "phone", "name", "language"}
    assert contact["phone"].startswith("+86138****") and contact["name"].startswith("客户")
    status, body = await console.request("POST", path, json={})
    assert status == 400 and "agent" in body["error"]


async def test_event_stream_pushes_snapshots(console: Console) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    seen: list[dict] = []
    async with console.session.get(console.url + "/api/events", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        buf = b""
        async with asyncio.timeout(5):
            while len(seen) < 6:
                buf += await r.content.readany()
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    lines = block.decode().split("\n")
                    if lines[0] == "event: snapshot":
                        seen.append(json.loads(lines[1].removeprefix("data: ")))
                        if len(seen) <= 3:
                            play(console.floor)  # then the floor stands still
    first, moved = seen[0], seen[3]
    assert first["campaigns"][0]["attempts"] >= 40 and len(first["history"]) >= 12
    assert moved["campaigns"][0]["attempts"] == first["campaigns"][0]["attempts"] + 3
    # the shift history is sent again only when it has new points
    with_history = [s for s in seen if "history" in s]
    assert len(with_history[-1]["history"]) == len(first["history"]) + 3
    assert "history" not in seen[-1] and seen[-1]["campaigns"] and "agents" in seen[-1]
    console.responses.append(json.dumps(seen).encode())


async def test_no_card_or_id_numbers_in_any_response(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    play(console.floor)
    for path in API_GETS:
        if path != "/api/events":
            await console.request("GET", path)
    await console.request(
        "POST", "/api/campaigns/preview-test/preview-next", json={"agent": "Local/1000@agents"}
    )
    await console.request(
        "PATCH", "/api/campaigns/card-activation-test/pacing", json={"abandon_cap": 7}
    )
    await console.request("POST", "/api/reload")
    for path in ("/", "/metrics", "/healthz", "/static/app.js"):
        await console.request("GET", path, auth=False)
    await test_event_stream_pushes_snapshots(console)
    assert len(console.responses) == 18
    blob = b"\n".join(console.responses).decode()
    for secret in SENSITIVE:
        assert secret not in blob, secret
    assert "6222021234567890" not in blob and "+86138****" in blob  # numbers show masked
    assert caplog.records  # the console did log (e.g. the refused pacing change path)
    for secret in SENSITIVE:
        assert secret not in caplog.text, secret


async def test_token_comes_from_the_environment(
    floor: Dialer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALER_API_TOKEN", "from-the-env-Hq7Tz2Lw9Px4Kc8V")
    runner, port = await start_console(floor, port=0, registry=CollectorRegistry())
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/api/session"
            async with http.get(
                url, headers={"Authorization": "Bearer from-the-env-Hq7Tz2Lw9Px4Kc8V"}
            ) as r:
                assert r.status == 200 and (await r.json())["via"] == "bearer"
            async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 401
    finally:
        await runner.cleanup()
    monkeypatch.delenv("DIALER_API_TOKEN")
    with pytest.raises(SecretMissing):
        await start_console(floor, port=0, registry=CollectorRegistry())


def test_agents_sort_as_people_read_them() -> None:
    from dialer.floor.reading import natural_key

    names = ["Agent 10", "agent 2", "Agent 1", "Agent 2b", "Agent 02", "Zed"]
    assert sorted(names, key=natural_key) == [
        "Agent 1",
        "agent 2",
        "Agent 02",
        "Agent 2b",
        "Agent 10",
        "Zed",
    ]
