"""Messaging tables: outbound messages, their events, and incoming replies.

``message.uid`` is the idempotency key handed to the gateway (and back in its reports);
``inbound_message.gateway_id`` makes a repeated callback a no-op. Bodies hold only what was
sent, which templates have already masked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from dialer.store.models import Base, utcnow


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_due", "state", "next_try_at"),
        Index("ix_message_address_created", "address", "created_at"),
        Index("ix_message_campaign_step", "campaign_id", "step"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    purpose: Mapped[str] = mapped_column(String(16))  # service | marketing
    state: Mapped[str] = mapped_column(String(16), default="queued")  # lifecycle.MsgState
    address: Mapped[str] = mapped_column(String(254))  # E.164 or e-mail address
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    step: Mapped[int | None] = mapped_column(Integer)  # the campaign step that sent it
    # spent one unit of the contact's budget and counts in its per-day cap (dialer.lists.touches)
    budget: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    template: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)  # e-mail: the HTML alternative
    encoding: Mapped[str | None] = mapped_column(String(8))  # gsm7 | ucs2 (SMS)
    parts: Mapped[int] = mapped_column(Integer, default=1)
    tries: Mapped[int] = mapped_column(Integer, default=0)  # hand-overs refused by the gateway
    next_try_at: Mapped[dt.datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(200))  # why it failed or was suppressed
    result: Mapped[str | None] = mapped_column(String(64))  # a reply's result: confirmed, ...
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    replied_at: Mapped[dt.datetime | None] = mapped_column()


class MessageEvent(Base):
    __tablename__ = "message_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # lifecycle.MsgEvent
    state: Mapped[str] = mapped_column(String(16))  # the state it led to
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class InboundMessage(Base):
    """A reply (SMS MO or e-mail), linked to the contact and the message it answers."""

    __tablename__ = "inbound_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    gateway_id: Mapped[str] = mapped_column(String(200), unique=True)
    sender: Mapped[str] = mapped_column(String(254), index=True)
    receiver: Mapped[str | None] = mapped_column(String(254))
    text: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))  # keywords.ReplyAction
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="SET NULL"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[dt.datetime | None] = mapped_column()  # an agent read it
    handled_by: Mapped[str | None] = mapped_column(String(128))


class AddressFlag(Base):
    """An e-mail address (or number) that bounced for good or asked to hear no more."""

    __tablename__ = "address_flag"
    __table_args__ = (UniqueConstraint("channel", "address", "flag", name="uq_address_flag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(254), index=True)
    flag: Mapped[str] = mapped_column(String(16))  # invalid | opted_out
    reason: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))  # dsn, smtp-rcpt, reply, unsubscribe
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


__all__ = ["AddressFlag", "InboundMessage", "Message", "MessageEvent"]
