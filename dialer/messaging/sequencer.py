"""Runs multi-step campaigns: sends each contact's due message steps and holds or releases
the contact for the campaign's dialling (``steps.plan`` decides; this module reads the
facts from the store and applies the decision).

How the voice step is gated without touching the hopper: a contact whose plan is not at its
call step gets ``next_attempt_at`` = the moment its plan moves on (the hopper dials nobody
before that), and a contact whose plan no longer calls (a reply confirmed, or the plan is
done) is ended (``status = done``). Once the plan reaches the call step, every voice rule
(window, DNC, attempt budget, retries) applies as for any campaign.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, spec_of
from dialer.lists.compliance import ContactStatus, attempts_on_local_day, local_time
from dialer.lists.dnc import DncMatcher
from dialer.lists.numbers import (
    Number,
    NumberKind,
    NumberState,
    numbers_of,
    set_state,
    sms_number,
)
from dialer.lists.touches import contact_touches
from dialer.messaging import outbox
from dialer.messaging.compose import house_of, render_sms
from dialer.messaging.keywords import ReplyAction
from dialer.messaging.lifecycle import MsgEvent, MsgState
from dialer.messaging.steps import (
    CHANNEL_WINDOWS,
    Action,
    ContactFacts,
    Decision,
    Step,
    StepChannel,
    next_number,
    parse_steps,
    plan,
    spent,
)
from dialer.messaging.templates import MessagePurpose, TemplateLibrary
from dialer.outcomes import LIVE_OUTCOMES, Outcome
from dialer.settings import BankSettings
from dialer.store import Store
from dialer.store.messages import InboundMessage, Message
from dialer.store.models import Attempt, Campaign, Contact

_REACHED = {o.value for o in LIVE_OUTCOMES}

_CHUNK = 1000


def steps_of(spec: CampaignSpec) -> tuple[Step, ...]:
    return parse_steps(spec.steps, spec.name) if spec.steps else ()


def check_steps(steps: tuple[Step, ...], library: TemplateLibrary, source: str | None) -> None:
    """Each message step names a template of its channel, and its hour lies in the channel's
    sending window (a step at 21:30 for marketing SMS would never go)."""
    where = f"{source}: " if source else ""
    for i, step in enumerate(steps, 1):
        if step.template is None:
            continue
        tpl = library.get(step.template)
        if tpl.spec.channel.value != step.channel.value:
            raise ConfigError(
                f"{where}steps.{i}: template {step.template!r} is for {tpl.spec.channel.value}"
            )
        window = CHANNEL_WINDOWS[(step.channel, tpl.spec.marketing)]
        if step.at is not None and not window.holds(step.at):
            raise ConfigError(
                f"{where}steps.{i}: at {step.at:%H:%M} is outside the {step.channel.value} "
                f"window {window.start:%H:%M}-{window.end:%H:%M}"
                + (" for marketing" if tpl.spec.marketing else "")
            )


@dataclass
class TickReport:
    queued: Counter[int] = field(default_factory=Counter)  # step -> messages queued
    held: int = 0  # contacts held back from dialling until their plan reaches the call step
    ended: int = 0  # contacts whose dialling the plan stopped


class Sequencer:
    def __init__(
        self,
        store: Store,
        library: TemplateLibrary,
        bank: BankSettings,
        *,
        calls_per_day: int = 3,
    ) -> None:
        self.store = store
        self.library = library
        self.bank = bank
        # a campaign without its own daily_cap caps each contact's touches at the settings'
        # max_calls_per_number_per_day, as the hopper does
        self.calls_per_day = calls_per_day

    # --- facts ------------------------------------------------------------------------------

    def _facts(
        self,
        session: Session,
        spec: CampaignSpec,
        steps: tuple[Step, ...],
        campaign_id: int,
        contacts: list[Contact],
        now: dt.datetime,
    ) -> dict[int, ContactFacts]:
        ids = [c.id for c in contacts]
        done: dict[int, set[int]] = {}
        states: dict[int, dict[int, str]] = {}
        for cid, step, state in session.execute(
            select(Message.contact_id, Message.step, Message.state).where(
                Message.campaign_id == campaign_id, Message.contact_id.in_(ids)
            )
        ):
            if cid is not None and step is not None:
                done.setdefault(cid, set()).add(int(step))
                states.setdefault(cid, {})[int(step)] = str(state)
        replied = set(
            session.scalars(
                select(InboundMessage.contact_id).where(
                    InboundMessage.contact_id.in_(ids),
                    InboundMessage.action != ReplyAction.FREE_TEXT.value,
                )
            )
        )
        marketing = {
            i: self.library.get(s.template).spec.marketing
            for i, s in enumerate(steps, 1)
            if s.template
        }
        called = set(
            session.scalars(
                select(Attempt.contact_id).where(Attempt.contact_id.in_(ids)).distinct()
            )
        )
        touches = contact_touches(session, ids, now)
        cap = self._contact_cap(spec)
        return {
            c.id: ContactFacts(
                zone=c.timezone,
                steps_done=frozenset(done.get(c.id, ())),
                replied=c.id in replied,
                calls_active=c.status == ContactStatus.ACTIVE.value,
                calls_started=c.id in called,
                last_outcome=c.last_outcome,
                has_email="@" in str((c.fields or {}).get("email") or ""),
                marketing=marketing,
                message_states=states.get(c.id, {}),
                budget_left=spec.max_attempts - (c.attempts or 0),
                today_left=cap - touches_on_day(touches.get(c.id, ()), c.timezone, now),
            )
            for c in contacts
        }

    def _contact_cap(self, spec: CampaignSpec) -> int:
        return spec.daily_cap if spec.daily_cap is not None else self.calls_per_day

    # --- acting -----------------------------------------------------------------------------

    def _spend(self, session: Session, spec: CampaignSpec, c: Contact, now: dt.datetime) -> bool:
        """Take one unit of the contact's budget for a message, in one conditional statement:
        False when a dialler holds the contact (its lease) or spent the unit meanwhile."""
        seen = c.attempts or 0
        res = session.execute(
            update(Contact)
            .where(
                Contact.id == c.id,
                Contact.attempts == seen,
                Contact.attempts < spec.max_attempts,
                or_(Contact.lease_until.is_(None), Contact.lease_until <= now),
            )
            .values(attempts=seen + 1)
            .execution_options(synchronize_session=False)
        )
        if (res.rowcount or 0) != 1:  # type: ignore[attr-defined]
            return False
        set_committed_value(c, "attempts", seen + 1)
        return True

    def _send(
        self,
        session: Session,
        spec: CampaignSpec,
        row: Campaign,
        c: Contact,
        i: int,
        step: Step,
        to: str | None,
        budget: bool,
        now: dt.datetime,
    ) -> None:
        """Queue step ``i``'s message: an SMS to ``to`` (the contact's first mobile); with no
        mobile at all it is recorded unsent ("no mobile number"), which a not_delivered step
        follows, and takes nothing from the budget."""
        assert step.template is not None
        tpl = self.library.get(step.template)
        values: dict[str, Any] = {"name": c.name or "", **(c.fields or {})}
        sensitive = {k for k, f in spec.fields.items() if f.sensitive}
        purpose = MessagePurpose.MARKETING if tpl.spec.marketing else MessagePurpose.SERVICE
        if step.channel is StepChannel.SMS:
            p = render_sms(tpl, values, sensitive=sensitive, bank=self.bank, language=c.language)
            msg = outbox.enqueue_sms(
                session,
                to=to or c.phone,
                text=p.text,
                purpose=purpose,
                campaign_id=row.id,
                contact_id=c.id,
                step_no=i,
                template=step.template,
                budget=budget,
            )
            if to is None:
                outbox.transition(session, msg, MsgEvent.BLOCKED, now, reason="no mobile number")
        else:
            r = tpl.render(values, sensitive=sensitive, house=house_of(self.bank, c.language))
            outbox.enqueue_email(
                session,
                to=str(c.fields["email"]),
                subject=r.subject or "",
                text=r.text,
                html=r.html,
                purpose=purpose,
                campaign_id=row.id,
                contact_id=c.id,
                step_no=i,
                template=step.template,
                budget=budget,
            )

    def _walk(
        self,
        session: Session,
        spec: CampaignSpec,
        steps: tuple[Step, ...],
        row: Campaign,
        c: Contact,
        f: ContactFacts,
        now: dt.datetime,
        report: TickReport,
        numbers: Sequence[Number],
    ) -> Decision:
        d = plan(steps, f, now)
        while d.action is Action.SEND and d.step is not None:
            step = steps[d.step - 1]
            to = sms_number(numbers) if step.channel is StepChannel.SMS else None
            unreachable = step.channel is StepChannel.SMS and to is None
            counted = spent(step) and not unreachable
            if counted and not self._spend(session, spec, c, now):
                return Decision(Action.WAIT, d.step, None, f"step {d.step} waits for a dialler")
            self._send(session, spec, row, c, d.step, step, to, counted, now)
            report.queued[d.step] += 1
            n = 1 if counted else 0
            f = dataclasses.replace(
                f,
                steps_done=f.steps_done | {d.step},
                message_states={
                    **f.message_states,
                    d.step: MsgState.SUPPRESSED.value if unreachable else MsgState.QUEUED.value,
                },
                budget_left=None if f.budget_left is None else f.budget_left - n,
                today_left=None if f.today_left is None else f.today_left - n,
            )
            d = plan(steps, f, now)
        call_step = next((i for i, s in enumerate(steps, 1) if s.channel is StepChannel.CALL), None)
        if c.status != ContactStatus.ACTIVE.value or call_step is None:
            return d
        if d.action is Action.CALLING:
            if (c.attempts or 0) >= spec.max_attempts and not self._calling(session, c):
                c.status = ContactStatus.DONE.value  # messages spent the budget: no call left
                c.next_attempt_at = None
                report.ended += 1
                return d
            self._maybe_next_number(session, spec, steps[call_step - 1], c, numbers, now)
            return d
        if d.action is Action.WAIT and d.step is not None and d.step <= call_step and d.at:
            hold = d.at.astimezone(dt.UTC)
            if c.next_attempt_at is None or c.next_attempt_at < hold:
                c.next_attempt_at = hold
                report.held += 1
        elif d.action is Action.DONE or (d.step is not None and d.step > call_step):
            c.status = ContactStatus.DONE.value  # the plan calls no more (a reply ended it)
            c.next_attempt_at = None
            report.ended += 1
        return d

    @staticmethod
    def _calling(session: Session, c: Contact) -> bool:
        live = select(Attempt.id).where(Attempt.contact_id == c.id, Attempt.outcome.is_(None))
        return session.scalar(live.limit(1)) is not None

    def _maybe_next_number(
        self,
        session: Session,
        spec: CampaignSpec,
        step: Step,
        c: Contact,
        numbers: Sequence[Number],
        now: dt.datetime,
    ) -> None:
        """After ``next_number_at`` failed calls on its number (at once when the number proved
        invalid), the contact's next usable number is the one the hopper dials; a number on
        the voice DNC list is marked and passed over."""
        if step.next_number_after is None or len(numbers) < 2:
            return
        if c.lease_until is not None and c.lease_until > now:
            return  # a dialler holds it this moment: next pass
        rows = session.execute(
            select(Attempt.outcome)
            .where(Attempt.contact_id == c.id, Attempt.phone == c.phone)
            .order_by(Attempt.id)
        ).all()
        calling = any(o is None for (o,) in rows)
        failed = sum(1 for (o,) in rows if o is not None and o not in _REACHED)
        if rows and rows[-1][0] == Outcome.INVALID_NUMBER.value:
            set_state(session, c.id, c.phone, NumberState.INVALID, now)
            failed = max(failed, step.next_number_after)
        dnc = DncMatcher.for_numbers(session, [n.number for n in numbers if n.usable])
        usable = []
        for n in numbers:
            barred = n.usable and n.number != c.phone and dnc.blocks(n.number, spec.purpose.value)
            if barred:
                set_state(session, c.id, n.number, NumberState.DNC, now)
            usable.append((n.number, n.usable and not barred))
        nxt = next_number(usable, c.phone, failed, step.next_number_after, calling)
        if nxt is None:
            return
        taken = session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(Contact.campaign_id == c.campaign_id, Contact.phone == nxt)
        )
        if not taken:
            c.phone = nxt

    def _contacts(self, session: Session, campaign_id: int) -> Iterable[list[Contact]]:
        last = 0
        while True:
            rows = list(
                session.scalars(
                    select(Contact)
                    .where(Contact.campaign_id == campaign_id, Contact.id > last)
                    .order_by(Contact.id)
                    .limit(_CHUNK)
                )
            )
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def tick(self, campaign: str, now: dt.datetime) -> TickReport:
        """Queue every due message step of ``campaign`` and gate its dialling."""
        report = TickReport()
        with self.store.session() as s:
            row = s.scalars(select(Campaign).where(Campaign.name == campaign)).one()
            spec = spec_of(row)
            steps = steps_of(spec)
            if not steps or spec.state.value != "running":
                return report
            check_steps(steps, self.library, spec.name)
            for chunk in self._contacts(s, row.id):
                facts = self._facts(s, spec, steps, row.id, chunk, now)
                several = numbers_of(s, [c.id for c in chunk])
                for c in chunk:
                    nums = several.get(c.id) or [Number(c.phone, NumberKind.MAIN)]
                    self._walk(s, spec, steps, row, c, facts[c.id], now, report, nums)
        return report

    def explain(self, session: Session, row: Campaign, now: dt.datetime) -> Counter[str]:
        """Contacts by what their plan says at ``now`` ("waiting for step 2 at 10:00": 40)."""
        spec = spec_of(row)
        steps = steps_of(spec)
        out: Counter[str] = Counter()
        if not steps:
            return out
        for chunk in self._contacts(session, row.id):
            facts = self._facts(session, spec, steps, row.id, chunk, now)
            for c in chunk:
                out[plan(steps, facts[c.id], now).why] += 1
        return out

    def on_reply(self, reply: outbox.ReplyOutcome) -> None:
        """A confirming reply ends the contact's dialling in a campaign whose call step waits
        for no reply; the next tick re-plans the rest."""
        if reply.contact_id is None or reply.action is not ReplyAction.CONFIRM:
            return
        with self.store.session() as s:
            c = s.get(Contact, reply.contact_id)
            if c is None or c.status != ContactStatus.ACTIVE.value:
                return
            row = s.get(Campaign, c.campaign_id)
            if row is None:
                return
            steps = steps_of(spec_of(row))
            if any(st.channel is StepChannel.CALL and st.when.value == "no_reply" for st in steps):
                c.status = ContactStatus.DONE.value
                c.next_attempt_at = None


def touches_on_day(times: tuple[dt.datetime, ...], zone: str, now: dt.datetime) -> int:
    """The contact's touches on its local day at ``now`` (the hopper's count, same function)."""
    return attempts_on_local_day(times, zone, local_time(now, zone).date())


def step_report(session: Session, campaign_id: int) -> dict[int, dict[str, int]]:
    """Per step: messages by state, plus replies by action (confirm, deny, opt_out, free_text)."""
    out: dict[int, dict[str, int]] = {}
    for step, state, n in session.execute(
        select(Message.step, Message.state, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.step, Message.state)
    ):
        out.setdefault(int(step or 0), {})[str(state)] = int(n)
    for step, action, n in session.execute(
        select(Message.step, InboundMessage.action, func.count())
        .join(Message, InboundMessage.message_id == Message.id)
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.step, InboundMessage.action)
    ):
        out.setdefault(int(step or 0), {})[f"reply_{action}"] = int(n)
    return out


__all__ = ["Sequencer", "TickReport", "check_steps", "step_report", "steps_of"]
