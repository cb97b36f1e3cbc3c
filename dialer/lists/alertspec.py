"""Alert types and their escalation ladders: the alerts file, validated, and its pure rules.

Why this file is pure: whether an alert may ring a number now, when it may next, and which
steps its ladder takes are functions of the alert type, the number's facts and an instant
passed in; the desk, the API and the property tests ask them the same way.

The file (``config/alerts.yaml``, beside the settings file) declares, per alert type, the IVR
flow and agent queue, the calling hours (urgent service calls: a day window every alert may
ring in, and at night only alerts at or above ``night_min_priority``), the default deadline,
what acknowledges it (flow results and reply keywords), and the ladder::

    types:
      transaction_alert:
        flow: transaction_alert
        queue: fraud
        ladder:
          - {call: main}                        # the contact's main number
          - {call: main, after: 2m}             # not acknowledged: again two minutes later
          - {call: others, after: 1m}           # each of its other numbers, in order
          - {sms: fraud-alert-sms}              # an SMS whose reply (1 / 2) acknowledges
          - {call: main, after: 10m}
      device_fault:
        flow: device_fault
        target: roster
        ladder:
          - {call: roster}                      # each person on duty, in order; stop at the first
    rosters:
      atm-duty-east:
        - {name: 值班员甲, phone: "+8613800000001"}
    systems:                                    # per-system credentials (beside the API token)
      fraud-engine: {token_env: DIALER_ALERT_TOKEN_FRAUD_ENGINE, types: [transaction_alert]}

Rules for a call of an alert (``first_broken``, checked in this order): the number is on a
do-not-call list that bars service calls by voice; outside the type's day window and the
alert's priority is below the night minimum; the number has a call in progress (never a
second dial of a live number). A broken DNC rule skips the step; the others wait (``next_open``).
The campaign daily cap does not hold an alert back: its own bound is its ladder.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dialer.errors import ConfigError
from dialer.lists.campaigns import HHMM, Duration
from dialer.settings import format_validation_error
from dialer.yamlfile import load_mapping

ALERT_CAMPAIGN_PREFIX = "alerts."


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    EXPIRED = "expired"  # the deadline passed unacknowledged (an alarm)
    EXHAUSTED = "exhausted"  # the ladder ran out before the deadline (an alarm)


FINAL_STATES = frozenset({AlertState.ACKNOWLEDGED, AlertState.EXPIRED, AlertState.EXHAUSTED})


class TargetKind(enum.StrEnum):
    CUSTOMER = "customer"
    ROSTER = "roster"


class Act(enum.StrEnum):
    CALL = "call"
    SMS = "sms"


class EventKind(enum.StrEnum):
    RECEIVED = "received"
    CALL = "call"  # a call placed (attempt id, number masked)
    CALL_ENDED = "call_ended"  # its outcome and the flow's result
    SMS = "sms"  # an SMS queued (message id)
    REPLY = "reply"  # a keyword reply to it
    SKIPPED = "skipped"  # a step that may not run (DNC)
    HELD = "held"  # a step waiting (night hours, a live call on the number)
    ACKNOWLEDGED = "acknowledged"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    WEBHOOK = "webhook"  # the result handed to the bank's system


class Reason(enum.StrEnum):
    """Why an alert may not ring a number now, in the order checked."""

    DNC = "dnc"
    NIGHT = "night"
    IN_FLIGHT = "in_flight"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Hours(_Frozen):
    """Calling hours of an alert type, in the called person's local time."""

    start: HHMM = dt.time(8, 0)
    end: HHMM = dt.time(21, 0)
    #: outside [start, end) only alerts at this priority or above ring; None: none do
    night_min_priority: int | None = Field(8, ge=0, le=9)

    @model_validator(mode="after")
    def _order(self) -> Hours:
        if self.end <= self.start:
            raise ValueError("hours.end must be after start (same local day)")
        return self

    def is_day(self, local: dt.datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        return self.start <= t and (self.end == dt.time.max or t < self.end)

    def allows(self, local: dt.datetime, priority: int) -> bool:
        if self.is_day(local):
            return True
        return self.night_min_priority is not None and priority >= self.night_min_priority

    def next_open(self, local: dt.datetime, priority: int) -> dt.datetime:
        """The first instant at or after ``local`` (aware) when ``allows`` holds."""
        if self.allows(local, priority):
            return local
        day = local.date()
        if local.time().replace(tzinfo=None) >= self.start:
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, self.start, local.tzinfo)


class Step(_Frozen):
    """One rung of a ladder: a call (``main``, ``others``, ``all`` numbers, or the ``roster``
    in order) or an SMS template; ``after`` is the wait since the previous rung ended."""

    call: Literal["main", "others", "all", "roster"] | None = None
    sms: str | None = None
    after: Duration = dt.timedelta(0)

    @model_validator(mode="after")
    def _one(self) -> Step:
        if (self.call is None) == (self.sms is None):
            raise ValueError("a ladder step is either call: or sms:")
        return self


class Webhook(_Frozen):
    url: str = Field(pattern=r"^https?://")
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")  # the HMAC key's variable


class AlertType(_Frozen):
    flow: str
    queue: str | None = None
    target: TargetKind = TargetKind.CUSTOMER
    channel: str = "Local/{number}@customer"
    caller_id: str = ""
    language: Literal["zh", "en"] = "zh"
    ring_timeout_s: float = Field(25.0, ge=15, le=120)
    priority: int = Field(5, ge=0, le=9)  # when the request gives none
    deadline: Duration = dt.timedelta(hours=1)  # when the request gives none
    hours: Hours = Hours()
    acknowledge: tuple[str, ...] = ("confirmed", "denied")  # flow results / reply results
    ladder: tuple[Step, ...] = Field(min_length=1)
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _roster_calls(self) -> AlertType:
        roster = [s for s in self.ladder if s.call == "roster"]
        if roster and self.target is not TargetKind.ROSTER:
            raise ValueError("call: roster needs target: roster")
        if self.target is TargetKind.ROSTER and any(
            s.call not in (None, "roster") for s in self.ladder
        ):
            raise ValueError("a roster alert calls only its roster")
        return self


class Member(_Frozen):
    name: str = Field(min_length=1, max_length=60)
    phone: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    timezone: str = "Asia/Shanghai"
    language: Literal["zh", "en"] = "zh"


class System(_Frozen):
    token_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    types: tuple[str, ...] | None = None  # None: every type


class AlertsConfig(_Frozen):
    types: dict[str, AlertType] = Field(default_factory=dict)
    rosters: dict[str, tuple[Member, ...]] = Field(default_factory=dict)
    systems: dict[str, System] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> AlertsConfig:
        for name in self.types:
            if not name.replace("_", "").isalnum() or not name.islower():
                raise ValueError(f"alert type {name!r} must be lower_snake_case")
        for sysname, sys in self.systems.items():
            for t in sys.types or ():
                if t not in self.types:
                    raise ValueError(f"systems.{sysname}: unknown alert type {t!r}")
        return self

    def type_of(self, name: str) -> AlertType:
        got = self.types.get(name)
        if got is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise ConfigError(f"unknown alert type {name!r} (known: {known})")
        return got


def parse_alerts(data: Mapping[str, Any], source: str | None = None) -> AlertsConfig:
    try:
        return AlertsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_alerts(path: Path) -> AlertsConfig:
    return parse_alerts(load_mapping(path), str(path))


#: waits between webhook tries (the last repeats until the bank's system takes the result)
WEBHOOK_BACKOFF_S = (2.0, 5.0, 15.0, 60.0, 300.0, 900.0)


def webhook_backoff(tries: int) -> float:
    """Seconds to wait after the ``tries``-th failed delivery (1-based)."""
    return WEBHOOK_BACKOFF_S[min(max(tries, 1), len(WEBHOOK_BACKOFF_S)) - 1]


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Dialer-Signature`` of a delivery: HMAC-SHA256 over ``<timestamp>.<body>`` (the
    bank checks it with the same secret and refuses an old timestamp: no replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def campaign_name(alert_type: str) -> str:
    """The hidden campaign that carries an alert type's calls (its attempts and reports)."""
    return f"{ALERT_CAMPAIGN_PREFIX}{alert_type}"


def is_alert_campaign(name: str) -> bool:
    return name.startswith(ALERT_CAMPAIGN_PREFIX)


# --- the plan: a ladder expanded for one alert's numbers -----------------------------------


@dataclass(frozen=True)
class Reach:
    """A number the alert may use: who it is (``main``, ``mobile``, a roster name)."""

    who: str
    number: str
    timezone: str
    language: str = "zh"
    contact: int | None = None  # the customer's contact row (its name and fields)


def expand(ladder: Sequence[Step], reach: Sequence[Reach]) -> list[dict[str, Any]]:
    """The ladder as a list of plain steps (stored with the alert, JSON): one per call of a
    number, in order; an SMS goes to the first (main or mobile) number."""
    if not reach:
        raise ConfigError("the alert's target has no number to reach")
    main, others = reach[0], list(reach[1:])
    out: list[dict[str, Any]] = []
    for step in ladder:
        after = step.after.total_seconds()
        if step.sms is not None:
            sms_to = next((r for r in reach if r.who in ("main", "mobile")), main)
            out.append(
                {"act": Act.SMS.value, "template": step.sms, **_who(sms_to), "after_s": after}
            )
            continue
        targets = {"main": [main], "others": others, "all": [main, *others], "roster": list(reach)}
        for i, r in enumerate(targets[step.call or "main"]):
            # ``after`` is the wait before the rung; the numbers of one rung follow at once
            out.append({"act": Act.CALL.value, **_who(r), "after_s": after if i == 0 else 0.0})
    return out


def _who(r: Reach) -> dict[str, Any]:
    return {
        "who": r.who,
        "number": r.number,
        "timezone": r.timezone,
        "language": r.language,
        "contact": r.contact,
    }


# --- may this call go now? -----------------------------------------------------------------


@dataclass(frozen=True)
class NumberNow:
    """What the store knows about a number at this instant (for an alert's call)."""

    dnc: bool = False  # a DNC entry bars service calls by voice to it
    in_flight: bool = False  # a call to it has no outcome yet


def first_broken(
    facts: NumberNow, hours: Hours, local: dt.datetime, priority: int
) -> Reason | None:
    if facts.dnc:
        return Reason.DNC
    if not hours.allows(local, priority):
        return Reason.NIGHT
    if facts.in_flight:
        return Reason.IN_FLIGHT
    return None


__all__ = [
    "ALERT_CAMPAIGN_PREFIX",
    "FINAL_STATES",
    "Act",
    "AlertState",
    "AlertType",
    "AlertsConfig",
    "EventKind",
    "Hours",
    "Member",
    "NumberNow",
    "Reach",
    "Reason",
    "Step",
    "System",
    "TargetKind",
    "Webhook",
    "WEBHOOK_BACKOFF_S",
    "campaign_name",
    "expand",
    "first_broken",
    "is_alert_campaign",
    "load_alerts",
    "parse_alerts",
    "sign_webhook",
    "webhook_backoff",
]
