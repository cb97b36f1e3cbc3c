"""The people who work the floor and what they record: console users, the dispositions agents
save against attempts, and the callbacks they book.

``app_user.password_hash`` holds an Argon2id hash (never the password); an agent's
``interface`` is the queue member interface of their phone (``PJSIP/1001``,
``Local/1001@agents``). A disposition's ``data`` holds what the form asked (an amount, a date,
the fields changed), masked like every customer value; ``notes`` are scrubbed of digits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dialer.store.models import Base, utcnow


class AppUser(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # agent | supervisor | admin
    password_hash: Mapped[str] = mapped_column(String(200))
    interface: Mapped[str | None] = mapped_column(String(128), unique=True)  # agents' phone
    campaigns: Mapped[list[str]] = mapped_column(JSON, default=list)  # [] = every campaign
    language: Mapped[str] = mapped_column(String(2), default="zh")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()


class Disposition(Base):
    """What an agent recorded about one attempt (one row per save; the last one counts)."""

    __tablename__ = "disposition"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(
        ForeignKey("attempt.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    code: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(40))  # AppUser.username
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Callback(Base):
    """A call booked for a time: personal (only ``agent`` gets it until ``fallback_at``) or the
    campaign's."""

    __tablename__ = "callback"
    __table_args__ = (Index("ix_callback_due", "campaign_id", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    agent: Mapped[str | None] = mapped_column(String(40))  # personal: the agent's username
    due_at: Mapped[dt.datetime] = mapped_column()
    fallback_at: Mapped[dt.datetime | None] = mapped_column()  # then anyone in the campaign
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|dialled|cancelled
    booked_by: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempt.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: the contact's priority before the booking raised it (the hopper serves callbacks first);
    #: given back when the callback is dialled
    priority_before: Mapped[int | None] = mapped_column(Integer)


class PreviewSkip(Base):
    """An agent in preview mode skipped the contact offered, with a reason from the campaign's
    list; ``counted``: the skip was counted against the attempt limit."""

    __tablename__ = "preview_skip"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    agent: Mapped[str] = mapped_column(String(40))  # AppUser.username
    reason: Mapped[str] = mapped_column(String(40))
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


__all__ = ["AppUser", "Callback", "Disposition", "PreviewSkip"]
