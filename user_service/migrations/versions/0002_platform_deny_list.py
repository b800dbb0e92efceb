"""The user service keeps the platform's deny list, as the other services do.

Logged-out tokens move from ``revoked_tokens`` to ``denied_tokens`` (kept until they
expire; ``denied_at`` is when, and the moved ones take the migration's time);
``token_versions`` is the deny list's other table, which the user service does not need
to fill: its own ``users.token_version`` retires a changed password's tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 16:40:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    denied = op.create_table(
        "denied_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("denied_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_denied_tokens")),
    )
    with op.batch_alter_table("denied_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_denied_tokens_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_denied_tokens_denied_at"), ["denied_at"], unique=False)
    op.create_table(
        "token_versions",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_token_versions")),
    )
    with op.batch_alter_table("token_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_token_versions_changed_at"), ["changed_at"], unique=False
        )
    revoked = sa.table("revoked_tokens", sa.column("jti"), sa.column("expires_at"))
    now = datetime.now(UTC).replace(tzinfo=None)
    moved = op.get_bind().execute(sa.select(revoked.c.jti, revoked.c.expires_at)).all()
    if moved:
        op.bulk_insert(
            denied,
            [{"jti": jti, "expires_at": expires, "denied_at": now} for jti, expires in moved],
        )
    op.drop_table("revoked_tokens")  # with its indexes (MariaDB refuses to drop one a FK needs)


def downgrade() -> None:
    """Back to ``revoked_tokens``, which needs each token's user: ``denied_tokens`` does
    not know it. So that no logged-out token works again, every user's token version is
    raised when any denied token has not expired yet: everyone signs in again."""
    op.execute(
        "UPDATE users SET token_version = token_version + 1 "
        "WHERE EXISTS (SELECT 1 FROM denied_tokens WHERE expires_at > CURRENT_TIMESTAMP)"
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_revoked_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_tokens")),
    )
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_revoked_tokens_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_revoked_tokens_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("token_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_versions_changed_at"))
    op.drop_table("token_versions")
    with op.batch_alter_table("denied_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_denied_tokens_denied_at"))
        batch_op.drop_index(batch_op.f("ix_denied_tokens_expires_at"))
    op.drop_table("denied_tokens")
