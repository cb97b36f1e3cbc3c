"""SQLAlchemy 2 models (DESIGN.md section 6).

All timestamps are stored as naive UTC and read back as aware UTC (``UTCDateTime``).
Personal data rules: sensitive contact fields hold only a keyed hash; nothing here ever
holds digits a caller typed for verification.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC out; naive UTC on disk (portable across SQLite/PG)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: UTCDateTime}


class Campaign(Base):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # CampaignSpec.to_document()
    #: the file's own document as last applied (dialer.lists.campaigns.file_document): what a
    #: reload compares against, apart from the live ``spec``/``state`` supervisors change
    applied: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="campaign")


class Contact(Base):
    __tablename__ = "contact"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone", name="uq_contact_campaign_phone"),
        Index("ix_contact_due", "campaign_id", "status", "next_attempt_at"),
        # The lease walks one priority level in (next_attempt_at NULLS FIRST, id) order: never
        # tried first. SQLite sorts NULLs first anyway; PostgreSQL needs it said in the index.
        Index(
            "ix_contact_lease",
            "campaign_id",
            "status",
            "priority",
            "next_attempt_at",
            "id",
            postgresql_ops={"next_attempt_at": "NULLS FIRST"},
        ),
        # the bank's customer id: an alert finds its customer's contact by it
        Index("ix_contact_external_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    region: Mapped[str | None] = mapped_column(String(2))  # ISO country of the number
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), default="zh")
    timezone: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str | None] = mapped_column(String(100))
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # sensitive ones hashed
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    abandoned_at: Mapped[dt.datetime | None] = mapped_column()  # last abandoned call
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="contacts")


class ContactNumber(Base):
    """A contact's numbers beyond one (import columns phone, mobile/home/work_phone), in
    dialling order (``position`` 0 is the number it was imported with). A contact with a
    single number has no rows: ``contact.phone`` is all there is. ``contact.phone`` is always
    the number its calls go to now (``dialer.lists.numbers``)."""

    __tablename__ = "contact_number"
    __table_args__ = (UniqueConstraint("contact_id", "number", name="uq_contact_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(20))  # E.164
    kind: Mapped[str] = mapped_column(String(8))  # main | mobile | home | work
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8), default="active")  # active | invalid | dnc
    state_at: Mapped[dt.datetime | None] = mapped_column()


class Attempt(Base):
    """One row per dial, written before the Originate."""

    __tablename__ = "attempt"
    __table_args__ = (
        Index("ix_attempt_phone_created", "phone", "created_at"),
        Index("ix_attempt_campaign_created", "campaign_id", "created_at"),
        # a contact's touches today (its one per-day cap across numbers and channels)
        Index("ix_attempt_contact_created", "contact_id", "created_at"),
        # abandon-rate windows count the attempts that ended since an instant
        Index("ix_attempt_campaign_ended", "campaign_id", "ended_at"),
        # the attempts still live (no outcome): the lease skips their numbers
        Index(
            "ix_attempt_live",
            "phone",
            sqlite_where=text("outcome IS NULL"),
            postgresql_where=text("outcome IS NULL"),
        ),
        # a worker reaching a switch adopts the open attempts a dead worker left there
        Index(
            "ix_attempt_open_server",
            "server",
            "owner",
            sqlite_where=text("outcome IS NULL"),
            postgresql_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    phone: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer, default=1)  # the contact's n-th attempt
    channel_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # Originate ChannelId
    state: Mapped[str] = mapped_column(String(16), default="created")
    outcome: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[str | None] = mapped_column(String(64))  # the IVR flow's business result
    live_answer: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    originated_at: Mapped[dt.datetime | None] = mapped_column()
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    greeting_end_at: Mapped[dt.datetime | None] = mapped_column()  # greeting / AMD finished
    queued_at: Mapped[dt.datetime | None] = mapped_column()
    bridged_at: Mapped[dt.datetime | None] = mapped_column()
    message_played_at: Mapped[dt.datetime | None] = mapped_column()  # safe-harbour message
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    originate_reason: Mapped[int | None] = mapped_column(Integer)
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    amd_status: Mapped[str | None] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(128))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()  # what the retry rule set
    owner: Mapped[str | None] = mapped_column(String(64))  # the worker following the call
    server: Mapped[str | None] = mapped_column(String(64))  # the switch it was dialled on
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Worker(Base):
    """One ``dialer run`` process: who it is and when it last said it was alive."""

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # stable: host or --worker
    instance: Mapped[str] = mapped_column(String(32))  # this start of it (a new one per start)
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column()
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per switch: AMI, calls


class Switch(Base):
    """An Asterisk server and the worker that serves it (one at a time)."""

    __tablename__ = "switch"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64))  # Worker.id
    claimed_at: Mapped[dt.datetime | None] = mapped_column()


class DncEntry(Base):
    __tablename__ = "dnc"
    __table_args__ = (
        UniqueConstraint("number", "is_prefix", "scope", "channel", name="uq_dnc"),
        # every lookup reads all prefix entries: without this it read the whole list
        Index("ix_dnc_prefix", "is_prefix", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), index=True)  # E.164, or a "+86138" prefix
    is_prefix: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[str] = mapped_column(String(16), default="all")  # all | marketing
    channel: Mapped[str] = mapped_column(
        String(8), default="all", server_default="all"
    )  # all | voice | sms | email: the channel the entry bars (lists.dnc.DncChannel)
    reason: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))  # cli, import, ivr-opt-out, api
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IvrSession(Base):
    """One run of a flow: the result the dialer reads (DESIGN.md section 9)."""

    __tablename__ = "ivr_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("attempt.id", ondelete="SET NULL"), index=True
    )
    flow: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(128))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(
        String(16), default="running"
    )  # running|completed|hangup|error
    result: Mapped[str | None] = mapped_column(String(64))
    next: Mapped[str | None] = mapped_column(String(80))  # IVR_NEXT: hangup | queue:<name>
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column()


class IvrStep(Base):
    __tablename__ = "ivr_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("ivr_session.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who changed what and when: campaign applies, pauses, pacing changes, reloads."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), index=True
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CallEvent(Base):
    """Optional trail of what the tracker saw for an attempt."""

    __tablename__ = "call_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(
        ForeignKey("attempt.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EstimateSnapshot(Base):
    __tablename__ = "estimate_snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Meta(Base):
    """Small key/value facts about the store (e.g. a hash-key fingerprint)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


__all__ = [
    "Attempt",
    "AuditEntry",
    "Base",
    "CallEvent",
    "ContactNumber",
    "Campaign",
    "Contact",
    "DncEntry",
    "EstimateSnapshot",
    "IvrSession",
    "IvrStep",
    "Meta",
    "Switch",
    "UTCDateTime",
    "Worker",
    "utcnow",
]
