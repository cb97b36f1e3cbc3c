"""``/metrics``: parsed by prometheus_client's own text-format parser."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from dialer.floor.console import DialerMetrics, outcome_recorder
from dialer.floor.console.metrics import register_floor
from dialer.floor.service import Dialer

from .floorkit import Console, play

FORBIDDEN_LABEL = re.compile(r"\d{5,}|^\+|@|/")  # numbers, call ids, interfaces


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_parse_and_follow_conventions(console: Console) -> None:
    m = console.metrics
    m.count_dial("card-activation-test", 3)
    m.count_outcome("card-activation-test", "agent_handled")
    m.count_outcome("card-activation-test", "abandoned")
    for s in (0.4, 1.2, 1.9, 2.5, 7.0):
        m.observe_answer_to_agent("card-activation-test", s)
    play(console.floor)
    status, text = await console.request("GET", "/metrics", auth=False)
    assert status == 200
    fams = families(text)
    for name, fam in fams.items():
        assert name.startswith("dialer_"), name
        for sample in fam.samples:
            for label, label_value in sample.labels.items():
                if label != "le":
                    assert not FORBIDDEN_LABEL.search(label_value), (name, label, label_value)
            assert set(sample.labels) <= {
                "campaign",
                "queue",
                "state",
                "outcome",
                "window",
                "reason",
                "result",
                "le",
                "dependency",  # ami:<switch>, fastagi, store
                "kind",  # an alarm's
                "subject",  # an alarm's: a switch, fastagi, store or a campaign
            }
            if name.endswith("_ratio"):
                assert 0.0 <= sample.value <= 1.0 or name == "dialer_dial_level_ratio", sample
    # counters: the parser strips "_total" from the family name and keeps it on the samples
    for counter in ("dialer_dials", "dialer_attempt_outcomes", "dialer_config_reloads"):
        assert fams[counter].type == "counter"
    assert 'dialer_dials_total{campaign="card-activation-test"} 3.0' in text
    assert (
        'dialer_attempt_outcomes_total{campaign="card-activation-test",outcome="abandoned"} 1.0'
        in text
    )

    hist = fams["dialer_answer_to_agent_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["2.0"] == 3.0 and buckets["+Inf"] == 5.0 and buckets["1.0"] == 1.0

    def value(name: str, **labels: str) -> float:
        [v] = [
            s.value
            for s in fams[name].samples
            if all(s.labels.get(k) == x for k, x in labels.items())
        ]
        return float(v)

    camp = "card-activation-test"
    assert value("dialer_campaign_contacts", campaign=camp) == 6
    assert value("dialer_campaign_running", campaign=camp) == 1
    assert value("dialer_abandon_rate_ratio", campaign=camp, window="30d") == 2 / 21
    assert value("dialer_abandon_cap_ratio", campaign=camp) == 0.03
    assert value("dialer_agents", queue="activation-agents", state="logged_out") == 0
    assert sum(s.value for s in fams["dialer_agents"].samples) == 5
    assert value("dialer_calls", campaign=camp, state="dialing") == 1
    assert 0 < value("dialer_occupancy_ratio") <= 1
    # the floor is read at scrape time: pause, scrape again
    await console.request("POST", f"/api/campaigns/{camp}/pause")
    _, text = await console.request("GET", "/metrics", auth=False)
    assert 'dialer_campaign_running{campaign="card-activation-test"} 0.0' in text


def test_registry_is_injected_not_global(floor: Dialer) -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    DialerMetrics(a).count_dial("x")
    DialerMetrics(b)  # a second process-wide set on another registry: no clash
    register_floor(b, floor)
    assert a.get_sample_value("dialer_dials_total", {"campaign": "x"}) == 1.0
    assert b.get_sample_value("dialer_dials_total", {"campaign": "x"}) is None
    assert b.get_sample_value("dialer_campaign_contacts", {"campaign": "preview-test"}) == 6.0


def test_outcome_recorder_for_the_runner() -> None:
    from dialer.outcomes import Outcome
    from dialer.telephony.core import FinishedAttempt
    from dialer.telephony.tracker import Finished

    def finished(outcome: Outcome, **times: float | None) -> FinishedAttempt:
        base: dict[str, float | None] = dict(
            ringing_at=None,
            answered_at=None,
            greeting_end_at=None,
            queued_at=None,
            bridged_at=None,
            message_played_at=None,
        )
        base.update(times)
        facts = Finished(
            attempt_id=1,
            outcome=outcome,
            end_reason="hangup",
            originated_at=100.0,
            ended_at=200.0,
            originate_reason=4,
            hangup_cause=16,
            amd_status=None,
            queue="q",
            agent=None,
            result=None,
            live_answer=True,
            resynced=False,
            detail={},
            **base,
        )
        return FinishedAttempt(attempt_id=1, outcome=outcome, facts=facts, next_attempt_at=None)

    registry = CollectorRegistry()
    record = outcome_recorder(DialerMetrics(registry))
    record(
        "c",
        finished(Outcome.AGENT_HANDLED, answered_at=110.0, greeting_end_at=111.0, bridged_at=112.5),
    )
    record(
        "c", finished(Outcome.AGENT_HANDLED, answered_at=110.0, bridged_at=113.0)
    )  # no greeting end
    record("c", finished(Outcome.ABANDONED, answered_at=110.0, greeting_end_at=111.0))
    record("c", finished(Outcome.BUSY))
    get = registry.get_sample_value
    assert (
        get("dialer_attempt_outcomes_total", {"campaign": "c", "outcome": "agent_handled"}) == 2.0
    )
    assert get("dialer_attempt_outcomes_total", {"campaign": "c", "outcome": "busy"}) == 1.0
    assert get("dialer_answer_to_agent_seconds_count", {"campaign": "c"}) == 2.0
    assert get("dialer_answer_to_agent_seconds_sum", {"campaign": "c"}) == 1.5 + 3.0
    assert get("dialer_answer_to_agent_seconds_bucket", {"campaign": "c", "le": "2.0"}) == 1.0
