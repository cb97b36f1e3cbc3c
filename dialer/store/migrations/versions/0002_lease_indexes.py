"""indexes for the hot queries at scale: the lease order, live attempts, abandon windows

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = sa.text("outcome IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_lease",
            ["campaign_id", "status", "priority", "next_attempt_at", "id"],
            unique=False,
            postgresql_ops={"next_attempt_at": "NULLS FIRST"},
        )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_attempt_campaign_ended", ["campaign_id", "ended_at"], unique=False
        )
        batch_op.create_index(
            "ix_attempt_live",
            ["phone"],
            unique=False,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_attempt_live")
        batch_op.drop_index("ix_attempt_campaign_ended")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_lease")
