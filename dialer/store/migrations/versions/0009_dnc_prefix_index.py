"""dnc prefix index: every do-not-call lookup reads the prefix entries through an index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:30:00
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dnc", schema=None) as batch_op:
        batch_op.create_index("ix_dnc_prefix", ["is_prefix", "number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dnc", schema=None) as batch_op:
        batch_op.drop_index("ix_dnc_prefix")
