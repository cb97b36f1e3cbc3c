"""SMS against a real Kannel: send, delivery report, replies, opt-out, gateway outages."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from dialer.messaging import outbox
from dialer.messaging.dispatcher import SmsDispatcher
from dialer.messaging.kannel import H11Transport, KannelGateway, SendsmsRequest
from dialer.messaging.lifecycle import MsgState
from dialer.messaging.sms import compose, segment
from dialer.messaging.templates import MessagePurpose
from dialer.store.messages import InboundMessage, MessageEvent
from dialer.store.models import DncEntry

from .conftest import SmsRig

SIG = "【示例银行】"
NUMBER = "+8613800000001"


def queue(rig: SmsRig, body: str, *, to: str = NUMBER, marketing: bool = False) -> int:
    text = compose(body, signature=SIG, marketing=marketing)
    purpose = MessagePurpose.MARKETING if marketing else MessagePurpose.SERVICE
    with rig.store.session() as s:
        return outbox.enqueue_sms(s, to=to, text=text, purpose=purpose).id


async def test_send_and_delivery_report(sms_rig: SmsRig) -> None:
    short = queue(sms_rig, "张三您好，您的信用卡本期应还1234.56元。")
    long_body = "您好" * 50  # 106 UCS-2 units with the signature: two parts
    long = queue(sms_rig, long_body)
    handed, down = await sms_rig.dispatcher.dispatch_batch()
    assert (handed, down) == (2, False)
    rows = await sms_rig.wait_states([short, long], {MsgState.DELIVERED})
    assert all(r.sent_at and r.ended_at for r in rows)
    got = sms_rig.box.received()
    assert got[0].text == SIG + "张三您好，您的信用卡本期应还1234.56元。"
    assert got[0].sender == "10690000" and got[0].to == NUMBER
    # the long one arrives as the parts our segmentation predicted
    assert len(got) == 1 + segment(SIG + long_body).part_count == 3
    assert "".join(h.text for h in got[1:]).endswith(long_body[-20:])
    with sms_rig.store.session() as s:
        kinds = s.scalars(
            select(MessageEvent.kind)
            .where(MessageEvent.message_id == short)
            .order_by(MessageEvent.id)
        ).all()
    assert kinds[:2] == ["claim", "accepted"] and "delivered" in kinds


async def test_reply_1_confirms_and_free_text_is_kept(sms_rig: SmsRig) -> None:
    mid = queue(sms_rig, "您的分期申请已受理，确认请回复1。")
    await sms_rig.dispatcher.dispatch_batch()
    await sms_rig.wait_states([mid], {MsgState.DELIVERED})
    sms_rig.box.reply("8613800000001", "1")  # the SMSC drops the '+': still the same number
    await sms_rig.wait_for(lambda: sms_rig.state(mid).result == "confirmed")
    sms_rig.box.reply(NUMBER, "我下周再还可以吗")
    with sms_rig.store.session() as s:
        await sms_rig.wait_for(lambda: len(outbox.free_text_replies(s)) == 1)
        reply = outbox.free_text_replies(s)[0]
        assert reply.text == "我下周再还可以吗" and reply.message_id == mid


async def test_opt_out_stops_the_next_marketing_sms(sms_rig: SmsRig) -> None:
    first = queue(sms_rig, "分期手续费限时8折。", marketing=True)
    await sms_rig.dispatcher.dispatch_batch()
    await sms_rig.wait_states([first], {MsgState.DELIVERED})
    sms_rig.box.reply(NUMBER, "退订")
    await sms_rig.wait_for(lambda: sms_rig.state(first).result == "opted_out")
    with sms_rig.store.session() as s:
        entry = s.scalars(select(DncEntry).where(DncEntry.number == NUMBER)).one()
        assert (entry.scope, entry.channel, entry.source) == ("marketing", "sms", "sms-reply")
        action = s.scalars(select(InboundMessage.action)).one()
        assert action == "opt_out"
    before = len(sms_rig.box.received())
    again = queue(sms_rig, "积分兑换活动开始了。", marketing=True)
    service = queue(sms_rig, "您的账单已出。")  # service messages still go
    await sms_rig.dispatcher.dispatch_batch()
    await sms_rig.wait_states([service], {MsgState.DELIVERED})
    assert sms_rig.state(again).state == MsgState.SUPPRESSED
    assert sms_rig.state(again).reason == "dnc"
    got = sms_rig.box.received()[before:]
    assert [h.text for h in got] == [SIG + "您的账单已出。"]


async def test_outage_mid_batch_loses_nothing_and_sends_nothing_twice(sms_rig: SmsRig) -> None:
    ids = [queue(sms_rig, f"批量提醒第{i:03d}号", to=f"+86138000{i:05d}") for i in range(60)]
    stop = asyncio.Event()
    task = asyncio.create_task(sms_rig.dispatcher.run(stop))
    box = sms_rig.box
    await sms_rig.wait_for(lambda: len(box.received()) >= 10)
    box.kill_smsbox()  # mid-batch: sendsms refuses connections
    await asyncio.sleep(1.0)
    box.start_smsbox()
    await sms_rig.wait_for(lambda: len(box.received()) >= 30)
    box.stop_bearerbox()  # the whole gateway goes down and comes back
    await asyncio.sleep(1.0)
    box.restart()
    try:
        # every text reaches the SMSC; a message the gateway accepted just before bearerbox went
        # down may never get its delivery report (bearerbox forgets it in the restart): it stays
        # accepted, which is the truth we know - the SMSC counts below prove it arrived once
        await sms_rig.wait_for(lambda: len(box.received()) >= 60, timeout=60)
        await sms_rig.wait_states(
            ids, {MsgState.DELIVERED, MsgState.SENT, MsgState.ACCEPTED}, timeout=30
        )
    finally:
        stop.set()
        await task
    texts = [h.text for h in box.received()]
    for i in range(60):
        assert texts.count(f"{SIG}批量提醒第{i:03d}号") == 1, i
    assert len(texts) == 60
    assert sms_rig.dispatcher.stats.unavailable >= 1


class Faults:
    """The transport to Kannel with one fault per hand-over, in order: ``lose`` (Kannel gets
    the request, its answer is lost), ``cut`` (the request never reaches Kannel), then none."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.inner = H11Transport()

    async def __call__(self, url: str, req: SendsmsRequest, timeout: float) -> tuple[int, str]:
        fault = self.script.pop(0) if self.script else None
        if fault == "cut":
            raise TimeoutError("cut before Kannel read it")
        answer = await self.inner(url, req, timeout)
        if fault == "lose":
            raise TimeoutError("the answer was lost")
        return answer


async def test_doubts_with_no_later_traffic(sms_rig: SmsRig) -> None:
    box = sms_rig.box
    gw = KannelGateway(
        sms_rig.cfg.kannel, box.password, Faults("lose", "cut"),
        status_password=box.status_password,
    )  # fmt: skip
    d = SmsDispatcher(sms_rig.store, gw, sms_rig.cfg)
    took = queue(sms_rig, "这条Kannel收到了，回答丢了")
    await d.dispatch_batch()
    # Kannel had it: its report ends the doubt; nothing is sent again
    await sms_rig.wait_states([took], {MsgState.DELIVERED})
    never = queue(sms_rig, "这条Kannel没收到")
    await d.dispatch_batch()
    assert sms_rig.state(never).state == MsgState.IN_DOUBT
    assert await d.settle_idle() == 0  # too fresh to tell
    await asyncio.sleep(sms_rig.cfg.doubt_grace_s + 0.3)
    assert await d.settle_idle() == 1  # bearerbox holds nothing, no report came: never taken
    await d.dispatch_batch()
    await sms_rig.wait_states([never], {MsgState.DELIVERED})
    texts = [h.text for h in box.received()]
    assert texts == [SIG + "这条Kannel收到了，回答丢了", SIG + "这条Kannel没收到"]
