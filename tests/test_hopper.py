from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dialer.app.cli import cli
from dialer.errors import ComplianceError, IllegalTransition
from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.lists.compliance import Reason
from dialer.lists.contacts import import_contacts
from dialer.lists.dnc import DncScope, add_entry
from dialer.lists.hopper import (
    AttemptFacts,
    explain,
    finish_attempt,
    lease,
    release,
    start_attempt,
)
from dialer.outcomes import Outcome
from dialer.store import Store
from dialer.store.models import Attempt, Campaign, Contact

UTC = dt.UTC

BASE: dict[str, Any] = {
    "name": "hop",
    "state": "running",
    "purpose": "service",
    "mode": "progressive",
    "queue": "q",
    "calling_window": {"start": "09:00", "end": "20:00", "skip_holidays": True},
    "max_attempts": 3,
    "retry": {"busy": "10m", "no_answer": "2h", "abandoned": "72h", "failed": "30m"},
}

# 3 Shanghai, 2 New York, 1 London, 1 Beijing number whose timezone column says London
CSV = """phone,name,priority,timezone
13800000001,a,5,
13800000002,b,1,
13800000003,c,9,
+1 212 736 0001,d,0,
+1 212 736 0002,e,0,
+44 20 7946 0001,f,0,
010-65550001,g,0,Europe/London
"""
CN = ["+8613800000001", "+8613800000002", "+8613800000003"]
NY = ["+12127360001", "+12127360002"]
LON = ["+442079460001"]
CN_IN_LONDON = ["+861065550001"]  # region CN (Chinese holidays), London clock


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


def setup(store: Store, tmp_path: Path, **over: Any) -> int:
    spec = parse_campaign({**BASE, **over})
    f = tmp_path / f"{spec.name}.csv"
    f.write_text(CSV, encoding="utf-8")
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="test")
        rep = import_contacts(s, row, f, default_region="CN")
        assert rep.imported == 7
        return row.id


def counts(store: Store, cid: int, when: str) -> dict[str, int]:
    with store.session() as s:
        c = explain(s, s.get(Campaign, cid), at(when), daily_cap=3)
    out = {"eligible": c.eligible, **{r.value: n for r, n in c.reasons.items() if n}}
    assert c.total == 7
    return out


def expected(eligible: list[str], **reasons: list[str]) -> dict[str, int]:
    out = {"eligible": len(eligible)}
    out.update({k: len(v) for k, v in reasons.items() if v})
    return out


def test_explain_across_zones(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    # Tue 2026-12-01 04:00Z: 12:00 Shanghai, 23:00 (Mon) New York, 04:00 London
    assert counts(store, cid, "2026-12-01T04:00:00+00:00") == expected(
        CN, outside_window=NY + LON + CN_IN_LONDON
    )
    # 15:00Z: 23:00 Shanghai, 10:00 New York, 15:00 London
    assert counts(store, cid, "2026-12-01T15:00:00+00:00") == expected(
        NY + LON + CN_IN_LONDON, outside_window=CN
    )
    # window edges: 09:00 inclusive, 20:00 exclusive, each in its own zone
    # 00:59:59Z = 08:59:59 Shanghai, 19:59:59 New York, 00:59:59 London
    assert counts(store, cid, "2026-12-01T00:59:59+00:00") == expected(
        NY, outside_window=CN + LON + CN_IN_LONDON
    )
    # 01:00Z = 09:00 Shanghai, 20:00 New York
    assert counts(store, cid, "2026-12-01T01:00:00+00:00") == expected(
        CN, outside_window=NY + LON + CN_IN_LONDON
    )
    # 11:59:59Z = 19:59:59 Shanghai, 11:59:59 London
    assert counts(store, cid, "2026-12-01T11:59:59+00:00") == expected(
        CN + LON + CN_IN_LONDON, outside_window=NY
    )
    assert counts(store, cid, "2026-12-01T12:00:00+00:00") == expected(
        LON + CN_IN_LONDON, outside_window=CN + NY
    )
    # a New York DST change: Sun 2026-03-08 09:00 EDT is 13:00Z (EST the day before: 14:00Z)
    assert counts(store, cid, "2026-03-08T13:00:00+00:00") == expected(
        NY + LON + CN_IN_LONDON, outside_window=CN
    )
    assert counts(store, cid, "2026-03-07T13:00:00+00:00") == expected(
        LON + CN_IN_LONDON, outside_window=CN + NY
    )


def test_explain_on_a_chinese_holiday_and_a_make_up_day(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    # National Day, 12:00 in Shanghai; 05:00 in London (outside, but a Chinese holiday
    # for the Beijing number kept on London time comes first)
    assert counts(store, cid, "2026-10-01T04:00:00+00:00") == expected(
        [], holiday=CN + CN_IN_LONDON, outside_window=NY + LON
    )
    # 2026-10-01 14:00Z: 22:00 Shanghai (holiday first), 10:00 New York, 15:00 London
    assert counts(store, cid, "2026-10-01T14:00:00+00:00") == expected(
        NY + LON, holiday=CN + CN_IN_LONDON
    )
    # Saturday 2026-02-14 is an official make-up working day: not a holiday
    assert counts(store, cid, "2026-02-14T04:00:00+00:00") == expected(
        CN, outside_window=NY + LON + CN_IN_LONDON
    )
    # ... and it counts as the Saturday it is: a Mon-Fri campaign does not call
    weekdays = setup(
        store,
        tmp_path,
        name="hop-weekdays",
        calling_window={"days": ["mon", "tue", "wed", "thu", "fri"], "skip_holidays": True},
    )
    assert counts(store, weekdays, "2026-02-14T04:00:00+00:00") == expected(
        [], outside_window=CN + NY + LON + CN_IN_LONDON
    )
    # without skip_holidays, National Day is an ordinary Thursday
    plain = setup(store, tmp_path, name="hop-plain", calling_window={"skip_holidays": False})
    assert counts(store, plain, "2026-10-01T04:00:00+00:00")["eligible"] == 3


def test_explain_cli(store: Store, db_url: str, tmp_path: Path) -> None:
    setup(store, tmp_path)
    runner = CliRunner()

    def explain_json(*extra: str) -> dict[str, Any]:
        r = runner.invoke(cli, ["--db", db_url, "hopper", "explain", "hop", "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    doc = explain_json("--at", "2026-12-01T12:00:00+08:00")
    assert set(doc) == {"at", "zone", "eligible", "reasons", "by_zone"}
    assert doc["eligible"] == 3 and doc["reasons"]["outside_window"] == 4
    assert list(doc["reasons"]) == [r.value for r in Reason]
    # the per-zone breakdown the text shows is in the JSON too
    assert doc["by_zone"]["Asia/Shanghai"] == {"eligible": 3}
    assert sum(sum(z.values()) for z in doc["by_zone"].values()) == 7
    # no offset: the campaign's zone (where most of its contacts are), not UTC
    assert doc["zone"] == "Asia/Shanghai"
    assert explain_json("--at", "2026-12-01T12:00:00") == doc
    utc = explain_json("--at", "2026-12-01T04:00:00Z")
    assert utc == {**doc, "at": "2026-12-01T04:00:00+00:00"}
    early = explain_json("--at", "2026-12-01T04:00:00")  # 04:00 in Beijing
    assert early["at"] == "2026-12-01T04:00:00+08:00"
    assert early["by_zone"]["Asia/Shanghai"] == {"eligible": 0, "outside_window": 3}
    r = runner.invoke(
        cli, ["--db", db_url, "hopper", "explain", "hop", "--at", "2026-12-01T04:00:00Z"]
    )
    assert "eligible" in r.stdout and "outside_window" in r.stdout
    r = runner.invoke(cli, ["--db", db_url, "hopper", "explain", "hop", "--at", "yesterday"])
    assert r.exit_code != 0


def test_reasons_follow_contact_state(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    noon_cn = "2026-12-01T04:00:00+00:00"
    now = at(noon_cn)
    with store.session() as s:
        by = {c.phone: c for c in s.scalars(select(Contact))}
        by[CN[0]].status = "done"
        by[CN[1]].valid_until = dt.date(2026, 11, 30)
        by[CN[2]].next_attempt_at = now + dt.timedelta(minutes=5)
        by[NY[0]].attempts = 3
        by[NY[1]].abandoned_at = now - dt.timedelta(hours=1)
        add_entry(s, LON[0])
    assert counts(store, cid, noon_cn) == {
        "eligible": 0,
        "done": 1,
        "expired": 1,
        "dnc": 1,
        "attempts_exhausted": 1,
        "locked_out": 1,
        "scheduled_later": 1,
        "outside_window": 1,
    }
    with store.session() as s:
        s.get(Campaign, cid).state = "paused"
    assert counts(store, cid, noon_cn) == {"eligible": 0, "campaign_paused": 7}


def test_lease_order_exclusivity_and_expiry(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")  # only Shanghai is open
    with store.session() as s:
        camp = s.get(Campaign, cid)
        got = lease(s, camp, now, 2, "w1", daily_cap=3)
        assert [c.phone for c in got] == [CN[2], CN[0]]  # priority 9, then 5
        assert all(c.lease_owner == "w1" and c.lease_until > now for c in got)
    with store.session() as s:
        camp = s.get(Campaign, cid)
        got = lease(s, camp, now, 10, "w2", daily_cap=3)
        assert [c.phone for c in got] == [CN[1]]  # the rest are leased or outside
        assert lease(s, camp, now, 10, "w3", daily_cap=3) == []
        release(s, got)  # given back without a dial: free at once
        assert [c.phone for c in lease(s, camp, now, 10, "w3", daily_cap=3)] == [CN[1]]
    later = now + dt.timedelta(minutes=2)  # the leases expired
    with store.session() as s:
        got = lease(s, s.get(Campaign, cid), later, 10, "w4", daily_cap=3)
        assert {c.phone for c in got} == set(CN)
    night = at("2026-12-01T15:00:00+00:00")
    with store.session() as s:
        got = lease(s, s.get(Campaign, cid), night, 10, "w5", daily_cap=3)
        assert {c.phone for c in got} == set(NY + LON + CN_IN_LONDON)
        add_entry(s, "+1212736", prefix=True, scope=DncScope.ALL)
    with store.session() as s:
        got = lease(s, s.get(Campaign, cid), night + dt.timedelta(minutes=3), 10, "w6", daily_cap=3)
        assert {c.phone for c in got} == set(LON + CN_IN_LONDON)  # DNC prefix re-checked


def test_attempt_lifecycle_and_retry(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")
    with store.session() as s:
        camp = s.get(Campaign, cid)
        c = lease(s, camp, now, 1, "w", daily_cap=3)[0]
        a = start_attempt(s, c, camp, now, daily_cap=3)
        assert (a.seq, a.state, a.phone, a.outcome, a.created_at) == (
            1,
            "created",
            c.phone,
            None,
            now,
        )
        assert c.attempts == 1 and c.lease_owner is None and c.lease_until is None
        # the live attempt blocks the number: not leased again, counted as scheduled_later
        again = lease(s, camp, now, 10, "w2", daily_cap=3)
        assert c not in again
        with pytest.raises(ComplianceError, match="scheduled_later"):
            start_attempt(s, c, camp, now, daily_cap=3)
        d = finish_attempt(
            s, a, Outcome.BUSY, now + dt.timedelta(seconds=30), AttemptFacts(hangup_cause=17)
        )
        assert not d.done
        assert a.outcome == "busy" and a.hangup_cause == 17 and a.state == "ended"
        assert c.next_attempt_at == now + dt.timedelta(seconds=30, minutes=10)
        assert a.next_attempt_at == c.next_attempt_at and c.last_outcome == "busy"
        with pytest.raises(IllegalTransition):
            finish_attempt(s, a, Outcome.NO_ANSWER, now)
        with pytest.raises(TypeError):
            a2 = start_attempt(s, c, camp, c.next_attempt_at, daily_cap=3)
            finish_attempt(s, a2, Outcome.FAILED, now, AttemptFacts(colour="red"))  # type: ignore[call-arg]
        phone = c.phone
    with store.session() as s:
        c = s.scalars(select(Contact).where(Contact.phone == phone)).one()
        camp = s.get(Campaign, cid)
        assert c.attempts == 2  # the failed finish above rolled nothing back of the start
        a3 = s.scalars(select(Attempt).where(Attempt.seq == 2)).one()
        finish_attempt(s, a3, Outcome.INVALID_NUMBER, now + dt.timedelta(minutes=11))
        assert c.status == "done" and c.next_attempt_at is None  # no retry entry: final
        with pytest.raises(ComplianceError, match="done"):
            start_attempt(s, c, camp, now + dt.timedelta(hours=1), daily_cap=3)


def test_abandoned_locks_out_and_budget_is_shared(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    t = at("2026-12-01T01:00:00+00:00")
    with store.session() as s:
        camp = s.get(Campaign, cid)
        c = s.scalars(select(Contact).where(Contact.phone == CN[0])).one()
        a = start_attempt(s, c, camp, t, daily_cap=3)
        finish_attempt(s, a, Outcome.ABANDONED, t)
        assert c.abandoned_at == t and c.next_attempt_at == t + dt.timedelta(hours=72)
    with store.session() as s:
        camp = s.get(Campaign, cid)
        c = s.scalars(select(Contact).where(Contact.phone == CN[0])).one()
        e = explain(s, camp, t + dt.timedelta(hours=1), daily_cap=3)
        assert e.reasons[Reason.LOCKED_OUT] == 1
        t2 = t + dt.timedelta(hours=72)  # 2026-12-04 09:00 Shanghai
        a = start_attempt(s, c, camp, t2, daily_cap=3)
        finish_attempt(s, a, Outcome.UNKNOWN, t2)  # unknown uses the failed rule (30m)
        assert c.next_attempt_at == t2 + dt.timedelta(minutes=30) and c.status == "active"
        t3 = c.next_attempt_at
        a = start_attempt(s, c, camp, t3, daily_cap=3)
        finish_attempt(s, a, Outcome.NO_ANSWER, t3)
        assert c.attempts == 3 and c.status == "done"  # 3 = max_attempts, whatever the causes


def test_daily_cap_counts_every_campaign(store: Store, tmp_path: Path) -> None:
    a_id = setup(store, tmp_path)
    b_id = setup(store, tmp_path, name="hop-b")
    t = at("2026-12-01T01:30:00+00:00")  # 09:30 Shanghai
    with store.session() as s:
        for i, cid in enumerate([a_id, b_id, a_id]):
            camp = s.get(Campaign, cid)
            c = s.scalars(
                select(Contact).where(Contact.campaign_id == cid, Contact.phone == CN[1])
            ).one()
            when = t + dt.timedelta(hours=i)
            att = start_attempt(s, c, camp, when, daily_cap=5)
            finish_attempt(s, att, Outcome.BUSY, when + dt.timedelta(seconds=20))
    later = t + dt.timedelta(hours=5)  # 14:30 Shanghai, same local day
    with store.session() as s:
        got = lease(s, s.get(Campaign, b_id), later, 10, "w", daily_cap=3)
        assert CN[1] not in {c.phone for c in got}
        assert explain(s, s.get(Campaign, b_id), later, daily_cap=3).reasons[Reason.DAILY_CAP] == 1
        # the next local day (00:00 Shanghai = 16:00Z) the cap starts again
        tomorrow = at("2026-12-02T01:00:00+00:00")
        got = lease(s, s.get(Campaign, b_id), tomorrow, 10, "w", daily_cap=3)
        assert CN[1] in {c.phone for c in got}


def test_paused_campaign_leases_nothing(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path, state="paused")
    with store.session() as s:
        assert lease(s, s.get(Campaign, cid), at("2026-12-01T04:00:00+00:00"), 5, "w") == []


def random_world(store: Store, tmp_path: Path, purpose: str, seed: int) -> tuple[int, dt.datetime]:
    """A campaign of 300 contacts in random states, plus DNC entries and attempt histories
    (some live) of the same numbers in another campaign."""
    import random

    rng = random.Random(seed)
    cid = setup(store, tmp_path, purpose=purpose)
    other = setup(store, tmp_path, name="hop-other")
    base = at("2026-10-01T00:00:00+00:00")
    zones = [("Asia/Shanghai", "CN"), ("America/New_York", "US"), ("Europe/London", "GB")]
    with store.session() as s:
        for i in range(300):
            tz, region = rng.choice(zones)
            when = base + dt.timedelta(minutes=rng.randrange(-3000, 3000))
            s.add(
                Contact(
                    campaign_id=rng.choice([cid, cid, other]),
                    phone=f"+86137{i:08d}",
                    region=region,
                    timezone=tz,
                    priority=rng.randrange(3),
                    status=rng.choice(["active"] * 5 + ["done"]),
                    attempts=rng.randrange(5),
                    next_attempt_at=rng.choice([None, None, when]),
                    abandoned_at=rng.choice([None, None, None, when]),
                    valid_until=rng.choice(
                        [None, None, base.date(), base.date() + dt.timedelta(1)]
                    ),
                    fields={},
                )
            )
            if rng.random() < 0.3:  # attempts to the number, some still live
                for _ in range(rng.randrange(1, 4)):
                    s.add(
                        Attempt(
                            campaign_id=other,
                            phone=f"+86137{i:08d}",
                            created_at=base + dt.timedelta(minutes=rng.randrange(-2000, 2000)),
                            outcome=rng.choice(["busy", "no_answer", None]),
                        )
                    )
        for i in range(0, 300, 17):
            add_entry(s, f"+86137{i:08d}", scope=rng.choice(list(DncScope)))
        add_entry(s, "+861370000002", prefix=True, scope=DncScope.MARKETING)
        add_entry(s, "+861370000010", prefix=True, scope=DncScope.ALL)
    return cid, base


INSTANTS = [dt.timedelta(hours=h, minutes=(h * 37) % 60) for h in range(-30, 40, 7)]


@pytest.mark.parametrize("purpose", ["service", "marketing"])
def test_grouped_explain_agrees_with_rowwise(store: Store, tmp_path: Path, purpose: str) -> None:
    from dialer.lists.hopper import explain_rowwise

    cid, base = random_world(store, tmp_path, purpose, 7 if purpose == "service" else 8)
    with store.session() as s:
        camp = s.get(Campaign, cid)
        for delta in INSTANTS:
            fast = explain(s, camp, base + delta, daily_cap=2)
            slow = explain_rowwise(s, camp, base + delta, daily_cap=2)
            assert fast.to_json() == slow.to_json(), base + delta

            def nonzero(c: Any) -> dict[str, dict[Any, int]]:
                return {z: {r: n for r, n in d.items() if n} for z, d in c.by_zone.items()}

            assert nonzero(fast) == nonzero(slow)


@pytest.mark.parametrize("purpose", ["service", "marketing"])
def test_lease_takes_exactly_the_contacts_the_oracle_allows(
    store: Store, tmp_path: Path, purpose: str
) -> None:
    """Lease everything at an instant: the leased set is exactly the contacts that break no
    rule according to the independent oracle of test_compliance, in priority order."""
    from dialer.lists.compliance import ContactState, NumberFacts, Policy
    from dialer.lists.dnc import DncMatcher
    from tests.test_compliance import broken_rules

    cid, base = random_world(store, tmp_path, purpose, 11 if purpose == "service" else 12)
    for delta in INSTANTS:
        now = base + delta
        with store.session() as s:
            camp = s.get(Campaign, cid)
            pol = Policy.of(parse_campaign({**BASE, "purpose": purpose}), daily_cap=2)
            dnc = DncMatcher.load(s)
            allowed = set()
            history: dict[str, list[tuple[dt.datetime, str | None]]] = {}
            for phone, t, o in s.execute(
                select(Attempt.phone, Attempt.created_at, Attempt.outcome)
            ):
                history.setdefault(phone, []).append((t, o))
            for c in s.scalars(select(Contact).where(Contact.campaign_id == cid)):
                atts = history.get(c.phone, [])
                facts = NumberFacts(
                    dnc=dnc.blocks(c.phone, purpose),
                    attempt_times=tuple(t for t, _ in atts),
                    in_flight=any(o is None for _, o in atts),
                )
                if not broken_rules(ContactState.of(c), pol, now, facts):
                    allowed.add(c.phone)
            got = lease(s, camp, now, 1000, "w", daily_cap=2, max_batches=1000)
            assert {c.phone for c in got} == allowed, now
            prios = [c.priority for c in got]
            assert prios == sorted(prios, reverse=True)
            s.rollback()  # leave the leases unwritten for the next instant


def test_lease_pages_past_ineligible_candidates(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")  # Shanghai open
    with store.session() as s:
        for i in range(120):  # high priority, but every one on the DNC list (by prefix)
            s.add(
                Contact(
                    campaign_id=cid,
                    phone=f"+86170{i:08d}",
                    region="CN",
                    timezone="Asia/Shanghai",
                    priority=50,
                    fields={},
                )
            )
        add_entry(s, "+86170", prefix=True)
    with store.session() as s:
        camp = s.get(Campaign, cid)
        bounded = lease(s, camp, now, 2, "w", daily_cap=3, batch=40, max_batches=2)
        assert bounded == []  # the work per call is bounded: 2 batches of DNC'd numbers
        got = lease(s, camp, now, 2, "w", daily_cap=3, batch=40)
        assert [c.phone for c in got] == [CN[2], CN[0]]


def test_live_calls_and_dnc_numbers_do_not_starve_the_lease(store: Store, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    now = at("2026-12-01T04:00:00+00:00")
    with store.session() as s:
        for i in range(150):  # top priority, but 100 on a live call and 50 on the DNC list
            phone = f"+86171{i:08d}"
            s.add(
                Contact(
                    campaign_id=cid,
                    phone=phone,
                    region="CN",
                    timezone="Asia/Shanghai",
                    priority=50,
                    fields={},
                )
            )
            if i < 100:
                s.add(Attempt(campaign_id=cid, phone=phone, created_at=now, outcome=None))
            else:
                add_entry(s, phone)
    with store.session() as s:
        got = lease(s, s.get(Campaign, cid), now, 2, "w", daily_cap=3, batch=40, max_batches=2)
        assert [c.phone for c in got] == [CN[2], CN[0]]
        e = explain(s, s.get(Campaign, cid), now, daily_cap=3)
        assert e.reasons[Reason.SCHEDULED_LATER] == 100 and e.reasons[Reason.DNC] == 50


def test_explain_splits_by_zone(store: Store, db_url: str, tmp_path: Path) -> None:
    cid = setup(store, tmp_path)
    with store.session() as s:
        add_entry(s, NY[0])
        c = explain(s, s.get(Campaign, cid), at("2026-12-01T04:00:00+00:00"), daily_cap=3)
    assert c.by_zone["Asia/Shanghai"] == {None: 3}
    assert c.by_zone["America/New_York"] == {Reason.DNC: 1, Reason.OUTSIDE_WINDOW: 1}
    assert c.by_zone["Europe/London"] == {Reason.OUTSIDE_WINDOW: 2}
    r = CliRunner().invoke(
        cli, ["--db", db_url, "hopper", "explain", "hop", "--at", "2026-12-01T04:00:00Z"]
    )
    assert "America/New_York" in r.stdout and "Mon 23:00" in r.stdout
    assert "Asia/Shanghai" in r.stdout and "Tue 12:00" in r.stdout
