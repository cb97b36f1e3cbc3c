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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, spec_of
from dialer.lists.compliance import ContactStatus
from dialer.messaging import outbox
from dialer.messaging.compose import house_of, render_sms
from dialer.messaging.keywords import ReplyAction
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
)
from dialer.messaging.templates import MessagePurpose, TemplateLibrary
from dialer.outcomes import LIVE_OUTCOMES
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
    def __init__(self, store: Store, library: TemplateLibrary, bank: BankSettings) -> None:
        self.store = store
        self.library = library
        self.bank = bank

    # --- facts ------------------------------------------------------------------------------

    def _facts(
        self,
        session: Session,
        spec: CampaignSpec,
        steps: tuple[Step, ...],
        campaign_id: int,
        contacts: list[Contact],
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
        return {
            c.id: ContactFacts(
                zone=c.timezone,
                steps_done=frozenset(done.get(c.id, ())),
                replied=c.id in replied,
                calls_active=c.status == ContactStatus.ACTIVE.value,
                calls_started=c.attempts > 0,
                last_outcome=c.last_outcome,
                has_email="@" in str((c.fields or {}).get("email") or ""),
                marketing=marketing,
                message_states=states.get(c.id, {}),
            )
            for c in contacts
        }

    # --- acting -----------------------------------------------------------------------------

    def _send(
        self, session: Session, spec: CampaignSpec, row: Campaign, c: Contact, i: int, step: Step
    ) -> None:
        assert step.template is not None
        tpl = self.library.get(step.template)
        values: dict[str, Any] = {"name": c.name or "", **(c.fields or {})}
        sensitive = {k for k, f in spec.fields.items() if f.sensitive}
        purpose = MessagePurpose.MARKETING if tpl.spec.marketing else MessagePurpose.SERVICE
        if step.channel is StepChannel.SMS:
            p = render_sms(tpl, values, sensitive=sensitive, bank=self.bank, language=c.language)
            outbox.enqueue_sms(
                session,
                to=c.phone,
                text=p.text,
                purpose=purpose,
                campaign_id=row.id,
                contact_id=c.id,
                step_no=i,
                template=step.template,
            )
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
    ) -> Decision:
        d = plan(steps, f, now)
        while d.action is Action.SEND and d.step is not None:
            self._send(session, spec, row, c, d.step, steps[d.step - 1])
            report.queued[d.step] += 1
            f = dataclasses.replace(
                f,
                steps_done=f.steps_done | {d.step},
                message_states={**f.message_states, d.step: "queued"},
            )
            d = plan(steps, f, now)
        call_step = next((i for i, s in enumerate(steps, 1) if s.channel is StepChannel.CALL), None)
        if c.status != ContactStatus.ACTIVE.value or call_step is None:
            return d
        if d.action is Action.CALLING:
            self._maybe_next_number(session, steps[call_step - 1], c)
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

    def _maybe_next_number(self, session: Session, step: Step, c: Contact) -> None:
        """After ``next_number_after`` failed calls on its number, the contact's next number
        (import columns mobile/home/work_phone) is the one the hopper dials."""
        numbers = (c.fields or {}).get("numbers") or []
        if step.next_number_after is None or len(numbers) < 2:
            return
        if c.lease_until is not None and c.lease_until > dt.datetime.now(dt.UTC):
            return  # a dialler holds it this moment: next pass
        rows = session.execute(
            select(Attempt.outcome).where(Attempt.contact_id == c.id, Attempt.phone == c.phone)
        ).all()
        calling = any(o is None for (o,) in rows)
        failed = sum(1 for (o,) in rows if o is not None and o not in _REACHED)
        nxt = next_number(numbers, c.phone, failed, step.next_number_after, calling)
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
                facts = self._facts(s, spec, steps, row.id, chunk)
                for c in chunk:
                    self._walk(s, spec, steps, row, c, facts[c.id], now, report)
        return report

    def explain(self, session: Session, row: Campaign, now: dt.datetime) -> Counter[str]:
        """Contacts by what their plan says at ``now`` ("waiting for step 2 at 10:00": 40)."""
        spec = spec_of(row)
        steps = steps_of(spec)
        out: Counter[str] = Counter()
        if not steps:
            return out
        for chunk in self._contacts(session, row.id):
            facts = self._facts(session, spec, steps, row.id, chunk)
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
