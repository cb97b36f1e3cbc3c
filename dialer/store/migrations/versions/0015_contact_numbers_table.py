"""a contact's several numbers as rows (contact_number), moved out of fields["numbers"]

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 15:20:00
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

import dialer.store.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_KINDS = ("main", "mobile", "home", "work")


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def upgrade() -> None:
    table = op.create_table(
        "contact_number",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("state_at", dialer.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id", "number", name="uq_contact_number"),
    )
    with op.batch_alter_table("contact_number", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_number_contact_id"), ["contact_id"], unique=False
        )
    # the numbers the import kept in fields["numbers"] become rows; the key leaves fields
    bind = op.get_bind()
    contact = sa.table("contact", sa.column("id", sa.Integer), sa.column("fields", sa.JSON))
    moved = bind.execute(
        sa.select(contact.c.id, contact.c.fields).where(
            sa.cast(contact.c.fields, sa.Text).like('%"numbers"%')
        )
    ).all()
    for cid, raw in moved:
        fields = _fields(raw)
        numbers = fields.pop("numbers", None)
        if not isinstance(numbers, list):
            continue
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n in numbers:
            number = str((n or {}).get("number") or "")
            kind = str((n or {}).get("kind") or "")
            if not number or number in seen:
                continue
            seen.add(number)
            rows.append(
                {
                    "contact_id": cid,
                    "number": number,
                    "kind": kind if kind in _KINDS else "mobile",
                    "position": len(rows),
                    "state": "active",
                }
            )
        if rows:
            op.bulk_insert(table, rows)
        bind.execute(contact.update().where(contact.c.id == cid).values(fields=fields))


def downgrade() -> None:
    bind = op.get_bind()
    contact = sa.table("contact", sa.column("id", sa.Integer), sa.column("fields", sa.JSON))
    number = sa.table(
        "contact_number",
        sa.column("contact_id", sa.Integer),
        sa.column("number", sa.String),
        sa.column("kind", sa.String),
        sa.column("position", sa.Integer),
    )
    per: dict[int, list[dict[str, str]]] = {}
    for cid, n, kind in bind.execute(
        sa.select(number.c.contact_id, number.c.number, number.c.kind).order_by(
            number.c.contact_id, number.c.position
        )
    ):
        per.setdefault(cid, []).append({"kind": kind, "number": n})
    for cid, numbers in per.items():
        raw = bind.execute(sa.select(contact.c.fields).where(contact.c.id == cid)).scalar()
        fields = _fields(raw)
        fields["numbers"] = numbers
        bind.execute(contact.update().where(contact.c.id == cid).values(fields=fields))
    with op.batch_alter_table("contact_number", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_number_contact_id"))
    op.drop_table("contact_number")
