"""Alert tables: event-triggered contacts from the bank's systems, and what became of each.

An ``alert`` row is written (and committed) before the API answers ``202``; ``(system, key)``
is unique, so the same idempotency key twice is one alert. ``plan`` is the escalation ladder
expanded for this alert's numbers when it arrived (``dialer.lists.alertspec.expand``);
``stage`` is the index of the next step of it. ``alert_event`` is the alert's timeline: what
the API, the ladder, the calls and the replies did, masked (no card or ID number in clear).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dialer.store.models import Base, utcnow


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("system", "key", name="uq_alert_key"),
        Index("ix_alert_due", "state", "next_at"),
        Index("ix_alert_webhook_due", "webhook", "webhook_next_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(64))  # the credential that posted it
    key: Mapped[str] = mapped_column(String(100))  # the system's idempotency key
    type: Mapped[str] = mapped_column(String(32))  # transaction_alert, device_fault, ...
    state: Mapped[str] = mapped_column(String(16), default="open")  # alertspec.AlertState
    priority: Mapped[int] = mapped_column(Integer, default=5)  # 0 (low) .. 9 (urgent)
    deadline_at: Mapped[dt.datetime] = mapped_column()
    target_kind: Mapped[str] = mapped_column(String(16))  # customer | roster
    target: Mapped[str] = mapped_column(String(100))  # the bank's customer id, or a roster
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # checked: no PAN/ID
    plan: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the expanded ladder
    stage: Mapped[int] = mapped_column(Integer, default=0)  # next step of the plan
    next_at: Mapped[dt.datetime | None] = mapped_column()  # when it is due (None: waiting)
    waiting_attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("attempt.id", ondelete="SET NULL")
    )
    calls: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(String(64))  # confirmed, denied, acknowledged
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))  # masked number / name
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_dial_at: Mapped[dt.datetime | None] = mapped_column()
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    #: the result's delivery to the bank's webhook: none | waiting (open) | pending | delivered
    webhook: Mapped[str] = mapped_column(String(16), default="none")
    webhook_next_at: Mapped[dt.datetime | None] = mapped_column()
    webhook_tries: Mapped[int] = mapped_column(Integer, default=0)


class AlertEvent(Base):
    __tablename__ = "alert_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # alertspec.EventKind
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked


class AlertDelivery(Base):
    """One try to hand an alert's result to the bank's webhook (every try is recorded)."""

    __tablename__ = "alert_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    url: Mapped[str] = mapped_column(String(300))
    status: Mapped[int | None] = mapped_column(Integer)  # the HTTP status; None: no answer
    error: Mapped[str | None] = mapped_column(String(200))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)


__all__ = ["Alert", "AlertDelivery", "AlertEvent"]
