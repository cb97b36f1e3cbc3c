"""The store side of messaging: queue, claim, record what the gateway and the network said,
and act on replies. Synchronous SQLAlchemy on a session the caller owns.

Rules kept here (and tested): a message is claimed once (``queued`` -> ``submitting`` in one
statement); a marketing message to a number on the DNC list is suppressed at claim time, so
an opt-out that arrives while a batch waits still stops the next message; every report and
reply is applied through ``lifecycle.step`` and recorded as a ``message_event``.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dialer.lists.dnc import DncChannel, DncMatcher, DncScope, add_entry
from dialer.messaging.keywords import RESULT_OF, Classifier, ReplyAction
from dialer.messaging.lifecycle import FINAL, MsgEvent, MsgState, step
from dialer.messaging.sms import segment
from dialer.messaging.templates import Channel, MessagePurpose
from dialer.store.messages import AddressFlag, InboundMessage, Message, MessageEvent

_TIMESTAMP_OF: dict[MsgState, str] = {
    MsgState.ACCEPTED: "submitted_at",
    MsgState.IN_DOUBT: "submitted_at",
    MsgState.SENT: "sent_at",
}


def new_uid() -> str:
    return uuid.uuid4().hex


def enqueue_sms(
    session: Session,
    *,
    to: str,
    text: str,
    purpose: MessagePurpose = MessagePurpose.SERVICE,
    campaign_id: int | None = None,
    contact_id: int | None = None,
    step_no: int | None = None,
    template: str | None = None,
    not_before: dt.datetime | None = None,
    budget: bool = False,
) -> Message:
    """Queue one SMS whose ``text`` is final (signature and suffix already composed)."""
    seg = segment(text)
    row = Message(
        uid=new_uid(),
        channel=Channel.SMS.value,
        purpose=purpose.value,
        state=MsgState.QUEUED.value,
        address=to,
        campaign_id=campaign_id,
        contact_id=contact_id,
        step=step_no,
        budget=budget,
        template=template,
        body=text,
        encoding=seg.encoding.value,
        parts=max(1, seg.part_count),
        next_try_at=not_before,
    )
    session.add(row)
    session.flush()
    return row


def enqueue_email(
    session: Session,
    *,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    purpose: MessagePurpose = MessagePurpose.SERVICE,
    campaign_id: int | None = None,
    contact_id: int | None = None,
    step_no: int | None = None,
    template: str | None = None,
    not_before: dt.datetime | None = None,
    budget: bool = False,
) -> Message:
    row = Message(
        uid=new_uid(),
        channel=Channel.EMAIL.value,
        purpose=purpose.value,
        state=MsgState.QUEUED.value,
        address=to,
        campaign_id=campaign_id,
        contact_id=contact_id,
        step=step_no,
        budget=budget,
        template=template,
        subject=subject,
        body=text,
        html=html,
        parts=1,
        next_try_at=not_before,
    )
    session.add(row)
    session.flush()
    return row


def message_by_uid(session: Session, uid: str) -> Message | None:
    return session.scalars(select(Message).where(Message.uid == uid)).one_or_none()


def transition(
    session: Session, msg: Message, event: MsgEvent, now: dt.datetime, **detail: Any
) -> MsgState:
    """Apply one event to a message (raises IllegalTransition when it has no row)."""
    before = MsgState(msg.state)
    after = step(before, event)
    msg.state = after.value
    stamp = _TIMESTAMP_OF.get(after)
    if stamp and getattr(msg, stamp) is None:
        setattr(msg, stamp, now)
    if after in FINAL and before not in FINAL:
        msg.ended_at = now
        if after is MsgState.DELIVERED and msg.sent_at is None:
            msg.sent_at = now
    if "reason" in detail and detail["reason"]:
        msg.reason = str(detail["reason"])[:200]
    session.add(
        MessageEvent(message_id=msg.id, at=now, kind=event.value, state=after.value, detail=detail)
    )
    return after


@dataclass(frozen=True)
class Claimed:
    id: int
    uid: str
    address: str
    body: str
    encoding: str | None
    parts: int
    subject: str | None
    channel: str
    html: str | None = None
    purpose: str = "service"


class Flag(enum.StrEnum):
    INVALID = "invalid"  # bounced for good: never sent to again
    OPTED_OUT = "opted_out"  # asked for no marketing on this channel


def flag_address(
    session: Session,
    channel: Channel,
    address: str,
    flag: Flag,
    *,
    reason: str | None,
    source: str,
    message_id: int | None = None,
) -> bool:
    """Flag an address (idempotent); True when the flag is new."""
    seen = session.scalars(
        select(AddressFlag).where(
            AddressFlag.channel == channel.value,
            AddressFlag.address == address.lower(),
            AddressFlag.flag == flag.value,
        )
    ).one_or_none()
    if seen is not None:
        return False
    session.add(
        AddressFlag(
            channel=channel.value,
            address=address.lower(),
            flag=flag.value,
            reason=(reason or "")[:200] or None,
            source=source,
            message_id=message_id,
        )
    )
    session.flush()
    return True


def _blocked(session: Session, rows: Sequence[Message]) -> Callable[[Message], str | None]:
    """Why a row may not be sent now (None: it may): DNC for SMS, address flags for e-mail."""
    phones = [r.address for r in rows if r.channel == Channel.SMS.value]
    matcher = DncMatcher.for_numbers(session, phones, DncChannel.SMS) if phones else DncMatcher()
    mails = sorted({r.address.lower() for r in rows if r.channel == Channel.EMAIL.value})
    flags: dict[str, set[str]] = {}
    if mails:
        q = select(AddressFlag.address, AddressFlag.flag).where(
            AddressFlag.channel == Channel.EMAIL.value, AddressFlag.address.in_(mails)
        )
        for address, flag in session.execute(q):
            flags.setdefault(address, set()).add(flag)

    def why(row: Message) -> str | None:
        if row.channel == Channel.SMS.value:
            return "dnc" if matcher.blocks(row.address, row.purpose) else None
        got = flags.get(row.address.lower(), set())
        if Flag.INVALID.value in got:
            return "invalid_address"
        if Flag.OPTED_OUT.value in got and row.purpose == MessagePurpose.MARKETING.value:
            return "opted_out"
        return None

    return why


def due_messages(session: Session, channel: Channel, now: dt.datetime, limit: int) -> list[int]:
    """Ids of up to ``limit`` due messages, oldest first; DNC-blocked ones are suppressed."""
    q = (
        select(Message)
        .where(
            Message.channel == channel.value,
            Message.state == MsgState.QUEUED.value,
            (Message.next_try_at.is_(None)) | (Message.next_try_at <= now),
        )
        .order_by(Message.id)
        .limit(limit)
    )
    rows = list(session.scalars(q))
    why = _blocked(session, rows)
    out: list[int] = []
    for row in rows:
        reason = why(row)
        if reason is not None:
            transition(session, row, MsgEvent.BLOCKED, now, reason=reason)
        else:
            out.append(row.id)
    return out


def _over_daily_cap(session: Session, row: Message, now: dt.datetime, cap: int) -> bool:
    """SMS per number per local day: over the cap, the message waits for the next day."""
    from dialer.lists.contacts import parse_phone
    from dialer.messaging.steps import CHANNEL_WINDOWS, StepChannel, daily_cap_defer

    since = now - dt.timedelta(hours=27)  # any instant of the number's local day
    # handed over, or claimed and being handed over right now (several are in flight at once)
    sent = [
        t or now
        for t in session.scalars(
            select(Message.submitted_at).where(
                Message.address == row.address,
                Message.channel == row.channel,
                or_(Message.submitted_at >= since, Message.state == MsgState.SUBMITTING.value),
            )
        )
    ]
    parsed = parse_phone(row.address, "CN")
    zone = (parsed.timezone if parsed else None) or "Asia/Shanghai"
    opens = CHANNEL_WINDOWS[(StepChannel.SMS, row.purpose == MessagePurpose.MARKETING.value)].start
    later = daily_cap_defer(sent, now, zone, cap, opens)
    if later is None:
        return False
    row.next_try_at = later
    session.add(
        MessageEvent(
            message_id=row.id,
            at=now,
            kind="daily_cap",
            state=row.state,
            detail={"until": later.isoformat()},
        )
    )
    return True


def claim_one(
    session: Session, message_id: int, now: dt.datetime, *, daily_cap: int | None = None
) -> Claimed | None:
    """``queued`` -> ``submitting`` for one message, in one conditional statement (None if it
    was taken meanwhile, is now blocked - an opt-out that came in a moment ago counts - or
    its number had its ``daily_cap`` of SMS today: then it waits for the next day)."""
    row = session.get(Message, message_id)
    if row is None or row.state != MsgState.QUEUED.value:
        return None
    reason = _blocked(session, [row])(row)
    if reason is not None:
        transition(session, row, MsgEvent.BLOCKED, now, reason=reason)
        return None
    if daily_cap is not None and row.channel == Channel.SMS.value:
        if _over_daily_cap(session, row, now, daily_cap):
            return None
    res = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.state == MsgState.QUEUED.value)
        .values(state=MsgState.SUBMITTING.value)
        .execution_options(synchronize_session=False)
    )
    if (res.rowcount or 0) != 1:  # type: ignore[attr-defined]
        return None
    session.add(
        MessageEvent(
            message_id=row.id,
            at=now,
            kind=MsgEvent.CLAIM.value,
            state=MsgState.SUBMITTING.value,
            detail={},
        )
    )
    return Claimed(
        row.id,
        row.uid,
        row.address,
        row.body,
        row.encoding,
        row.parts,
        row.subject,
        row.channel,
        row.html,
        row.purpose,
    )


def record_submit(
    session: Session,
    message_id: int,
    event: MsgEvent,
    now: dt.datetime,
    *,
    retry_at: dt.datetime | None = None,
    reason: str | None = None,
) -> MsgState:
    """What the gateway said to one hand-over (accepted, unavailable, rejected, no answer)."""
    msg = session.get(Message, message_id)
    if msg is None:
        raise LookupError(f"message {message_id} is gone")
    after = transition(session, msg, event, now, reason=reason)
    if event is MsgEvent.UNAVAILABLE:
        msg.tries += 1
        msg.next_try_at = retry_at
    return after


def recover(session: Session, channel: Channel, now: dt.datetime) -> int:
    """After a restart: messages left 'submitting' may have reached the gateway -> in doubt."""
    rows = session.scalars(
        select(Message).where(
            Message.channel == channel.value, Message.state == MsgState.SUBMITTING.value
        )
    ).all()
    for row in rows:
        transition(session, row, MsgEvent.RECOVER, now)
    return len(rows)


def clear_doubts(session: Session, channel: Channel, now: dt.datetime, grace: dt.timedelta) -> int:
    """In-doubt messages that a later, acknowledged message proves were never taken go back
    to ``queued`` (see ``lifecycle``: the gateway keeps one route's messages in order).

    "Later" means claimed after the doubt was recorded, i.e. handed over only once the
    doubtful request had ended: a message sent alongside it (several in flight) proves
    nothing, as the gateway may have taken the two in either order."""
    doubts = session.scalars(
        select(Message).where(
            Message.channel == channel.value, Message.state == MsgState.IN_DOUBT.value
        )
    ).all()
    n = 0
    for row in doubts:
        later = session.scalar(
            select(func.count())
            .select_from(Message)
            .join(MessageEvent, MessageEvent.message_id == Message.id)
            .where(
                Message.channel == channel.value,
                MessageEvent.kind == MsgEvent.CLAIM.value,
                MessageEvent.at > row.submitted_at,
                Message.sent_at.is_not(None),
                Message.sent_at <= now - grace,
            )
        )
        if later:
            transition(session, row, MsgEvent.CLEARED, now, reason="never reached the gateway")
            row.next_try_at = None
            n += 1
    return n


def doubts_older_than(session: Session, channel: Channel, before: dt.datetime) -> list[Message]:
    return list(
        session.scalars(
            select(Message).where(
                Message.channel == channel.value,
                Message.state == MsgState.IN_DOUBT.value,
                Message.submitted_at <= before,
            )
        )
    )


def clear_when_idle(
    session: Session, channel: Channel, before: dt.datetime, now: dt.datetime
) -> int:
    """The gateway holds nothing and these doubts (older than ``before``) had no report:
    the gateway never took them, they go back to ``queued``."""
    rows = doubts_older_than(session, channel, before)
    for row in rows:
        transition(session, row, MsgEvent.CLEARED, now, reason="the gateway holds nothing")
        row.next_try_at = None
    return len(rows)


def expire_doubts(session: Session, now: dt.datetime, older_than: dt.timedelta) -> int:
    rows = session.scalars(
        select(Message).where(
            Message.state == MsgState.IN_DOUBT.value, Message.submitted_at <= now - older_than
        )
    ).all()
    for row in rows:
        transition(session, row, MsgEvent.DOUBT_TIMEOUT, now, reason="no report after a doubt")
    return len(rows)


def apply_report(
    session: Session, uid: str, event: MsgEvent, now: dt.datetime, **detail: Any
) -> MsgState | None:
    """A delivery report for message ``uid`` (None when no such message: logged by caller)."""
    msg = session.scalars(select(Message).where(Message.uid == uid)).one_or_none()
    if msg is None:
        return None
    return transition(session, msg, event, now, **detail)


def apply_bounce(
    session: Session, uid: str, *, hard: bool, status: str, detail: str, now: dt.datetime
) -> Message | None:
    """A DSN for message ``uid``: a hard one fails the message and marks the address invalid."""
    msg = message_by_uid(session, uid)
    if msg is None:
        return None
    if not hard:
        session.add(
            MessageEvent(
                message_id=msg.id,
                at=now,
                kind="delayed",
                state=msg.state,
                detail={"status": status},
            )
        )
        return msg
    transition(session, msg, MsgEvent.BOUNCED, now, reason=f"{status} {detail}".strip())
    flag_address(
        session,
        Channel(msg.channel),
        msg.address,
        Flag.INVALID,
        reason=f"{status} {detail}".strip(),
        source="dsn",
        message_id=msg.id,
    )
    return msg


def apply_unsubscribe(session: Session, uid: str, now: dt.datetime) -> Message | None:
    msg = message_by_uid(session, uid)
    if msg is None:
        return None
    msg.result = RESULT_OF[ReplyAction.OPT_OUT]
    msg.replied_at = now
    flag_address(
        session,
        Channel(msg.channel),
        msg.address,
        Flag.OPTED_OUT,
        reason="List-Unsubscribe",
        source="unsubscribe",
        message_id=msg.id,
    )
    return msg


@dataclass(frozen=True)
class ReplyOutcome:
    inbound_id: int
    action: ReplyAction
    message_id: int | None
    contact_id: int | None
    duplicate: bool = False


def last_message_to(session: Session, address: str, channel: Channel) -> Message | None:
    return session.scalars(
        select(Message)
        .where(
            Message.address == address,
            Message.channel == channel.value,
            Message.state.notin_([MsgState.QUEUED.value, MsgState.SUPPRESSED.value]),
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    ).one_or_none()


def apply_reply(
    session: Session,
    *,
    channel: Channel,
    gateway_id: str,
    sender: str,
    receiver: str | None,
    text: str,
    now: dt.datetime,
    classify: Classifier,
    message: Message | None = None,
) -> ReplyOutcome:
    """Store a reply once, link it to the message it answers, and act on its keyword.

    SMS replies are linked to the last message sent to that number; e-mail replies come with
    their message (the per-message reply address)."""
    seen = session.scalars(
        select(InboundMessage).where(InboundMessage.gateway_id == gateway_id)
    ).one_or_none()
    if seen is not None:
        return ReplyOutcome(
            seen.id, ReplyAction(seen.action), seen.message_id, seen.contact_id, duplicate=True
        )
    msg = message if message is not None else last_message_to(session, sender, channel)
    action = classify(text)
    row = InboundMessage(
        channel=channel.value,
        gateway_id=gateway_id,
        sender=sender,
        receiver=receiver,
        text=text,
        action=action.value,
        message_id=msg.id if msg else None,
        contact_id=msg.contact_id if msg else None,
        received_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same callback raced us
        seen = session.scalars(
            select(InboundMessage).where(InboundMessage.gateway_id == gateway_id)
        ).one()
        return ReplyOutcome(
            seen.id, ReplyAction(seen.action), seen.message_id, seen.contact_id, duplicate=True
        )
    result = RESULT_OF[action]
    if msg is not None:
        msg.replied_at = now
        if result is not None:
            msg.result = result
    if action is ReplyAction.OPT_OUT and channel is Channel.SMS:
        add_entry(
            session,
            sender,
            scope=DncScope.MARKETING,
            reason=f"SMS reply {text.strip()[:40]!r}",
            source="sms-reply",
            channel=DncChannel.SMS,  # marketing SMS stop; calls follow their own scope
        )
    elif action is ReplyAction.OPT_OUT and msg is not None:
        flag_address(
            session,
            channel,
            msg.address,
            Flag.OPTED_OUT,
            reason="reply",
            source="reply",
            message_id=msg.id,
        )
    return ReplyOutcome(row.id, action, row.message_id, row.contact_id)


def counts_by_state(
    session: Session, channel: Channel | None = None, campaign_id: int | None = None
) -> dict[str, int]:
    q = select(Message.state, func.count()).group_by(Message.state)
    if channel is not None:
        q = q.where(Message.channel == channel.value)
    if campaign_id is not None:
        q = q.where(Message.campaign_id == campaign_id)
    return {str(s): int(n) for s, n in session.execute(q)}


def free_text_replies(
    session: Session, *, unhandled_only: bool = True, limit: int = 200
) -> list[InboundMessage]:
    q = select(InboundMessage).where(InboundMessage.action == ReplyAction.FREE_TEXT.value)
    if unhandled_only:
        q = q.where(InboundMessage.handled_at.is_(None))
    return list(session.scalars(q.order_by(InboundMessage.received_at.desc()).limit(limit)))


def mark_handled(session: Session, ids: Iterable[int], by: str, now: dt.datetime) -> int:
    res = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id.in_(list(ids)), InboundMessage.handled_at.is_(None))
        .values(handled_at=now, handled_by=by)
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


__all__ = [
    "Claimed",
    "ReplyOutcome",
    "apply_bounce",
    "apply_reply",
    "apply_report",
    "apply_unsubscribe",
    "Flag",
    "claim_one",
    "clear_doubts",
    "clear_when_idle",
    "doubts_older_than",
    "counts_by_state",
    "due_messages",
    "enqueue_email",
    "enqueue_sms",
    "flag_address",
    "message_by_uid",
    "expire_doubts",
    "free_text_replies",
    "last_message_to",
    "mark_handled",
    "new_uid",
    "record_submit",
    "recover",
    "transition",
]


def mask_address(address: str) -> str:
    """A customer's number or e-mail address as pages and logs show it."""
    from dialer.privacy import mask_phone

    if "@" in address:
        local, _, domain = address.partition("@")
        return (local[:2] + "***@" + domain) if local else "***@" + domain
    return mask_phone(address) if address.startswith("+") else "***" + address[-4:]


def console_view(session: Session, *, replies: int = 100) -> dict[str, Any]:
    """What the console shows beside the voice floor: messages by channel and state, and
    the free-text replies agents still have to read (masked sender, digits scrubbed)."""
    from dialer.privacy import scrub

    by_channel: dict[str, dict[str, int]] = {}
    for channel, state, n in session.execute(
        select(Message.channel, Message.state, func.count()).group_by(
            Message.channel, Message.state
        )
    ):
        by_channel.setdefault(str(channel), {})[str(state)] = int(n)
    kept = [
        {
            "id": r.id,
            "channel": r.channel,
            "from": mask_address(r.sender),
            "received_at": r.received_at.isoformat(),
            "text": scrub(r.text),
            "contact_id": r.contact_id,
            "message_id": r.message_id,
        }
        for r in free_text_replies(session, limit=replies)
    ]
    return {"channels": by_channel, "replies": kept}
