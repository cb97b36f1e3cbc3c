"""Prometheus metrics: what the runner counts as it goes, and what is read from the floor.

Two kinds, both on one injected ``CollectorRegistry`` (never the global default):

- ``DialerMetrics`` holds the event metrics the runner updates as things happen: dials,
  outcomes, answer-to-agent time (a histogram with a bucket at the 2 s hold limit), reloads.
- ``FloorCollector`` reads gauges from a ``Floor`` at scrape time (campaign progress, dial
  level, answer and abandon rates, hopper, agents and calls by state), so nothing has to be
  pushed into gauges and a scrape always shows the floor as it is now.

Rules: names ``dialer_*`` in base units (seconds, ratios 0-1); counters end in ``_total``;
labels are campaign, queue, state, outcome, window, reason, result - never a phone number, a
call id or an agent's name, which would leak data and blow up cardinality.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from dialer.floor.view import CampaignSnapshot, Floor
    from dialer.telephony.core import FinishedAttempt

#: Answer-to-agent time buckets (seconds). 2.0 is the hold limit of DESIGN.md section 9.
ANSWER_TO_AGENT_BUCKETS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, float("inf"))


class ReloadResult(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


class DialerMetrics:
    """The runner's event metrics. Create one per process with the registry it serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.dials = Counter(
            "dialer_dials",
            "Originates sent, per campaign.",
            ["campaign"],
            registry=registry,
        )
        self.outcomes = Counter(
            "dialer_attempt_outcomes",
            "Attempts ended, by final outcome (DESIGN.md section 9).",
            ["campaign", "outcome"],
            registry=registry,
        )
        self.answer_to_agent = Histogram(
            "dialer_answer_to_agent_seconds",
            "Time from the end of the greeting/AMD to the bridge with an agent.",
            ["campaign"],
            buckets=ANSWER_TO_AGENT_BUCKETS,
            registry=registry,
        )
        self.reloads = Counter(
            "dialer_config_reloads",
            "Campaign/settings reloads, by result.",
            ["result"],
            registry=registry,
        )
        self.breaker_trips = Counter(
            "dialer_abandon_breaker_trips",
            "Times a campaign's abandon breaker opened (an alarm).",
            ["campaign"],
            registry=registry,
        )
        self.pacing_changes = Counter(
            "dialer_pacing_changes",
            "Pacing changes made at run time (API), by result.",
            ["campaign", "result"],
            registry=registry,
        )

    # --- what the runner calls --------------------------------------------------------------
    def count_dial(self, campaign: str, n: int = 1) -> None:
        """After each Originate is sent."""
        self.dials.labels(campaign=campaign).inc(n)

    def count_outcome(self, campaign: str, outcome: str) -> None:
        """When an attempt gets its final outcome (an ``Outcome`` value)."""
        self.outcomes.labels(campaign=campaign, outcome=str(outcome)).inc()

    def observe_answer_to_agent(self, campaign: str, seconds: float) -> None:
        """When a live answer is bridged to an agent: bridge time minus greeting end."""
        self.answer_to_agent.labels(campaign=campaign).observe(max(0.0, seconds))

    # --- what the console calls -------------------------------------------------------------
    def count_reload(self, result: ReloadResult) -> None:
        self.reloads.labels(result=result.value).inc()

    def count_breaker_trip(self, campaign: str) -> None:
        """When a campaign's abandon breaker opens."""
        self.breaker_trips.labels(campaign=campaign).inc()

    def count_pacing_change(self, campaign: str, *, accepted: bool) -> None:
        self.pacing_changes.labels(
            campaign=campaign, result="applied" if accepted else "refused"
        ).inc()


def _held_gauge(camps: Sequence[CampaignSnapshot]) -> GaugeMetricFamily:
    held = GaugeMetricFamily(
        "dialer_abandon_breaker_open",
        "1 while dialling is held: answered calls abandoned with agents free, or no agent the "
        "switch can ring.",
        labels=["campaign"],
    )
    for c in camps:
        held.add_metric([c.name], 1.0 if c.held_reason else 0.0)
    return held


def _lag_gauge(camps: Sequence[CampaignSnapshot]) -> GaugeMetricFamily:
    lag = GaugeMetricFamily(
        "dialer_ami_event_lag_seconds",
        "How late the switch's AMI events are read (the worst of the last 10 s; over "
        "pacing.max_event_lag_s predictive and power dial progressively).",
        labels=["campaign"],
    )
    for c in camps:
        lag.add_metric([c.name], c.event_lag_s)
    return lag


def _occupancy_gauge(floor: Floor) -> Iterator[GaugeMetricFamily]:
    hist = floor.history()
    if hist:
        occ = GaugeMetricFamily(
            "dialer_occupancy_ratio",
            "Agents' (talk + wrap-up) / logged-in time, recent.",
            labels=[],
        )
        occ.add_metric([], hist[-1].occupancy)
        yield occ


def _health_gauges(floor: Floor) -> Iterator[GaugeMetricFamily]:
    health = floor.health()
    up = GaugeMetricFamily(
        "dialer_dependency_up",
        "1 while the dependency answers: ami:<switch> (logged in), fastagi, store.",
        labels=["dependency"],
    )
    for d in health.dependencies:
        up.add_metric([d.name], 1.0 if d.up else 0.0)
    yield up
    alarm = GaugeMetricFamily(
        "dialer_alarm",
        "1 per alarm that holds now (kind: switch_down, ivr_down, ivr_failures, store_down, "
        "abandon_near, abandon_over, breaker_open, no_agents).",
        labels=["kind", "subject"],
    )
    for a in health.alarms:
        alarm.add_metric([a.kind.value, a.subject], 1.0)
    yield alarm


class FloorCollector(Collector):
    """Gauges read from the floor at scrape time."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor

    def describe(self) -> list[Metric]:
        return []  # families depend on the floor; avoid calling it at registration

    def collect(self) -> Iterator[Metric]:
        from dialer.floor.view import AgentState

        camps = self.floor.campaigns()

        def g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        running = g(
            "dialer_campaign_running",
            "1 when the campaign is running, 0 when paused.",
            ["campaign"],
        )
        contacts = g("dialer_campaign_contacts", "Contacts loaded.", ["campaign"])
        done = g("dialer_campaign_contacts_done", "Contacts with nothing left to do.", ["campaign"])
        attempts = g("dialer_campaign_attempts", "Attempts made (rows).", ["campaign"])
        in_flight = g("dialer_calls_in_flight", "Calls in progress.", ["campaign"])
        level = g("dialer_dial_level_ratio", "Calls in flight per available agent.", ["campaign"])
        lpa = g("dialer_lines_per_agent_ratio", "Dials per logged-in agent (recent).", ["campaign"])
        answer = g("dialer_answer_rate_ratio", "Estimated answer probability.", ["campaign"])
        abandon = g(
            "dialer_abandon_rate_ratio",
            "Abandoned / live answers over a window.",
            ["campaign", "window"],
        )
        live = g("dialer_live_answers", "Live answers over a window.", ["campaign", "window"])
        cap = g("dialer_abandon_cap_ratio", "The campaign's abandon cap.", ["campaign"])
        eligible = g("dialer_hopper_eligible_contacts", "Contacts callable now.", ["campaign"])
        held = g(
            "dialer_hopper_held_contacts",
            "Contacts not callable now, by reason.",
            ["campaign", "reason"],
        )
        for c in camps:
            running.add_metric([c.name], 1.0 if c.state == "running" else 0.0)
            contacts.add_metric([c.name], c.contacts)
            done.add_metric([c.name], c.contacts_done)
            attempts.add_metric([c.name], c.attempts)
            in_flight.add_metric([c.name], c.calls_in_flight)
            level.add_metric([c.name], c.dial_level)
            lpa.add_metric([c.name], c.lines_per_agent)
            answer.add_metric([c.name], c.answer_rate)
            cap.add_metric([c.name], c.abandon_cap)
            for window, rw in c.abandon.items():
                abandon.add_metric([c.name, window], rw.rate)
                live.add_metric([c.name, window], rw.live_answers)
            eligible.add_metric([c.name], c.hopper_eligible)
            for reason, n in c.hopper_reasons.items():
                held.add_metric([c.name, reason], n)
        yield from (running, contacts, done, attempts, in_flight, level, lpa, answer)
        yield from (abandon, live, cap, eligible, held, _held_gauge(camps), _lag_gauge(camps))

        agents = g("dialer_agents", "Agents by state and queue.", ["queue", "state"])
        counts: dict[tuple[str, str], int] = {}
        for a in self.floor.agents():
            for q in a.queues or ("",):
                counts[(q, a.state.value)] = counts.get((q, a.state.value), 0) + 1
        queues = sorted({q for q, _ in counts}) or [""]
        for q in queues:  # every state present, so a dashboard sees zeros, not gaps
            for st in AgentState:
                agents.add_metric([q, st.value], counts.get((q, st.value), 0))
        yield agents

        calls = g("dialer_calls", "Calls in progress by state.", ["campaign", "state"])
        ccounts: dict[tuple[str, str], int] = {}
        for call in self.floor.calls():
            key = (call.campaign, call.state)
            ccounts[key] = ccounts.get(key, 0) + 1
        for (camp, state), n in sorted(ccounts.items()):
            calls.add_metric([camp, state], n)
        yield calls

        yield from _health_gauges(self.floor)
        yield from _occupancy_gauge(self.floor)


class AlertsCollector(Collector):
    """Open and overdue alerts per type, as the alert desks' passes last counted them (every
    few seconds; nothing is read from the store at scrape time). ``counts()`` gives each
    floor's desk counts; floors share one store, so any floor's count serves (the last wins)."""

    def __init__(self, counts: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.counts = counts

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Any] = {}
        for desk in self.counts():
            merged.update(desk)
        open_ = GaugeMetricFamily(
            "dialer_alerts_open", "Alerts from the bank's systems still open.", labels=["type"]
        )
        overdue = GaugeMetricFamily(
            "dialer_alerts_overdue",
            "Alerts open past their deadline, or expired unacknowledged within the last day.",
            labels=["type"],
        )
        for kind, c in sorted(merged.items()):
            open_.add_metric([kind], c.open)
            overdue.add_metric([kind], c.overdue)
        yield open_
        yield overdue


def register_floor(registry: CollectorRegistry, floor: Floor) -> FloorCollector:
    collector = FloorCollector(floor)
    registry.register(collector)
    return collector


def outcome_recorder(metrics: DialerMetrics) -> Callable[[str, FinishedAttempt], None]:
    """A ``Dialer.on_outcome`` callback: counts each final outcome and, for a call bridged to
    an agent, observes answer-to-agent time (bridge minus greeting/AMD end, else answer)::

        dialer.on_outcome.append(outcome_recorder(metrics))
    """

    def record(campaign: str, item: FinishedAttempt) -> None:
        metrics.count_outcome(campaign, item.outcome.value)
        f = item.facts
        start = f.greeting_end_at if f.greeting_end_at is not None else f.answered_at
        if f.bridged_at is not None and start is not None:
            metrics.observe_answer_to_agent(campaign, f.bridged_at - start)

    return record
