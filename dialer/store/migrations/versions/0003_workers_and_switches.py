"""several workers and switches: worker heartbeats, switch owners, each attempt's owner and switch

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import dialer.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = sa.text("outcome IS NULL")


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", dialer.store.models.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", dialer.store.models.UTCDateTime(), nullable=False),
        sa.Column("stopped_at", dialer.store.models.UTCDateTime(), nullable=True),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "switch",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", dialer.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("server", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_attempt_open_server",
            ["server", "owner"],
            unique=False,
            sqlite_where=OPEN,
            postgresql_where=OPEN,
        )
    # attempts still open from before: dialled on the one switch there was ("default"); no
    # owner, so whichever worker serves that switch adopts them
    op.execute("UPDATE attempt SET server = 'default' WHERE outcome IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_attempt_open_server")
        batch_op.drop_column("server")
        batch_op.drop_column("owner")
    op.drop_table("switch")
    op.drop_table("worker")
