"""The message lifecycle, the throttle, Kannel's wire format and the dispatcher's rules
(without a gateway process: faults are injected through the transport)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.errors import IllegalTransition, RemoteProtocolError
from dialer.messaging import outbox
from dialer.messaging.config import SmsSettings
from dialer.messaging.dispatcher import SmsDispatcher
from dialer.messaging.errors import GatewayUnavailable, MessageRejected
from dialer.messaging.kannel import (
    DLR_MASK,
    DlrType,
    KannelGateway,
    KannelSettings,
    OutboundSms,
    SendsmsRequest,
    SubmitStatus,
    event_of,
    read_dlr,
    read_mo,
    read_sendsms_answer,
    sendsms_request,
)
from dialer.messaging.lifecycle import FINAL, TRANSITIONS, MsgEvent, MsgState, step
from dialer.messaging.sms import Encoding
from dialer.messaging.throttle import Throttle
from dialer.store import Store
from dialer.store.messages import Message


def test_only_unavailable_and_cleared_lead_back_to_queued() -> None:
    back = {(s, e) for (s, e), t in TRANSITIONS.items() if t is MsgState.QUEUED}
    assert back == {
        (MsgState.SUBMITTING, MsgEvent.UNAVAILABLE),
        (MsgState.IN_DOUBT, MsgEvent.CLEARED),
    }
    with pytest.raises(IllegalTransition):
        step(MsgState.DELIVERED, MsgEvent.CLAIM)
    with pytest.raises(IllegalTransition):
        step(MsgState.ACCEPTED, MsgEvent.UNAVAILABLE)


@given(st.lists(st.sampled_from(list(MsgEvent)), max_size=30))
def test_a_final_state_is_never_left_for_sending(events: list[MsgEvent]) -> None:
    state = MsgState.QUEUED
    claims_after_accept = 0
    accepted = False
    for e in events:
        try:
            nxt = step(state, e)
        except IllegalTransition:
            continue
        if state in FINAL:
            assert nxt in FINAL | {MsgState.SENT}  # only a late ack may revive "unknown"
        if e is MsgEvent.CLAIM and accepted:
            claims_after_accept += 1
        if nxt in (MsgState.ACCEPTED, MsgState.SENT, MsgState.DELIVERED):
            accepted = True
        state = nxt
    assert claims_after_accept == 0  # nothing the gateway took is handed over again


def test_throttle_paces_parts() -> None:
    t = Throttle(rate=10.0)
    assert t.wait(0.0, 1) == 0.0
    t.take(0.0, 1)
    assert t.wait(0.0, 1) == pytest.approx(0.1)
    t.take(0.1, 1)
    t.take(0.2, 3)  # a three-part message overdraws
    assert t.wait(0.2, 1) == pytest.approx(0.3)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=200), st.floats(1, 500))
def test_throttle_never_exceeds_its_rate(parts: list[int], rate: float) -> None:
    t, now, sent = Throttle(rate=rate), 0.0, 0
    for p in parts:
        now += t.wait(now, p)
        t.take(now, p)
        sent += p
    # over the whole run: at most one bucket (1 token) + one message ahead of the rate
    assert sent <= rate * now + 1 + max(parts) + 1e-6


def test_sendsms_request_and_answers() -> None:
    cfg = KannelSettings(smsc_id="fake", callback_base="http://127.0.0.1:9")
    req = sendsms_request(
        OutboundSms("u1", "+8613800000001", "【示例银行】您好", Encoding.UCS2, 1), cfg, "pw"
    )
    assert req.body == "【示例银行】您好".encode()
    assert req.headers["X-Kannel-Coding"] == "2" and req.headers["X-Kannel-SMSC"] == "fake"
    assert req.headers["X-Kannel-DLR-Mask"] == str(DLR_MASK) == "31"
    assert req.headers["X-Kannel-DLR-Url"] == (
        "http://127.0.0.1:9/kannel/dlr?uid=u1&type=%d&answer=%A&ts=%T"
    )
    assert read_sendsms_answer(202, "0: Accepted for delivery") is SubmitStatus.ACCEPTED
    assert read_sendsms_answer(202, "3: Queued for later delivery") is SubmitStatus.QUEUED
    with pytest.raises(GatewayUnavailable):
        read_sendsms_answer(503, "Sendsms failed")
    with pytest.raises(MessageRejected):
        read_sendsms_answer(403, "Authorization failed for sendsms")
    with pytest.raises(RemoteProtocolError):
        read_sendsms_answer(202, "what?")


def test_reports_and_replies_read() -> None:
    r = read_dlr({"uid": "u1", "type": "2", "answer": "id:1 stat:EXPIRED err:000", "ts": "0"})
    assert r.type is DlrType.UNDELIVERABLE and event_of(r) is MsgEvent.EXPIRED
    assert event_of(read_dlr({"uid": "u", "type": "16"})) is MsgEvent.FAILED
    with pytest.raises(RemoteProtocolError):
        read_dlr({"uid": "u", "type": "3"})
    mo = read_mo({"id": "k1", "from": "+8613800000001", "to": "10690", "text": "退订"})
    assert (mo.sender, mo.text) == ("+8613800000001", "退订")
    with pytest.raises(RemoteProtocolError):
        read_mo({"from": "+86138"})


class FaultyTransport:
    """The gateway's answers, one per call, as an outside fault would give them."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[SendsmsRequest] = []

    async def __call__(self, url: str, req: SendsmsRequest, timeout: float) -> tuple[int, str]:
        self.calls.append(req)
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        assert isinstance(a, tuple)
        return a


class StepClock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def time(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


async def test_doubt_is_never_resent_until_cleared(store: Store) -> None:
    transport = FaultyTransport(
        ConnectionError("refused"),  # nothing left: retried
        TimeoutError("no answer"),  # left, no answer: in doubt
        (202, "0: Accepted for delivery"),  # b, sent alongside a: proves nothing about a
        (202, "0: Accepted for delivery"),  # c, handed over after a's doubt
        (202, "0: Accepted for delivery"),  # a, once cleared
    )
    clock = StepClock()
    cfg = SmsSettings(retry_s=(1.0,), doubt_grace_s=5.0, in_flight=2)
    gw = KannelGateway(KannelSettings(rate=1000), "pw", transport)
    d = SmsDispatcher(store, gw, cfg, clock=clock)

    def ack(mid: int) -> None:
        with store.session() as s:
            row = s.get(Message, mid)
            assert row is not None
            outbox.apply_report(
                s, row.uid, MsgEvent.SMSC_ACK, dt.datetime.fromtimestamp(clock.t, dt.UTC)
            )

    def state(mid: int) -> str:
        with store.session() as s:
            row = s.get(Message, mid)
            assert row is not None
            return row.state

    with store.session() as s:
        a = outbox.enqueue_sms(s, to="+8613800000001", text="a").id
    assert await d.dispatch_batch() == (1, True)  # refused: queued again for later
    assert state(a) == "queued"
    with store.session() as s:
        b = outbox.enqueue_sms(s, to="+8613800000002", text="b").id
    clock.t += 2
    assert await d.dispatch_batch() == (2, False)  # a: no answer (in doubt); b: accepted
    assert (state(a), state(b)) == ("in_doubt", "accepted")
    ack(b)
    clock.t += 10
    assert d.settle_doubts() == (0, 0)  # b went alongside a: no proof
    clock.t += 1
    with store.session() as s:
        c = outbox.enqueue_sms(s, to="+8613800000003", text="c").id
    await d.dispatch_batch()
    ack(c)
    assert len(transport.calls) == 4  # the doubtful one was not handed over again
    assert d.settle_doubts() == (0, 0)  # c's ack is too fresh to prove anything
    clock.t += 6
    assert d.settle_doubts() == (1, 0)
    await d.dispatch_batch()
    assert [x.body for x in transport.calls] == [b"a", b"a", b"b", b"c", b"a"]
    assert state(a) == "accepted"


async def test_recover_marks_in_flight_as_doubt(store: Store) -> None:
    clock = StepClock()
    d = SmsDispatcher(
        store,
        KannelGateway(KannelSettings(), "pw", FaultyTransport()),
        SmsSettings(doubt_timeout_s=60),
        clock=clock,
    )
    with store.session() as s:
        mid = outbox.enqueue_sms(s, to="+8613800000001", text="x").id
        outbox.claim_one(s, mid, dt.datetime.fromtimestamp(clock.t, dt.UTC))
    assert d.recover() == 1
    clock.t += 61
    assert d.settle_doubts() == (0, 1)
    with store.session() as s:
        assert s.get(Message, mid).state == "unknown"  # type: ignore[union-attr]


@given(
    st.lists(st.floats(0, 3 * 86400), min_size=1, max_size=60),
    st.integers(1, 4),
    st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "America/New_York"]),
)
def test_daily_cap_holds_on_every_local_day(offsets: list[float], cap: int, zone: str) -> None:
    """Whatever moments messages ask to go, at most ``cap`` go on any local day of the number;
    a deferred one waits for the next local day's opening."""
    from zoneinfo import ZoneInfo

    from dialer.messaging.steps import daily_cap_defer

    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    sent: list[dt.datetime] = []
    for off in sorted(offsets):
        now = start + dt.timedelta(seconds=off)
        later = daily_cap_defer(sent, now, zone, cap, dt.time(8, 0))
        if later is None:
            sent.append(now)
        else:
            local = later.astimezone(ZoneInfo(zone))
            assert later > now and local.time() == dt.time(8, 0)
            assert local.date() > now.astimezone(ZoneInfo(zone)).date()
    per_day: dict[dt.date, int] = {}
    for t in sent:
        d = t.astimezone(ZoneInfo(zone)).date()
        per_day[d] = per_day.get(d, 0) + 1
    assert max(per_day.values()) <= cap


async def test_the_cap_defers_sms_to_the_next_day(store: Store) -> None:
    clock = StepClock()
    transport = FaultyTransport(*[(202, "0: Accepted for delivery")] * 3)
    gw = KannelGateway(KannelSettings(rate=1000), "pw", transport)
    d = SmsDispatcher(store, gw, SmsSettings(daily_cap=2), clock=clock)
    with store.session() as s:
        ids = [outbox.enqueue_sms(s, to="+8613800000001", text=str(i)).id for i in range(3)]
    await d.dispatch_batch()
    assert len(transport.calls) == 2
    with store.session() as s:
        third = s.get(Message, ids[2])
        assert third is not None and third.state == "queued"
        assert third.next_try_at is not None and third.next_try_at > clock_now(clock)
    clock.t = third.next_try_at.timestamp() + 1
    await d.dispatch_batch()
    assert len(transport.calls) == 3


def clock_now(clock: StepClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.t, dt.UTC)


def test_bearerbox_status_read() -> None:
    from dialer.messaging.kannel import read_status

    xml = (
        "<gateway><sms><sent><total>9</total><queued>2</queued></sent>"
        "<storesize>3</storesize></sms><smscs><count>2</count>"
        "<smsc><queued>4</queued></smsc><smsc><queued>0</queued></smsc></smscs></gateway>"
    )
    assert read_status(xml) == 9
    with pytest.raises(RemoteProtocolError):
        read_status("<gateway/>")
    with pytest.raises(RemoteProtocolError):
        read_status("not xml")
