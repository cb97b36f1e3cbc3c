"""one budget across channels: message.budget, attempts by contact and time

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 15:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("budget", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.create_index("ix_attempt_contact_created", ["contact_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_attempt_contact_created")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("budget")
