"""Preview dialling from the desktop on a running floor: the agent is offered a contact, sees it,
and dials or skips it with a reason from the campaign's list. A skip is recorded (a
``preview_skip`` row, the audit trail, the contact's history), never dialled, and spends no
attempt unless its reason says so; the reason's rule decides when the contact comes back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from dialer.privacy import mask_phone
from dialer.store import Store
from dialer.store.models import Attempt, AuditEntry, Contact
from dialer.store.people import PreviewSkip

from .test_console_desk import CAMPAIGN, CARD, ID_NUMBER, PHONE, Desk, desk_floor

PREVIEW = {
    **CAMPAIGN,
    "name": "preview-desk",
    "mode": "preview",
    # the agent is ready before the dial: a hold limit no stall of a loaded machine breaks
    "pacing": {**CAMPAIGN["pacing"], "hold_limit_s": 60},
    "skip_reasons": {
        "recheck": {"label": {"zh": "再看一次", "en": "Look again"}, "then": "rules"},
        "not_now": {"label": {"zh": "稍后再拨", "en": "Not now"}, "then": "retry 2h"},
        "wrong_list": {
            "label": {"zh": "名单有误", "en": "Wrong list"},
            "then": "done",
            "attempt": True,
        },
    },
}

HOLD_CEILING = "compliance: {hold_limit_s: 60}\n"


async def post(desk: Desk, http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(desk.url + path, json=body) as r:
        return r.status, await r.json()


def attempts(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Attempt)) or 0)


def contact(store: Store, cid: int) -> Contact:
    with store.session() as s:
        c = s.get(Contact, cid)
        assert c is not None
        s.expunge(c)
        return c


async def test_the_agent_is_offered_a_contact_and_skips_or_dials_it(
    store: Store, tmp_path: Path
) -> None:
    async with desk_floor(store, tmp_path, PREVIEW, HOLD_CEILING) as desk, desk.client() as http:
        await desk.sign_in(http, "wang.agent")
        await desk.post(http, "/api/desk/queues", {"action": "login"})
        await desk.post(http, "/api/desk/state", {"state": "ready"})
        async with http.get(desk.url + "/api/desk") as r:
            (camp,) = (await r.json())["campaigns"]
        assert camp["skip_reasons"]["not_now"] == "稍后再拨"
        first = (await desk.post(http, "/api/desk/next", {"campaign": "preview-desk"}))["contact"]
        a = first["contact_id"]
        assert first["customer"]["phone"] == mask_phone(contact(store, a).phone)
        assert first["fields"]["card_number"] == "(hidden)" and first["script"].startswith("您好")
        assert CARD not in json.dumps(first) and ID_NUMBER not in json.dumps(first)
        again = await desk.post(http, "/api/desk/next", {"campaign": "preview-desk"})
        assert again["contact"]["contact_id"] == a  # held for this agent until dialled or skipped
        assert attempts(store) == 0  # an offer dials nothing
        for body, status in [
            ({"campaign": "preview-desk", "contact_id": a, "reason": "bored"}, 400),
            ({"campaign": "preview-desk", "contact_id": "x", "reason": "not_now"}, 400),
            ({"campaign": "preview-desk", "contact_id": a + 99, "reason": "not_now"}, 403),
            ({"campaign": "collect-desk", "contact_id": a, "reason": "not_now"}, 400),
        ]:
            got, answer = await post(desk, http, "/api/desk/preview/skip", body)
            assert got == status, (body, answer)
        # "look again": back as it was, so it is offered again, with the skip in its history
        await desk.post(
            http,
            "/api/desk/preview/skip",
            {"campaign": "preview-desk", "contact_id": a, "reason": "recheck"},
        )
        again = (await desk.post(http, "/api/desk/next", {"campaign": "preview-desk"}))["contact"]
        assert again["contact_id"] == a
        assert [h.get("skipped") for h in again["history"]] == ["recheck"]
        # "not now": back in two hours, no attempt spent, nothing dialled
        now = desk.sim.dialer.now()
        skipped = await desk.post(
            http,
            "/api/desk/preview/skip",
            {"campaign": "preview-desk", "contact_id": a, "reason": "not_now"},
        )
        assert skipped["counted"] is False and skipped["then"] == "retry 2h"
        back = dt.datetime.fromisoformat(skipped["next_attempt_at"]) - now
        assert dt.timedelta(hours=2) <= back < dt.timedelta(hours=2, minutes=5)
        after = contact(store, a)
        assert after.attempts == 0 and after.lease_owner is None and after.status == "active"
        # the next one is another contact; "wrong list" ends it and counts as an attempt
        b = (await desk.post(http, "/api/desk/next", {"campaign": "preview-desk"}))["contact"]
        assert b["contact_id"] != a
        await desk.post(
            http,
            "/api/desk/preview/skip",
            {"campaign": "preview-desk", "contact_id": b["contact_id"], "reason": "wrong_list"},
        )
        ended = contact(store, b["contact_id"])
        assert ended.attempts == 1 and ended.status == "done"
        assert attempts(store) == 0
        # a skipped contact cannot be dialled from the stale offer
        got, _ = await post(
            desk, http, "/api/desk/preview/dial", {"campaign": "preview-desk", "contact_id": a}
        )
        assert got == 403
        c = (await desk.post(http, "/api/desk/next", {"campaign": "preview-desk"}))["contact"]
        assert c["contact_id"] not in (a, b["contact_id"])
        dialled = await desk.post(
            http,
            "/api/desk/preview/dial",
            {"campaign": "preview-desk", "contact_id": c["contact_id"]},
        )
        with store.session() as s:
            attempt = s.get(Attempt, dialled["attempt_id"])
            assert attempt is not None
            assert attempt.contact_id == c["contact_id"] and attempt.agent == PHONE
            assert attempt.detail["preview_by"] == "user:wang.agent"
            skips = [(k.contact_id, k.reason, k.counted) for k in s.scalars(select(PreviewSkip))]
            audit = [
                (e.action, e.detail.get("reason"))
                for e in s.scalars(select(AuditEntry).where(AuditEntry.actor == "user:wang.agent"))
            ]
        assert skips == [
            (a, "recheck", False),
            (a, "not_now", False),
            (b["contact_id"], "wrong_list", True),
        ]
        assert ("dial.preview_skip", "not_now") in audit and ("dial.preview", None) in audit
        # the dialled call reaches the agent's phone
        t0 = time.monotonic()
        while not desk.connects:
            assert time.monotonic() - t0 < 20, "the preview call never reached the agent"
            await asyncio.sleep(0.1)
        assert desk.connects[0][1].attempt_id == dialled["attempt_id"]


def drive_preview(browser: Any, url: str) -> dict[str, str]:
    """Next, skip with a reason, next, dial - in the page (blocking Selenium)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from .test_console_browser import wait_for
    from .test_console_desk import PASSWORD

    def el(css: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, css)

    browser.get(url + "/desk")
    wait_for(lambda: el("#login").is_displayed(), what="sign-in form")
    el("#username").send_keys("wang.agent")
    el("#password").send_keys(PASSWORD)
    el("#login-btn").click()
    wait_for(lambda: el("#desk").is_displayed(), what="the desk")
    el("#next-btn").click()
    wait_for(lambda: el("#offer").is_displayed() and el("#offer-name").text, what="an offer")
    seen = {"first": el("#offer").get_attribute("data-contact"), "name": el("#offer-name").text}
    seen["page"] = browser.page_source
    Select(el("#skip-reason")).select_by_value("not_now")
    el("#offer-skip").click()
    wait_for(lambda: el("#offer-msg").text == "已跳过", what="skipped")
    el("#next-btn").click()
    wait_for(lambda: el("#offer").get_attribute("data-contact") != seen["first"], what="the next")
    seen["second"] = el("#offer").get_attribute("data-contact")
    el("#offer-dial").click()
    wait_for(lambda: el("#offer").get_attribute("data-dialled"), what="dialled")
    seen["attempt"] = el("#offer").get_attribute("data-dialled")
    return seen


@pytest.mark.slow  # Chromium on a running floor: ~10 s
async def test_skip_and_dial_in_the_desktop_page(
    store: Store, tmp_path: Path, browser: Any
) -> None:
    if not str(store.url).startswith("sqlite"):
        pytest.skip("the page once: the API test above covers both engines")
    async with desk_floor(store, tmp_path, PREVIEW, HOLD_CEILING) as desk:
        seen = await asyncio.to_thread(drive_preview, browser, desk.url)
    first, second = int(seen["first"]), int(seen["second"])
    with store.session() as s:
        (skip,) = s.scalars(select(PreviewSkip))
        attempt = s.get(Attempt, int(seen["attempt"]))
        name = s.get(Contact, first).name  # type: ignore[union-attr]
        assert attempt is not None and attempt.contact_id == second
    assert (skip.contact_id, skip.reason, skip.agent) == (first, "not_now", "wang.agent")
    assert seen["name"] == name
    assert CARD not in seen["page"] and ID_NUMBER not in seen["page"]
