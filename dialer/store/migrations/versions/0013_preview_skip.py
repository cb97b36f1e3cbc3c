"""preview skips: an agent skipped the contact offered, with a reason

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 15:20:00
"""

import sqlalchemy as sa
from alembic import op

import dialer.store.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "preview_skip",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("at", dialer.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("preview_skip", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_preview_skip_contact_id"), ["contact_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("preview_skip", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_preview_skip_contact_id"))
    op.drop_table("preview_skip")
