"""Alerts in the store: taken in once per key, refused when unsafe, walked up their ladder by
the desk's passes (calls that end, an SMS and its reply, a roster, DNC, night hours), and
still there after a restart."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from dialer.errors import ConfigError
from dialer.lists import alerts as store_alerts
from dialer.lists.alertspec import AlertState
from dialer.lists.dnc import DncChannel, DncScope, add_entry
from dialer.messaging import outbox
from dialer.messaging.keywords import Classifier
from dialer.messaging.templates import Channel
from dialer.outcomes import Outcome
from dialer.store import Store, open_store
from dialer.store.alerts import Alert
from dialer.store.messages import Message
from dialer.store.models import Attempt

from .kit import DAY, HOME, MAIN, SMS, alert, attempt, body, config, customer, end_call, kinds, post
from .kit import run_pass as pass_at


def test_same_key_twice_is_one_alert_and_a_reused_key_is_refused(store: Store) -> None:
    customer(store)
    first, created = post(store, body("k-1"))
    again, created_again = post(store, body("k-1"))
    assert created and not created_again and again == first
    with pytest.raises(store_alerts.DuplicateKey, match="k-1"):
        post(store, body("k-1", payload={"txn_amount": "1.00"}))
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 1


def test_concurrent_posts_of_one_key_make_one_alert(store_url: str) -> None:
    """Two API handlers racing with the same key: one insert wins, the other reads it."""
    store = open_store(store_url)
    try:
        customer(store)
        ids: list[int] = []
        barrier = threading.Barrier(4)

        def one() -> None:
            barrier.wait()
            ids.append(post(store, body("race"))[0])

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 4 and len(set(ids)) == 1
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (body(payload={"card": "6222 0212 3456 7890"}), "card or ID number in clear"),
        (body(payload={"holder_id": "11010519491231002X"}), "card or ID number in clear"),
        (body(type="nope"), "unknown alert type 'nope'"),
        (body(target={"roster": "atm-duty-east"}), "goes to a customer"),
        (body(priority=12), "priority"),
        (body(deadline="2026-12-01T09:00:00"), "offset"),
        (body(idempotency_key=""), "idempotency_key"),
    ],
)
def test_bad_requests_get_one_line_and_store_nothing(
    store: Store, doc: dict[str, object], message: str
) -> None:
    customer(store)
    with pytest.raises(ConfigError, match=message) as err:
        post(store, doc)
    assert "\n" not in str(err.value)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0


def test_an_unknown_customer_is_refused(store: Store) -> None:
    with pytest.raises(store_alerts.UnknownTarget, match="C0001"):
        post(store, body())


def test_alerts_survive_a_restart_and_are_dialled_after_it(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    customer(store)
    alert_id, _ = post(store, body())
    store.dispose()
    again = open_store(sqlite_url)  # a new process on the same database
    try:
        done = pass_at(again, DAY + dt.timedelta(seconds=1))
        assert len(done.attempts) == 1 and done.attempt_alert[done.attempts[0]] == alert_id
        row = attempt(again, done.attempts[0])
        assert row.phone == MAIN and row.detail["alert_id"] == alert_id
        assert row.detail["fields"]["txn_amount"] == "8999.00"  # what the flow reads out
    finally:
        again.dispose()


def test_no_answer_walks_the_ladder_to_the_sms_and_its_reply_acknowledges(store: Store) -> None:
    customer(store)
    alert_id, _ = post(store, body())
    now = DAY
    numbers = []
    for _ in range(3):  # main, main again after 2 min, then the home number after 1 min
        done = pass_at(store, now)
        assert len(done.attempts) == 1, kinds(store, alert_id)
        numbers.append(attempt(store, done.attempts[0]).phone)
        now += dt.timedelta(seconds=30)
        end_call(store, done.attempts[0], Outcome.NO_ANSWER, None, now)
        assert pass_at(store, now).attempts == []  # the next rung waits for its `after`
        now += dt.timedelta(minutes=2)
    assert numbers == [MAIN, MAIN, HOME]
    pass_at(store, now)  # the SMS rung
    with store.session() as s:
        msg = s.scalars(select(Message)).one()
        assert msg.address == MAIN and "8999.00" in msg.body and "回复1" in msg.body
        reply = outbox.apply_reply(
            s,
            channel=Channel.SMS,
            gateway_id="mo-1",
            sender=MAIN,
            receiver=None,
            text="1",
            now=now,
            classify=Classifier(),
            message=msg,
        )
        assert reply.message_id == msg.id
    pass_at(store, now + dt.timedelta(seconds=5))
    row = alert(store, alert_id)
    assert (row.state, row.result) == (AlertState.ACKNOWLEDGED, "confirmed")
    assert kinds(store, alert_id)[-3:] == ["sms", "reply", "acknowledged"]
    assert pass_at(store, now + dt.timedelta(minutes=20)).attempts == []  # it stopped


def test_a_denial_on_the_call_acknowledges(store: Store) -> None:
    customer(store)
    alert_id, _ = post(store, body())
    done = pass_at(store, DAY)
    end_call(
        store, done.attempts[0], Outcome.CUSTOMER_HANGUP, "denied", DAY + dt.timedelta(seconds=40)
    )
    pass_at(store, DAY + dt.timedelta(seconds=41))
    row = alert(store, alert_id)
    assert (row.state, row.result, row.calls) == (AlertState.ACKNOWLEDGED, "denied", 1)
    assert row.acknowledged_by is not None and MAIN not in row.acknowledged_by  # masked


def test_the_roster_is_walked_in_order_and_stops_at_the_first_who_acknowledges(
    store: Store,
) -> None:
    alert_id, _ = post(
        store,
        {
            "idempotency_key": "atm-7",
            "type": "device_fault",
            "target": {"roster": "atm-duty-east"},
            "payload": {"device_no": "0123"},
        },
    )
    first = pass_at(store, DAY).attempts
    assert attempt(store, first[0]).phone == "+8613800000001"
    end_call(store, first[0], Outcome.COMPLETED, "no_input", DAY + dt.timedelta(seconds=30))
    second = pass_at(store, DAY + dt.timedelta(seconds=31)).attempts
    assert attempt(store, second[0]).phone == "+8613800000002"
    end_call(store, second[0], Outcome.COMPLETED, "acknowledged", DAY + dt.timedelta(seconds=60))
    assert pass_at(store, DAY + dt.timedelta(seconds=61)).attempts == []
    row = alert(store, alert_id)
    assert (row.state, row.acknowledged_by, row.calls) == ("acknowledged", "值班员乙", 2)


def test_dnc_skips_a_number_and_night_hours_hold_a_low_priority_alert(store: Store) -> None:
    customer(store)
    with store.session() as s:
        add_entry(
            s, MAIN, scope=DncScope.ALL, reason="asked", source="test", channel=DncChannel.VOICE
        )
    alert_id, _ = post(store, body("dnc"))
    done = pass_at(store, DAY)
    assert [attempt(store, a).phone for a in done.attempts] == [HOME]  # main skipped twice
    assert kinds(store, alert_id)[1:3] == ["skipped", "skipped"]
    night = dt.datetime(2026, 12, 1, 16, 0, tzinfo=dt.UTC)  # 00:00 in Beijing
    customer(store, "C0002", numbers=("+8613912349999",))
    low, _ = post(store, body("low", priority=3, target={"customer": "C0002"}), night)
    urgent, _ = post(
        store, body("urgent", priority=9, target={"customer": "C0002"}, payload={"a": 1}), night
    )
    assert [attempt(store, a).detail["alert_id"] for a in pass_at(store, night).attempts] == [
        urgent
    ]
    held = alert(store, low)
    assert held.next_at == dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)  # 08:00 in Beijing
    assert "held" in kinds(store, low)


def test_a_number_on_a_live_call_waits_and_the_deadline_expires_the_alert(store: Store) -> None:
    customer(store)
    with store.session() as s:  # a campaign call to the main number is live
        s.add(Attempt(campaign_id=1, phone=MAIN, detail={}))
    cfg = config(transaction_alert={"ladder": [{"call": "main"}]})
    alert_id, _ = post(store, body(deadline_s=60), cfg=cfg)
    assert pass_at(store, DAY, cfg=cfg).attempts == []
    assert alert(store, alert_id).next_at == DAY + store_alerts.IN_FLIGHT_RETRY
    pass_at(store, DAY + dt.timedelta(seconds=61), cfg=cfg)
    assert alert(store, alert_id).state == AlertState.EXPIRED
    assert kinds(store, alert_id)[-1] == "expired"


def test_room_limits_the_calls_and_the_most_urgent_go_first(store: Store) -> None:
    for i in range(4):
        customer(store, f"C{i}", numbers=(f"+861391234{i:04d}",))
    ids = [
        post(store, body(f"k{i}", priority=i + 5, target={"customer": f"C{i}"}))[0]
        for i in range(4)
    ]
    done = pass_at(store, DAY, room=2)
    assert [attempt(store, a).detail["alert_id"] for a in done.attempts] == [ids[3], ids[2]]
    assert done.waiting_for_channel == 2


def test_open_and_overdue_alerts_are_counted_per_type(store: Store) -> None:
    """The counts behind /metrics: open now, and overdue as the console shows them."""
    customer(store)
    cfg = config(transaction_alert={"ladder": [{"call": "main"}, {"call": "main", "after": "5m"}]})
    late, _ = post(store, body("late", deadline_s=60), cfg=cfg)
    post(store, body("fine", deadline_s=3600), cfg=cfg)
    with store.session() as s:
        first = store_alerts.run_due(s, cfg, DAY, 10, SMS, count=True)
    assert first.counts == {"transaction_alert": store_alerts.AlertCounts(open=2, overdue=0)}
    assert pass_at(store, DAY, cfg=cfg).counts is None  # only when asked
    for attempt_id in first.attempts:  # nobody answers
        end_call(store, attempt_id, Outcome.NO_ANSWER, None, DAY + dt.timedelta(seconds=30))
    with store.session() as s:
        later = store_alerts.run_due(s, cfg, DAY + dt.timedelta(seconds=90), 0, SMS, count=True)
    assert alert(store, late).state == AlertState.EXPIRED
    assert later.counts == {"transaction_alert": store_alerts.AlertCounts(open=1, overdue=1)}
    with store.session() as s:  # "fine" expires now; "late" expired over a day ago
        day_after = store_alerts.run_due(
            s, cfg, DAY + dt.timedelta(days=1, minutes=2), 0, SMS, count=True
        )
    assert day_after.counts == {"transaction_alert": store_alerts.AlertCounts(open=0, overdue=1)}


def test_two_alerts_for_one_number_in_one_pass_make_one_call(store: Store) -> None:
    """A pass reads its numbers' facts once: the call it starts to a number makes that number
    in flight for the alerts after it in the same pass."""
    customer(store)
    cfg = config(transaction_alert={"ladder": [{"call": "main"}]})
    first, _ = post(store, body("a", priority=9), cfg=cfg)
    second, _ = post(store, body("b", priority=8), cfg=cfg)
    done = pass_at(store, DAY, cfg=cfg)
    assert [done.attempt_alert[a] for a in done.attempts] == [first]
    assert alert(store, second).next_at == DAY + store_alerts.IN_FLIGHT_RETRY
    assert "held" in kinds(store, second)


def test_a_rung_another_worker_claimed_is_not_called_twice(store_url: str) -> None:
    """Two desks' passes over the same due alerts (two workers on one store): each rung is
    claimed once, so every alert gets exactly one call."""
    store = open_store(store_url)
    try:
        for i in range(6):
            customer(store, f"C{i}", numbers=(f"+861391235{i:04d}",))
        for i in range(6):
            post(store, body(f"w{i}", target={"customer": f"C{i}"}))
        results: list[store_alerts.Pass] = []
        barrier = threading.Barrier(2)

        def desk() -> None:
            barrier.wait()
            for _ in range(20):  # a busy store: a pass may wait or fail, the next one retries
                try:
                    results.append(pass_at(store, DAY))
                    return
                except Exception:  # noqa: BLE001 - a serialization failure: pass again
                    continue

        threads = [threading.Thread(target=desk) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        called = [a for r in results for a in r.attempts]
        with store.session() as s:
            rows = s.scalars(select(Attempt).where(Attempt.id.in_(called))).all()
            alerts = s.scalars(select(Alert)).all()
        assert sorted(r.detail["alert_id"] for r in rows) == sorted(a.id for a in alerts)
        assert all(a.calls == 1 and a.waiting_attempt_id in called for a in alerts)
    finally:
        store.dispose()
