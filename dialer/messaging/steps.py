"""Multi-step campaigns across channels: what each contact's next step is, and why (pure).

A campaign file may declare ``steps`` (in order); e.g.::

    steps:
      - {channel: sms, template: repayment-due-sms, at: "09:00"}
      - {channel: call, at: "10:00", when: no_reply}        # the campaign's own dialling
      - {channel: sms, template: repayment-fallback-sms, when: calls_failed}
      - {channel: email, template: statement-email, when: has_email}

A contact walks them in order. A message step is done once its message is queued; a call
step is the hopper's (the contact is held until the step's hour, then dialled under every
voice rule) and is done when the contact's calls are over. A step whose condition does not
hold is skipped. Each channel has its sending window in the contact's zone: marketing SMS
never go at night (``CHANNEL_WINDOWS``), and a step never sends outside its window.

``plan`` is the one decision function: the sequencer, ``hopper explain`` and the tests call
it; it takes the contact's facts and an instant and touches nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dialer.errors import ConfigError
from dialer.outcomes import LIVE_OUTCOMES
from dialer.settings import format_validation_error


class StepChannel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    CALL = "call"


class When(enum.StrEnum):
    ALWAYS = "always"
    NO_REPLY = "no_reply"  # no keyword reply (confirm, deny, opt out) to an earlier step
    CALLS_FAILED = "calls_failed"  # the calls are over and none reached the customer
    HAS_EMAIL = "has_email"
    NOT_DELIVERED = "not_delivered"  # the previous message step ended failed/expired/unsent


#: Message states that are still waiting for the network's word.
PENDING_STATES = frozenset({"queued", "submitting", "accepted", "sent", "in_doubt"})


@dataclass(frozen=True)
class Window:
    start: dt.time
    end: dt.time  # exclusive

    def holds(self, t: dt.time) -> bool:
        return self.start <= t < self.end


#: Sending windows per (channel, marketing), in the contact's local time.
CHANNEL_WINDOWS: dict[tuple[StepChannel, bool], Window] = {
    (StepChannel.SMS, False): Window(dt.time(8, 0), dt.time(21, 0)),
    (StepChannel.SMS, True): Window(dt.time(9, 0), dt.time(20, 0)),  # never at night
    (StepChannel.EMAIL, False): Window(dt.time(7, 0), dt.time(22, 0)),
    (StepChannel.EMAIL, True): Window(dt.time(9, 0), dt.time(20, 0)),
}


def _hhmm(value: Any) -> dt.time | None:
    if value is None or isinstance(value, dt.time):
        return value
    if isinstance(value, int):  # YAML reads 09:00 unquoted as minutes (sexagesimal)
        return dt.time(value // 60, value % 60)
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"not a time of day (HH:MM): {value!r}") from None


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: StepChannel
    template: str | None = None
    at: dt.time | None = None  # not before this local time (a call step: calls from then)
    when: When = When.ALWAYS
    next_number_after: int | None = Field(None, ge=1, le=20)  # call step: failed calls per number
    # a message step spends the contact's budget and counts in its per-day cap unless it says
    # ``counts: false`` (dialer.lists.touches); a call step always counts
    counts: bool = True

    _at = field_validator("at", mode="before")(_hhmm)

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if self.channel is StepChannel.CALL and self.template:
            raise ValueError("a call step has no template (the campaign's flow or queue runs)")
        if self.channel is not StepChannel.CALL and not self.template:
            raise ValueError(f"a {self.channel.value} step needs a template")
        if self.channel is StepChannel.CALL and not self.counts:
            raise ValueError("every call spends the budget (counts: false is for messages)")
        if self.channel is StepChannel.CALL and self.when is When.NOT_DELIVERED:
            raise ValueError("not_delivered applies to a message step (after an SMS or e-mail)")
        return self


class Steps(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_call_step(self) -> Steps:
        if sum(s.channel is StepChannel.CALL for s in self.steps) > 1:
            raise ValueError("one call step per campaign (its retries are the campaign's)")
        return self


def parse_steps(raw: Sequence[Mapping[str, Any]], source: str | None = None) -> tuple[Step, ...]:
    try:
        return Steps.model_validate({"steps": list(raw)}).steps
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


class Action(enum.StrEnum):
    SEND = "send"  # queue this step's message now
    WAIT = "wait"  # nothing before ``at``
    CALLING = "calling"  # the hopper may dial the contact (voice rules decide when)
    DONE = "done"


@dataclass(frozen=True)
class ContactFacts:
    """What ``plan`` needs about one contact (gathered from the store by the sequencer)."""

    zone: str
    steps_done: frozenset[int]  # message steps already queued (1-based)
    replied: bool  # a keyword reply to any of its messages
    calls_active: bool  # the contact is still in the campaign's dialling
    calls_started: bool  # at least one call attempt
    last_outcome: str | None
    has_email: bool
    marketing: Mapping[int, bool]  # step -> its template is marketing
    message_states: Mapping[int, str] = field(default_factory=dict)  # step -> its message
    budget_left: int | None = None  # the campaign's budget not yet spent (None: no limit)
    today_left: int | None = None  # touches left on the contact's local day (None: no cap)


@dataclass(frozen=True)
class Decision:
    action: Action
    step: int | None  # 1-based
    at: dt.datetime | None = None  # when a WAIT ends (aware)
    why: str = ""


def _condition(when: When, f: ContactFacts) -> bool:
    if when is When.ALWAYS:
        return True
    if when is When.NO_REPLY:
        return not f.replied
    if when is When.HAS_EMAIL:
        return f.has_email
    # calls_failed: the calls are over and the last one did not reach the customer
    return f.calls_started and not f.calls_active and f.last_outcome not in _REACHED


_REACHED = {o.value for o in LIVE_OUTCOMES}


def _next_open(local: dt.datetime, start: dt.time, window: Window | None) -> dt.datetime:
    """The first local instant >= ``local`` that is at or after ``start`` on its day and
    inside ``window``; a ``start`` past the window's end means the next day's opening."""

    def at_time(day: dt.datetime, t: dt.time) -> dt.datetime:
        return day.replace(hour=t.hour, minute=t.minute, second=0, microsecond=0)

    if window is None:
        return local if local.time() >= start else at_time(local, start)
    begin = max(start, window.start)
    if begin >= window.end:  # nothing is left on any day after `start`: next opening
        return at_time(local + dt.timedelta(days=1), window.start)
    if local.time() < begin:
        return at_time(local, begin)
    if window.holds(local.time()):
        return local
    return at_time(local + dt.timedelta(days=1), begin)


def plan(steps: Sequence[Step], f: ContactFacts, now: dt.datetime) -> Decision:
    """The contact's next step at ``now`` (aware), with the reason in words."""
    from dialer.lists.compliance import local_time

    local = local_time(now, f.zone)
    for i, step in enumerate(steps, 1):
        if step.channel is StepChannel.CALL:
            if not f.calls_active or not _condition(step.when, f):
                continue  # over, or stopped by a reply (the sequencer ends its dialling)
            start = _next_open(local, step.at or dt.time(0, 0), None)
            if start > local:
                return Decision(
                    Action.WAIT, i, start, f"waiting for step {i} at {_hm(start, local)}"
                )
            return Decision(Action.CALLING, i, None, f"step {i}: calls (the hopper decides)")
        if i in f.steps_done:
            continue
        if step.when is When.NOT_DELIVERED:
            prev = max((j for j in range(1, i) if steps[j - 1].template), default=None)
            state = f.message_states.get(prev) if prev else None
            if state in PENDING_STATES:
                why = f"step {i} waits for the delivery report of step {prev}"
                return Decision(Action.WAIT, i, None, why)
            if state is None or state == "delivered":
                continue  # nothing was sent, or it arrived: no fallback
        elif not _condition(step.when, f):
            if step.when is When.CALLS_FAILED and f.calls_active:
                # the fallback waits for the calls to end, it is not skipped yet
                return Decision(Action.WAIT, i, None, f"step {i} waits for the calls to end")
            continue
        if step.counts and f.budget_left is not None and f.budget_left <= 0:
            continue  # the contact's budget is spent: a counted message never goes
        window = CHANNEL_WINDOWS[(step.channel, bool(f.marketing.get(i)))]
        start = _next_open(local, step.at or window.start, window)
        if start > local:
            return Decision(Action.WAIT, i, start, f"waiting for step {i} at {_hm(start, local)}")
        if step.counts and f.today_left is not None and f.today_left <= 0:
            tomorrow = _next_open(_next_day(local), step.at or window.start, window)
            why = f"waiting for step {i} at {_hm(tomorrow, local)} (the contact's daily cap)"
            return Decision(Action.WAIT, i, tomorrow, why)
        return Decision(Action.SEND, i, None, f"step {i}: {step.channel.value} now")
    return Decision(Action.DONE, None, None, "all steps done")


def _next_day(local: dt.datetime) -> dt.datetime:
    """Local midnight that starts the next day (wall clock: a DST change moves no date)."""
    day = local.date() + dt.timedelta(days=1)
    return local.replace(
        year=day.year, month=day.month, day=day.day, hour=0, minute=0, second=0, microsecond=0
    )


def spent(step: Step) -> bool:
    """Whether sending ``step`` spends a unit of the contact's budget and daily cap."""
    return step.channel is not StepChannel.CALL and step.counts


def daily_cap_defer(
    sent: Sequence[dt.datetime], now: dt.datetime, zone: str, cap: int, opens: dt.time
) -> dt.datetime | None:
    """With ``cap`` messages a local day per number: None if one more may go at ``now``,
    else the instant it may (the next local day at ``opens``). ``sent`` are hand-over times."""
    from dialer.lists.compliance import local_time

    local = local_time(now, zone)
    today = sum(1 for t in sent if local_time(t, zone).date() == local.date())
    if today < cap:
        return None
    nxt = (local + dt.timedelta(days=1)).replace(
        hour=opens.hour, minute=opens.minute, second=0, microsecond=0
    )
    return nxt.astimezone(dt.UTC)


def next_number(
    numbers: Sequence[tuple[str, bool]],
    current: str,
    failed_on_current: int,
    after: int | None,
    calling_now: bool,
) -> str | None:
    """The number to dial next when ``after`` failed calls on ``current`` are reached (None:
    keep the current one). ``numbers`` is the contact's list in dialling order as (number,
    usable): a number marked invalid or DNC'd is passed over."""
    if after is None or calling_now or failed_on_current < after:
        return None
    order = [n for n, _ in numbers]
    if current not in order:
        return None
    later = numbers[order.index(current) + 1 :]
    return next((n for n, usable in later if usable), None)


def _hm(t: dt.datetime, local: dt.datetime) -> str:
    return t.strftime("%H:%M") if t.date() == local.date() else t.strftime("%Y-%m-%d %H:%M")


__all__ = [
    "CHANNEL_WINDOWS",
    "PENDING_STATES",
    "Action",
    "ContactFacts",
    "Decision",
    "Step",
    "StepChannel",
    "When",
    "Window",
    "daily_cap_defer",
    "next_number",
    "parse_steps",
    "plan",
    "spent",
]
