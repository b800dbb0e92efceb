"""Each deny-list entry records when it was made, so every process can read the new ones.

The in-memory deny lists of the processes sharing this database read the entries made
since their last read (``app.kit.deny_list``). Entries already there take the
migration's time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 17:30:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANGED = {"denied_tokens": "denied_at", "token_versions": "changed_at"}


def upgrade() -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    for table, column in CHANGED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.DateTime(), nullable=True))
        op.execute(sa.table(table, sa.column(column)).update().values({column: now}))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.DateTime(), nullable=False)
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade() -> None:
    for table, column in CHANGED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
            batch_op.drop_column(column)
