"""A refund is a row from the moment it counts: ``pending``, then ``succeeded`` or ``failed``.

Before, a refund was counted in ``payments.refunded_minor`` first and written only after
the provider answered, so a crash in between left a count with no row. Now the row is
written with the count, under the provider key it is made with (``reference``), and a
pending one whose process died is finished later under that key. Refunds already there
succeeded; their key is not known, so each gets a unique one that says so.

Payments and refunds left half done by a dead process are found by status and age
(the reconciler's index). An ``Idempotency-Key`` also records what its first request
made (``made_id``), so a retry after that request died answers with it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATUSES = ("pending", "succeeded", "failed")


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
    refunds = sa.table(
        "refunds",
        sa.column("id", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("reference", sa.String()),
        sa.column("created_at", sa.DateTime()),
        sa.column("updated_at", sa.DateTime()),
    )
    op.execute(
        refunds.update().values(
            status="succeeded",
            reference=sa.literal("before-0003-") + sa.cast(refunds.c.id, sa.String(20)),
            updated_at=refunds.c.created_at,
        )
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        for column, length in (("status", 16), ("reference", 128)):
            batch_op.alter_column(column, existing_type=sa.String(length=length), nullable=False)
        batch_op.alter_column("updated_at", existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column(
            "provider_reference", existing_type=sa.String(length=128), nullable=True
        )
        batch_op.create_check_constraint(
            op.f("ck_refunds_refundstatus"),
            sa.column("status").in_(STATUSES),
        )
        batch_op.create_unique_constraint(batch_op.f("uq_refunds_reference"), ["reference"])
        batch_op.create_index(
            batch_op.f("ix_refunds_status_updated_at"), ["status", "updated_at"], unique=False
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payments_status_updated_at"), ["status", "updated_at"], unique=False
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("made_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("made_id")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_status_updated_at"))
    # Failed refunds never counted, so they go. A pending one may have reached the
    # provider: it stays counted and keeps a row, named by the key it was made with.
    refunds = sa.table(
        "refunds",
        sa.column("status", sa.String()),
        sa.column("reference", sa.String()),
        sa.column("provider_reference", sa.String()),
    )
    op.execute(refunds.delete().where(refunds.c.status == "failed"))
    op.execute(
        refunds.update()
        .where(refunds.c.provider_reference.is_(None))
        .values(provider_reference=refunds.c.reference)
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_status_updated_at"))
        batch_op.drop_constraint(batch_op.f("uq_refunds_reference"), type_="unique")
        batch_op.drop_constraint(op.f("ck_refunds_refundstatus"), type_="check")
        batch_op.alter_column(
            "provider_reference", existing_type=sa.String(length=128), nullable=False
        )
        batch_op.drop_column("updated_at")
        batch_op.drop_column("reference")
        batch_op.drop_column("status")
