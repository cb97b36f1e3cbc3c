"""Alerts wired into a floor and its console: the alerts file, the desk, the API.

``alerts.yaml`` sits beside the settings file (``config/alerts.yaml`` by default); without it
a floor has no alert desk and the console answers the alert routes 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dialer import CONFIG_DIR
from dialer.errors import ConfigError
from dialer.floor.alerts import AlertDesk, AlertSms
from dialer.floor.console.alerts import AlertApi
from dialer.floor.references import check_values
from dialer.floor.service import Dialer
from dialer.floor.webhooks import WebhookSender
from dialer.lists.alerts import CheckValues
from dialer.lists.alertspec import AlertsConfig, load_alerts
from dialer.messaging.templates import TemplateLibrary
from dialer.settings import Settings
from ivr.flow import FlowLibrary


def _beside(settings: Settings, name: str) -> Path:
    return (Path(settings.source).parent if settings.source else CONFIG_DIR) / name


def alerts_of(settings: Settings) -> AlertsConfig | None:
    """The alerts file beside the settings, validated (``ConfigError``); None if absent."""
    path = _beside(settings, "alerts.yaml")
    return load_alerts(path) if path.is_file() else None


def attach_desk(dialer: Dialer, config: AlertsConfig | None) -> AlertDesk | None:
    """An alert desk on the floor's loop, dialled ahead of its campaigns."""
    if config is None or not config.types:
        return None
    library = TemplateLibrary.load(_beside(dialer.settings, "messages"))
    hooks = any(t.webhook for t in config.types.values())
    webhooks = WebhookSender(dialer.store, config) if hooks else None
    desk = AlertDesk(dialer.loop, config, AlertSms(library, dialer.settings.bank), webhooks)
    dialer.loop.first = desk
    return desk


def flow_check(config: AlertsConfig, library: FlowLibrary) -> CheckValues:
    """Each type's IVR flow must exist (``ConfigError`` naming the type and the flow); the
    check then refuses alert values that flow could not use mid-call."""
    flows = {}
    for kind, spec in config.types.items():
        if spec.flow not in library.flows:
            known = ", ".join(sorted(library.flows))
            raise ConfigError(f"alerts: type {kind}: no IVR flow named {spec.flow!r} ({known})")
        flows[kind] = library.flows[spec.flow]

    def check(kind: str, values: Mapping[str, Any]) -> list[str]:
        return check_values(flows[kind], values) if kind in flows else []

    return check


def alert_api(
    config: AlertsConfig | None,
    store: Any,
    floors: Callable[[], Iterable[Dialer]],
    clock: Callable[[], dt.datetime],
    library: FlowLibrary | None = None,
) -> AlertApi | None:
    """The console's alert routes on the floor's clock (wall time live; the simulated one in
    the demo); a new alert wakes every floor's desk at once. With the IVR's flow ``library``
    an alert whose values its flow could not use is refused at the door."""
    if config is None:
        return None

    def wake() -> None:
        for dialer in floors():
            desk = dialer.loop.first
            if isinstance(desk, AlertDesk):
                desk.wake(new_alert=True)  # before the loop's pass: campaigns hold back
            dialer.loop.wake()

    check = flow_check(config, library) if library is not None else None
    return AlertApi(config, store, wake, clock, check=check)


__all__ = ["alert_api", "alerts_of", "attach_desk", "flow_check"]
