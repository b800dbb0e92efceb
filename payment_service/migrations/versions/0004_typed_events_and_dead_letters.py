"""Events are typed and have an end state: each outbox row keeps its topic's revision,
and ``event_failures`` records what this service failed to handle, and handles it again
until the attempts run out and it is a dead letter. The inbox's ids are found by age, for pruning.

Events already in the outbox were written before topics had revisions: they are
revision 1, which is what every topic is today.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("revision", existing_type=sa.Integer(), server_default=None)
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_received_at"), ["received_at"], unique=False)
    op.create_table(
        "event_failures",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("dead_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_failures")),
    )
    with op.batch_alter_table("event_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_failures_dead_at"), ["dead_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_event_failures_next_attempt_at"), ["next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("event_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_failures_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_event_failures_dead_at"))
    op.drop_table("event_failures")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_received_at"))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("revision")
