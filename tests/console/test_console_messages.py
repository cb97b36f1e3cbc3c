"""The console shows SMS and e-mail by state and the free-text replies agents must read."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dialer.messaging import outbox
from dialer.messaging.keywords import Classifier
from dialer.messaging.templates import Channel
from dialer.store import Store


async def test_messages_and_replies_for_agents(console: Any, store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        m = outbox.enqueue_sms(s, to="+8613800000001", text="【示例银行】您好")
        outbox.transition(s, m, outbox.MsgEvent.CLAIM, now)
        outbox.transition(s, m, outbox.MsgEvent.ACCEPTED, now)
        outbox.enqueue_email(s, to="a@b.test", subject="s", text="t", html=None)
        for i, text in enumerate(["我的卡号6222021234567890123被冻结了", "1"]):
            outbox.apply_reply(
                s, channel=Channel.SMS, gateway_id=f"k:{i}", sender="+8613800000001",
                receiver=None, text=text, now=now, classify=Classifier(),
            )  # fmt: skip
    status, view = await console.request("GET", "/api/messages")
    assert status == 200
    assert view["channels"] == {"sms": {"accepted": 1}, "email": {"queued": 1}}
    [reply] = view["replies"]  # "1" confirmed by itself: not for an agent
    assert reply["from"] == "+86138****0001"
    assert "6222021234567890123" not in reply["text"] and reply["text"].endswith("被冻结了")
    status, done = await console.request("POST", f"/api/replies/{reply['id']}/handled")
    assert status == 200 and done["handled"] == reply["id"]
    status, again = await console.request("POST", f"/api/replies/{reply['id']}/handled")
    assert status == 404
    status, view = await console.request("GET", "/api/messages")
    assert view["replies"] == []
