"""The store side of alerts: take one in (once per key), walk its ladder, read its timeline.

Synchronous SQLAlchemy on a session the caller owns; the desk (``dialer.floor.alerts``) calls
``run_due`` from a thread each pass, the console's API calls ``intake`` and ``timeline``.

Rules kept here (and tested): an alert is committed before the API answers; ``(system, key)``
twice is one alert (a concurrent duplicate loses the insert race and reads the winner); a key
reused for a different alert is refused; a payload holding a card or ID number in clear is
refused (send the last four digits). The alert's calls are attempts of a hidden campaign per
type (``alerts.<type>``: never leased by the hopper, which sees it paused), so the dialer core,
the tracker, the IVR and the reports handle them as any call. Everything an alert does is a
row of its timeline (``alert_event``), masked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dialer.errors import ConfigError, DialerError
from dialer.lists.alertspec import (
    FINAL_STATES,
    Act,
    AlertsConfig,
    AlertState,
    AlertType,
    EventKind,
    NumberNow,
    Reach,
    Reason,
    TargetKind,
    campaign_name,
    expand,
    first_broken,
    webhook_backoff,
)
from dialer.lists.campaigns import CampaignSpec, State, apply_campaign
from dialer.lists.compliance import ContactStatus, is_valid_zone, local_time
from dialer.lists.dnc import DncChannel, DncMatcher
from dialer.lists.numbers import numbers_for
from dialer.outcomes import AttemptState
from dialer.privacy import holds_card_or_id, mask_phone, scrub_json
from dialer.store.alerts import Alert, AlertDelivery, AlertEvent
from dialer.store.messages import Message
from dialer.store.models import Attempt, Campaign, Contact

log = logging.getLogger(__name__)

SERVICE = "service"
#: a number with a call in progress is tried again this long after
IN_FLIGHT_RETRY = dt.timedelta(seconds=15)
_MAX_PAYLOAD_KEYS = 30
_MAX_VALUE_CHARS = 200


class DuplicateKey(DialerError):
    """The idempotency key was used before for a different alert."""


class UnknownTarget(ConfigError):
    """The customer id or roster names no one the dialer can reach."""


class UnusablePayload(ConfigError):
    """The alert's values (payload over the customer's fields) would break its flow's call."""


#: (alert type, the values its call will carry) -> problems; the console checks them against
#: the type's IVR flow (dialer.floor.references.check_values)
CheckValues = Callable[[str, Mapping[str, Any]], list[str]]


@dataclasses.dataclass(frozen=True)
class AlertRequest:
    key: str
    type: str
    target_kind: TargetKind
    target: str
    payload: Mapping[str, Any]
    priority: int
    deadline_at: dt.datetime

    def same_as(self, row: Alert) -> bool:
        mine = (self.type, self.target_kind.value, self.target, dict(self.payload), self.priority)
        return mine == (row.type, row.target_kind, row.target, dict(row.payload), row.priority)


def _text(body: Mapping[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ConfigError(f"{key}: a non-empty string of at most {limit} characters is required")
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(f"{key}: control characters are not allowed")
    return value.strip()


def _payload(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > _MAX_PAYLOAD_KEYS:
        raise ConfigError(f"payload: an object of at most {_MAX_PAYLOAD_KEYS} keys")
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not k.isidentifier() or len(k) > 40:
            raise ConfigError("payload: keys are identifiers (letters, digits, _)")
        if isinstance(v, bool) or not isinstance(v, str | int | float) and v is not None:
            raise ConfigError(f"payload.{k}: a string or a number")
        if isinstance(v, str) and len(v) > _MAX_VALUE_CHARS:
            raise ConfigError(f"payload.{k}: at most {_MAX_VALUE_CHARS} characters")
        if holds_card_or_id(str(v)):
            raise ConfigError(
                f"payload.{k} holds a card or ID number in clear: send only its last four digits"
            )
        out[k] = v
    return out


def _deadline(raw: Any, default: dt.timedelta, now: dt.datetime) -> dt.datetime:
    if raw is None:
        return now + default
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not 0 < raw <= 7 * 86400:
            raise ConfigError("deadline_s: between 1 second and 7 days")
        return now + dt.timedelta(seconds=float(raw))
    try:
        at = dt.datetime.fromisoformat(str(raw))
    except ValueError:
        raise ConfigError("deadline: an ISO 8601 instant with its offset") from None
    if at.tzinfo is None:
        raise ConfigError("deadline: give the offset (e.g. 2026-12-03T10:00:00+08:00)")
    if at <= now:
        raise ConfigError("deadline: already passed")
    return at.astimezone(dt.UTC)


def parse_request(body: Mapping[str, Any], config: AlertsConfig, now: dt.datetime) -> AlertRequest:
    """The API's JSON body as a request; ``ConfigError`` (one line) for anything wrong."""
    key = _text(body, "idempotency_key", 100)
    kind = _text(body, "type", 32)
    spec = config.type_of(kind)
    target = body.get("target")
    if not isinstance(target, dict) or len(target) != 1:
        raise ConfigError('target: {"customer": "<id>"} or {"roster": "<name>"}')
    ((tk, tv),) = target.items()
    if tk not in (TargetKind.CUSTOMER, TargetKind.ROSTER) or not isinstance(tv, str) or not tv:
        raise ConfigError('target: {"customer": "<id>"} or {"roster": "<name>"}')
    if TargetKind(tk) is not spec.target:
        raise ConfigError(f"target: a {kind} alert goes to a {spec.target.value}")
    priority = body.get("priority", spec.priority)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ConfigError("priority: an integer from 0 (low) to 9 (urgent)")
    raw_deadline = body.get("deadline", body.get("deadline_s"))
    return AlertRequest(
        key=key,
        type=kind,
        target_kind=TargetKind(tk),
        target=tv[:100],
        payload=_payload(body.get("payload")),
        priority=priority,
        deadline_at=_deadline(raw_deadline, spec.deadline, now),
    )


# --- who an alert reaches ------------------------------------------------------------------


def customer_contact(session: Session, customer_id: str) -> Contact | None:
    """The bank's customer, by its id: the most recent contact row carrying it."""
    return session.scalars(
        select(Contact)
        .join(Campaign)
        .where(Contact.external_id == customer_id, Campaign.name.not_like("alerts.%"))
        .order_by(Contact.id.desc())
        .limit(1)
    ).first()


def reach_of(
    session: Session,
    config: AlertsConfig,
    kind: TargetKind,
    target: str,
    customer: Contact | None = None,
) -> list[Reach]:
    """Who the alert reaches, in order; ``customer``: the target's row when already read."""
    if kind is TargetKind.ROSTER:
        members = config.rosters.get(target)
        if not members:
            raise UnknownTarget(f"no duty roster named {target!r}")
        return [Reach(m.name, m.phone, m.timezone, m.language) for m in members]
    c = customer or customer_contact(session, target)
    if c is None:
        raise UnknownTarget(f"no contact carries customer id {target!r}")
    reach = [Reach("main", c.phone, c.timezone, c.language, c.id)]
    for n in numbers_for(session, c.id, c.phone):
        if n.number != c.phone and n.usable:
            reach.append(Reach(n.kind.value, n.number, c.timezone, c.language, c.id))
    return reach


def _customer_of(session: Session, alert: Alert, step: Mapping[str, Any]) -> Contact | None:
    """The customer's contact an alert's step reaches (by its row id, kept in the plan)."""
    if alert.target_kind != TargetKind.CUSTOMER:
        return None
    cid = step.get("contact")
    return session.get(Contact, cid) if cid else customer_contact(session, alert.target)


# --- intake ---------------------------------------------------------------------------------


def event(session: Session, alert: Alert, kind: EventKind, now: dt.datetime, **detail: Any) -> None:
    plain = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in detail.items()}
    session.add(AlertEvent(alert_id=alert.id, at=now, kind=kind.value, detail=scrub_json(plain)))


def intake(
    session: Session,
    system: str,
    req: AlertRequest,
    config: AlertsConfig,
    now: dt.datetime,
    check: CheckValues | None = None,
) -> tuple[Alert, bool]:
    """Store the alert (the caller commits before answering); ``(alert, created)``. The same
    key again returns the first alert; the key for a different alert raises ``DuplicateKey``;
    values its flow could not use raise ``UnusablePayload`` (nothing is stored)."""
    seen = _by_key(session, system, req.key)
    if seen is None:
        spec = config.type_of(req.type)
        customer = None
        if req.target_kind is TargetKind.CUSTOMER:
            customer = customer_contact(session, req.target)
        reach = reach_of(session, config, req.target_kind, req.target, customer)
        plan = expand(spec.ladder, reach)
        if check is not None:
            problems = check(req.type, {**_own_fields(customer), **req.payload})
            if problems:
                raise UnusablePayload(f"payload of {req.type}: " + "; ".join(problems))
        # one statement: the same key racing us makes no row, and the winner's is read
        row = session.scalars(
            _insert(session)(Alert)
            .values(
                system=system,
                key=req.key,
                type=req.type,
                state=AlertState.OPEN.value,
                priority=req.priority,
                deadline_at=req.deadline_at,
                target_kind=req.target_kind.value,
                target=req.target,
                payload=dict(req.payload),
                plan=plan,
                stage=0,
                next_at=now,
                created_at=now,
                webhook="waiting" if spec.webhook else "none",
                calls=0,
            )
            .on_conflict_do_nothing(index_elements=["system", "key"])
            .returning(Alert)
        ).first()
        if row is not None:
            event(session, row, EventKind.RECEIVED, now, steps=len(plan), priority=req.priority)
            return row, True
        seen = _by_key(session, system, req.key)
        assert seen is not None
    if not req.same_as(seen):
        raise DuplicateKey(f"idempotency key {req.key!r} was used for a different alert")
    return seen, False


def _own_fields(contact: Contact | None) -> dict[str, Any]:
    """A customer's own fields for an alert's call or SMS (the old ``numbers`` list left out)."""
    return {
        k: v for k, v in ((contact.fields if contact else None) or {}).items() if k != "numbers"
    }


def _insert(session: Session) -> Callable[..., Any]:
    """The store's own INSERT (both kinds have ``ON CONFLICT DO NOTHING``)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def _by_key(session: Session, system: str, key: str) -> Alert | None:
    return session.scalars(select(Alert).where(Alert.system == system, Alert.key == key)).first()


# --- the hidden campaign of each type ------------------------------------------------------


def ensure_campaign(session: Session, kind: str, spec: AlertType) -> Campaign:
    """The campaign that carries the type's calls, created or updated from the alerts file.
    Paused for the hopper; the desk alone dials it, under the type's own hours."""
    doc: dict[str, Any] = {
        "name": campaign_name(kind),
        "state": State.PAUSED.value,
        "purpose": SERVICE,
        "mode": "broadcast",
        "channel": spec.channel,
        "caller_id": spec.caller_id,
        "flow": spec.flow,
        "queue": spec.queue,
        "language": spec.language,
        "calling_window": {"start": "00:00", "end": "24:00", "skip_holidays": False},
        "max_attempts": 50,
        "pacing": {"ring_timeout_s": spec.ring_timeout_s},
    }
    row = session.scalars(select(Campaign).where(Campaign.name == doc["name"])).first()
    want = CampaignSpec.model_validate(doc)
    if row is None or row.spec != want.to_document():
        row, _ = apply_campaign(session, want, source="alerts", actor="alerts")
    return row


# --- one pass of the desk ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SmsOrder:
    """An SMS rung, for the messaging layer to render and queue in the same transaction."""

    alert_id: int
    template: str
    number: str
    name: str
    language: str
    values: Mapping[str, Any]  # the contact's fields and the alert's payload
    campaign_id: int
    contact_id: int | None


SendSms = Callable[[Session, SmsOrder], int]  # -> the queued message's id


@dataclasses.dataclass
class Pass:
    """What one pass did: calls to originate now (attempt ids), and counts."""

    attempts: list[int] = dataclasses.field(default_factory=list)
    attempt_alert: dict[int, int] = dataclasses.field(default_factory=dict)
    waiting_for_channel: int = 0  # due alerts left for want of a channel
    closed: int = 0
    counts: dict[str, AlertCounts] | None = None  # per type, when the pass was asked for them


@dataclasses.dataclass(frozen=True)
class AlertCounts:
    """Alerts of one type: open now, and overdue as the console counts them (open past the
    deadline, or expired unacknowledged within the last day)."""

    open: int = 0
    overdue: int = 0


def alert_counts(session: Session, now: dt.datetime) -> dict[str, AlertCounts]:
    """Open and overdue alerts per type (two grouped counts on the state index)."""
    open_rows = session.execute(
        select(
            Alert.type,
            func.count(),
            func.coalesce(func.sum(case((Alert.deadline_at < now, 1), else_=0)), 0),
        )
        .where(Alert.state == AlertState.OPEN.value)
        .group_by(Alert.type)
    ).all()
    expired = dict(
        session.execute(
            select(Alert.type, func.count())
            .where(
                Alert.state == AlertState.EXPIRED.value,
                Alert.closed_at >= now - dt.timedelta(days=1),
            )
            .group_by(Alert.type)
        ).all()
    )
    out = {t: AlertCounts(int(n), int(late) + int(expired.pop(t, 0))) for t, n, late in open_rows}
    out.update({t: AlertCounts(0, int(n)) for t, n in expired.items()})
    return out


def run_due(
    session: Session,
    config: AlertsConfig,
    now: dt.datetime,
    room: int,
    send_sms: SendSms,
    campaigns: dict[str, int] | None = None,
    *,
    count: bool = False,
) -> Pass:
    """Settle what ended (calls, replies, deadlines), then start the due rungs of open alerts,
    most urgent first, at most ``room`` calls. Returns the attempts to originate now (and, with
    ``count``, the open and overdue alerts per type after the pass)."""
    out = Pass()
    out.closed += settle_calls(session, config, now)
    out.closed += settle_replies(session, config, now)
    out.closed += expire(session, now)
    due = session.scalars(
        select(Alert)
        .where(
            Alert.state == AlertState.OPEN.value,
            Alert.next_at <= now,
            Alert.waiting_attempt_id.is_(None),
        )
        .order_by(Alert.priority.desc(), Alert.next_at, Alert.id)
        .limit(max(room, 0) + 50)
    ).all()
    cache = campaigns if campaigns is not None else {}
    numbers = _Numbers.read(session, due)
    dials: list[_Dial] = []
    for alert in due:
        if len(dials) >= room:
            out.waiting_for_channel += 1
            continue
        dial = _start(session, config, alert, now, send_sms, cache, numbers)
        if dial is not None:
            dials.append(dial)
    for alert_id, attempt_id in _call(session, dials, now):
        out.attempts.append(attempt_id)
        out.attempt_alert[attempt_id] = alert_id
    if count:
        out.counts = alert_counts(session, now)
    return out


@dataclasses.dataclass(frozen=True)
class _Dial:
    """A rung a pass decided to call."""

    alert: Alert
    step: Mapping[str, Any]
    campaign_id: int


class _Numbers:
    """What a pass knows of the numbers its due alerts may call, read in two queries for the
    whole pass (per alert, a store on the network paid a dozen round trips); a number this
    pass starts a call to counts as in flight for the alerts after it."""

    def __init__(self, dnc: DncMatcher, live: set[str]) -> None:
        self.dnc = dnc
        self.live = live

    @classmethod
    def read(cls, session: Session, due: Sequence[Alert]) -> _Numbers:
        wanted = {
            step["number"]
            for alert in due
            for step in alert.plan[alert.stage :]
            if step["act"] != Act.SMS
        }
        if not wanted:
            return cls(DncMatcher(), set())
        live = session.scalars(
            select(Attempt.phone)
            .where(Attempt.phone.in_(sorted(wanted)), Attempt.outcome.is_(None))
            .distinct()
        )
        return cls(DncMatcher.for_numbers(session, wanted, DncChannel.VOICE), set(live))

    def now(self, number: str) -> NumberNow:
        return NumberNow(dnc=self.dnc.blocks(number, SERVICE), in_flight=number in self.live)


def _start(
    session: Session,
    config: AlertsConfig,
    alert: Alert,
    now: dt.datetime,
    send_sms: SendSms,
    campaigns: dict[str, int],
    numbers: _Numbers,
) -> _Dial | None:
    """Run the alert's next rung (skipping those that may never run); a call to make."""
    spec = config.type_of(alert.type)
    while alert.stage < len(alert.plan):
        step = alert.plan[alert.stage]
        if step["act"] == Act.SMS:
            _send(
                session, alert, step, now, send_sms, _campaign_id(session, alert, spec, campaigns)
            )
            _advance(session, alert, now)
            return None
        local = local_time(now, step["timezone"] if is_valid_zone(step["timezone"]) else "UTC")
        reason = first_broken(numbers.now(step["number"]), spec.hours, local, alert.priority)
        if reason is Reason.DNC:
            event(session, alert, EventKind.SKIPPED, now, reason="dnc", who=step["who"])
            alert.stage += 1
            continue
        if reason is not None:
            later = (
                now + IN_FLIGHT_RETRY
                if reason is Reason.IN_FLIGHT
                else spec.hours.next_open(local, alert.priority).astimezone(dt.UTC)
            )
            if alert.next_at is None or alert.next_at < later:
                event(session, alert, EventKind.HELD, now, reason=reason.value, until=later)
            alert.next_at = later
            return None
        numbers.live.add(step["number"])
        return _Dial(alert, step, _campaign_id(session, alert, spec, campaigns))
    _close(session, alert, AlertState.EXHAUSTED, now)
    return None


def _campaign_id(session: Session, alert: Alert, spec: AlertType, campaigns: dict[str, int]) -> int:
    cid = campaigns.get(alert.type)
    if cid is None:
        cid = campaigns[alert.type] = ensure_campaign(session, alert.type, spec).id
    return cid


def _claim(session: Session, dials: list[_Dial]) -> list[_Dial]:
    """One claim per rung, also across workers: an alert's row changes only if no one took
    this rung; the dials whose claim held (one statement for the pass)."""
    if not dials:
        return []
    held = set(
        session.scalars(
            update(Alert)
            .where(
                tuple_(Alert.id, Alert.stage).in_([(d.alert.id, d.alert.stage) for d in dials]),
                Alert.waiting_attempt_id.is_(None),
            )
            .values(calls=Alert.calls + 1)
            .returning(Alert.id)
            .execution_options(synchronize_session=False)
        )
    )
    return [d for d in dials if d.alert.id in held]


def _contacts(session: Session, dials: list[_Dial]) -> dict[tuple[int, str], Contact]:
    """The alert campaigns' rows for the numbers called (vessels for the calls: name,
    language, zone and the customer's own fields), created where missing; the customers'
    own rows read in the same go."""
    keys = {(d.campaign_id, d.step["number"]) for d in dials}
    rows: dict[tuple[int, str], Contact] = {}
    for row in session.scalars(
        select(Contact)
        .where(
            Contact.campaign_id.in_(sorted({c for c, _ in keys})),
            Contact.phone.in_(sorted({p for _, p in keys})),
        )
        .order_by(Contact.id.desc())
    ):
        rows[(row.campaign_id, row.phone)] = row  # the oldest row of a number wins
    ids = sorted({d.step["contact"] for d in dials if d.step.get("contact")})
    own = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(ids)))}
    for d in dials:
        alert, step = d.alert, d.step
        fields: dict[str, Any] = {}
        name = step["who"] if alert.target_kind == TargetKind.ROSTER else None
        if alert.target_kind == TargetKind.CUSTOMER:
            customer = own.get(step.get("contact") or 0) or _customer_of(session, alert, step)
            if customer is not None:
                fields = _own_fields(customer)
                name = customer.name
        row = rows.get((d.campaign_id, step["number"])) or Contact(
            campaign_id=d.campaign_id, phone=step["number"], attempts=0
        )
        row.name, row.fields, row.external_id = name, fields, alert.target[:100]
        row.language, row.timezone = step["language"], step["timezone"]
        row.status = ContactStatus.ACTIVE.value
        if row.id is None and (d.campaign_id, step["number"]) not in rows:
            rows[(d.campaign_id, step["number"])] = row
            session.add(row)
    return rows


def _call(session: Session, dials: list[_Dial], now: dt.datetime) -> list[tuple[int, int]]:
    """Write the pass's calls: claims, contacts, attempts, the alerts' timelines, in a few
    statements for the whole pass; ``(alert id, attempt id)`` of each call to originate."""
    dials = _claim(session, dials)
    if not dials:
        return []
    contacts = _contacts(session, dials)
    session.flush()  # new contacts get their ids (one batched insert)
    attempts = []
    for d in dials:
        contact = contacts[(d.campaign_id, d.step["number"])]
        contact.attempts = (contact.attempts or 0) + 1
        contact.last_attempt_at = now
        attempt = Attempt(
            campaign_id=d.campaign_id,
            contact_id=contact.id,
            phone=d.step["number"],
            seq=contact.attempts,
            state=AttemptState.CREATED.value,
            created_at=now,
            detail={"alert_id": d.alert.id, "fields": dict(d.alert.payload or {})},
        )
        session.add(attempt)
        attempts.append(attempt)
    session.flush()  # the attempts' ids (one batched insert)
    out = []
    for d, attempt in zip(dials, attempts, strict=True):
        alert, step = d.alert, d.step
        alert.waiting_attempt_id = attempt.id
        alert.next_at = None
        if alert.first_dial_at is None:
            alert.first_dial_at = now
        event(
            session,
            alert,
            EventKind.CALL,
            now,
            attempt=attempt.id,
            who=step["who"],
            number=mask_phone(step["number"]),
            stage=alert.stage,
        )
        out.append((alert.id, attempt.id))
    return out


def _send(
    session: Session,
    alert: Alert,
    step: Mapping[str, Any],
    now: dt.datetime,
    send_sms: SendSms,
    campaign_id: int,
) -> None:
    contact = _customer_of(session, alert, step)
    fields = _own_fields(contact)
    order = SmsOrder(
        alert_id=alert.id,
        template=step["template"],
        number=step["number"],
        name=(contact.name if contact else step["who"]) or "",
        language=step["language"],
        values={**fields, **(alert.payload or {})},
        campaign_id=campaign_id,
        contact_id=None,
    )
    try:
        message_id = send_sms(session, order)
    except DialerError as exc:  # a template that cannot render: the rung is skipped, said why
        event(
            session, alert, EventKind.SKIPPED, now, reason=str(exc)[:200], template=order.template
        )
        return
    event(
        session,
        alert,
        EventKind.SMS,
        now,
        message=message_id,
        template=order.template,
        number=mask_phone(order.number),
    )


def _advance(session: Session, alert: Alert, now: dt.datetime) -> None:
    """The rung ended unacknowledged: the next one is due after its ``after``. After the last
    rung an alert closes ``exhausted`` on the next pass, unless that rung was an SMS: its
    reply may still acknowledge until the deadline."""
    alert.stage += 1
    alert.waiting_attempt_id = None
    if alert.stage < len(alert.plan):
        after = float(alert.plan[alert.stage]["after_s"])
        alert.next_at = now + dt.timedelta(seconds=after)
    elif alert.plan and alert.plan[-1]["act"] == Act.SMS:
        alert.next_at = alert.deadline_at
    else:
        alert.next_at = now


def _close(
    session: Session, alert: Alert, state: AlertState, now: dt.datetime, **detail: Any
) -> None:
    alert.state = state.value
    alert.closed_at = now
    alert.next_at = None
    alert.waiting_attempt_id = None
    if alert.webhook != "none":  # the result goes to the bank's system now
        alert.webhook, alert.webhook_next_at = "pending", now
    kind = {
        AlertState.ACKNOWLEDGED: EventKind.ACKNOWLEDGED,
        AlertState.EXPIRED: EventKind.EXPIRED,
        AlertState.EXHAUSTED: EventKind.EXHAUSTED,
    }[state]
    event(session, alert, kind, now, **detail)
    if state is not AlertState.ACKNOWLEDGED:
        log.warning("alert %s (%s) %s unacknowledged", alert.id, alert.type, state.value)


def _acknowledge(
    session: Session, alert: Alert, result: str, by: str, via: str, now: dt.datetime
) -> None:
    alert.result = result
    alert.acknowledged_by = by[:100]
    _close(session, alert, AlertState.ACKNOWLEDGED, now, result=result, by=by, via=via)


def settle_calls(session: Session, config: AlertsConfig, now: dt.datetime) -> int:
    """Alerts whose call ended: acknowledged by the flow's result, or on to the next rung."""
    rows = session.execute(
        select(Alert, Attempt)
        .join(Attempt, Attempt.id == Alert.waiting_attempt_id)
        .where(Alert.state == AlertState.OPEN.value, Attempt.outcome.is_not(None))
    ).all()
    closed = 0
    for alert, attempt in rows:
        spec = config.type_of(alert.type)
        step = alert.plan[alert.stage] if alert.stage < len(alert.plan) else {}
        event(
            session,
            alert,
            EventKind.CALL_ENDED,
            now,
            attempt=attempt.id,
            outcome=attempt.outcome,
            result=attempt.result,
            queue=attempt.queue,
        )
        if attempt.result and attempt.result in spec.acknowledge:
            who = step.get("who", "")
            by = who if alert.target_kind == TargetKind.ROSTER else mask_phone(attempt.phone)
            _acknowledge(session, alert, attempt.result, by, "call", now)
            closed += 1
        else:
            _advance(session, alert, now)
    return closed


def settle_replies(session: Session, config: AlertsConfig, now: dt.datetime) -> int:
    """Open alerts whose SMS got a reply keyword that acknowledges them."""
    sent = session.execute(
        select(Alert, AlertEvent.detail)
        .join(AlertEvent, AlertEvent.alert_id == Alert.id)
        .where(Alert.state == AlertState.OPEN.value, AlertEvent.kind == EventKind.SMS.value)
    ).all()
    closed = 0
    for alert, detail in sent:
        if alert.state != AlertState.OPEN:
            continue
        msg = session.get(Message, detail.get("message"))
        if msg is None or not msg.result:
            continue
        if msg.result in config.type_of(alert.type).acknowledge:
            event(session, alert, EventKind.REPLY, now, message=msg.id, result=msg.result)
            _acknowledge(session, alert, msg.result, mask_phone(msg.address), "sms", now)
            closed += 1
    return closed


def expire(session: Session, now: dt.datetime) -> int:
    """Open alerts past their deadline and not on a call (a call in progress may still
    acknowledge; it is settled when it ends), and alerts whose ladder ran out."""
    rows = session.scalars(
        select(Alert).where(
            Alert.state == AlertState.OPEN.value,
            Alert.waiting_attempt_id.is_(None),
            (Alert.deadline_at <= now) | (Alert.next_at <= now),
        )
    ).all()
    n = 0
    for alert in rows:
        if alert.deadline_at <= now:
            _close(session, alert, AlertState.EXPIRED, now, deadline=alert.deadline_at)
            n += 1
        elif alert.stage >= len(alert.plan):
            _close(session, alert, AlertState.EXHAUSTED, now)
            n += 1
    return n


# --- results back to the bank ---------------------------------------------------------------

#: a delivery in progress holds the alert this long (another worker does not send it too)
WEBHOOK_LEASE = dt.timedelta(seconds=30)


def claim_webhooks(session: Session, now: dt.datetime, limit: int = 20) -> list[int]:
    """Closed alerts whose result is due to the bank's webhook, each claimed for one sender."""
    ids = session.scalars(
        select(Alert.id)
        .where(Alert.webhook == "pending", Alert.webhook_next_at <= now)
        .order_by(Alert.webhook_next_at)
        .limit(limit)
    ).all()
    claimed = []
    for alert_id in ids:
        got = session.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.webhook == "pending", Alert.webhook_next_at <= now)
            .values(webhook_next_at=now + WEBHOOK_LEASE)
            .execution_options(synchronize_session=False)
        )
        if got.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(alert_id)
    return claimed


def webhook_body(session: Session, alert_id: int) -> dict[str, Any]:
    """What the bank's system receives: the alert's outcome (masked), no timeline."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise DialerError(f"no alert {alert_id}")
    keys = ("id", "key", "system", "type", "state", "result", "acknowledged_by", "calls")
    full = alert_json(alert, alert.closed_at or alert.created_at)
    return {**{k: full[k] for k in keys}, "closed_at": full["closed_at"]}


def record_delivery(
    session: Session,
    alert_id: int,
    url: str,
    now: dt.datetime,
    *,
    status: int | None,
    error: str | None,
) -> bool:
    """One try, recorded; a 2xx answer delivers it, anything else waits for the next try."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return False
    ok = status is not None and 200 <= status < 300
    session.add(
        AlertDelivery(
            alert_id=alert_id,
            at=now,
            url=url[:300],
            status=status,
            error=(error or None) and str(error)[:200],
            delivered=ok,
        )
    )
    alert.webhook_tries = (alert.webhook_tries or 0) + 1
    if ok:
        alert.webhook, alert.webhook_next_at = "delivered", None
        event(session, alert, EventKind.WEBHOOK, now, status=status, tries=alert.webhook_tries)
    else:
        alert.webhook_next_at = now + dt.timedelta(seconds=webhook_backoff(alert.webhook_tries))
    return ok


# --- reading --------------------------------------------------------------------------------


def alert_json(alert: Alert, now: dt.datetime) -> dict[str, Any]:
    step = alert.plan[alert.stage] if alert.stage < len(alert.plan) else None
    return {
        "id": alert.id,
        "key": alert.key,
        "system": alert.system,
        "type": alert.type,
        "state": alert.state,
        "priority": alert.priority,
        "target": {alert.target_kind: alert.target},
        "payload": scrub_json(alert.payload or {}),
        "stage": alert.stage,
        "steps": len(alert.plan),
        "next": None if step is None else {"act": step["act"], "who": step["who"]},
        "calls": alert.calls,
        "result": alert.result,
        "acknowledged_by": alert.acknowledged_by,
        "created_at": alert.created_at.isoformat(),
        "deadline_at": alert.deadline_at.isoformat(),
        "first_dial_at": alert.first_dial_at.isoformat() if alert.first_dial_at else None,
        "closed_at": alert.closed_at.isoformat() if alert.closed_at else None,
        "age_s": round((now - alert.created_at).total_seconds(), 1),
        "overdue": alert.state == AlertState.EXPIRED
        or (alert.state == AlertState.OPEN and now > alert.deadline_at),
        "webhook": alert.webhook,
    }


def timeline(session: Session, alert_id: int, now: dt.datetime) -> dict[str, Any] | None:
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    events = session.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).all()
    return {
        **alert_json(alert, now),
        "timeline": [{"at": e.at.isoformat(), "kind": e.kind, **e.detail} for e in events],
    }


def open_alerts(session: Session, now: dt.datetime, limit: int = 200) -> list[dict[str, Any]]:
    """Open alerts (oldest first) and the ones closed unacknowledged in the last day: the
    console's list, with each one's stage, age and whether it is past its deadline."""
    rows = session.scalars(
        select(Alert)
        .where(
            (Alert.state == AlertState.OPEN.value)
            | (
                Alert.state.in_([AlertState.EXPIRED.value, AlertState.EXHAUSTED.value])
                & (Alert.closed_at >= now - dt.timedelta(days=1))
            )
        )
        .order_by(Alert.created_at)
        .limit(limit)
    ).all()
    return [alert_json(a, now) for a in rows]


def alert_of_attempt(session: Session, attempt_id: int) -> dict[str, Any] | None:
    """The screen-pop hook: what an agent who takes an alert's call should see (the alert,
    masked, with its payload), or None when the call is not an alert's."""
    attempt = session.get(Attempt, attempt_id)
    alert_id = (attempt.detail or {}).get("alert_id") if attempt is not None else None
    alert = session.get(Alert, alert_id) if alert_id else None
    if alert is None:
        return None
    return alert_json(alert, dt.datetime.now(dt.UTC))


__all__ = [
    "FINAL_STATES",
    "AlertCounts",
    "AlertRequest",
    "CheckValues",
    "DuplicateKey",
    "Pass",
    "SmsOrder",
    "UnknownTarget",
    "UnusablePayload",
    "alert_counts",
    "alert_json",
    "alert_of_attempt",
    "claim_webhooks",
    "ensure_campaign",
    "expire",
    "intake",
    "open_alerts",
    "parse_request",
    "record_delivery",
    "run_due",
    "settle_calls",
    "settle_replies",
    "timeline",
    "webhook_body",
]
