"""The alert gauges of /metrics: what the desks last counted, every type present."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from dialer.floor.console.metrics import AlertsCollector
from dialer.lists.alerts import AlertCounts


def test_the_gauges_show_each_type_from_the_desks_counts() -> None:
    desks = [
        {"transaction_alert": AlertCounts(open=3, overdue=1), "device_fault": AlertCounts()},
        {"transaction_alert": AlertCounts(open=2, overdue=1)},  # a later pass of another floor
    ]
    registry = CollectorRegistry()
    registry.register(AlertsCollector(lambda: desks))
    text = generate_latest(registry).decode()
    assert 'dialer_alerts_open{type="transaction_alert"} 2.0' in text
    assert 'dialer_alerts_overdue{type="transaction_alert"} 1.0' in text
    assert 'dialer_alerts_open{type="device_fault"} 0.0' in text
    desks.clear()
    assert "dialer_alerts_open{" not in generate_latest(registry).decode()
