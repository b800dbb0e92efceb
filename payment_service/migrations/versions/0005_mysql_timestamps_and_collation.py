"""On MariaDB/MySQL, timestamps keep their microseconds and strings compare byte for byte.

Their ``DATETIME`` drops the fraction (a ``created_at`` of ``15:57:46.123456`` came back
``15:57:46``): every timestamp becomes ``DATETIME(6)``, as the models say. Their default
collations ignore case (and trailing spaces): every table becomes ``utf8mb4`` with a binary,
no-pad collation, so an ``Idempotency-Key``, a token id or a reference is unique and found
exactly as on PostgreSQL and SQLite (the keys that ignore case are stored lower-cased).
Tables made by this version already are so; this converts those made before. Nothing to
do on PostgreSQL or SQLite; going down leaves the columns as they are (no data is lost).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:40:00
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIMESTAMPS = {
    "denied_tokens": [("expires_at", False), ("denied_at", False)],
    "event_failures": [("failed_at", False), ("next_attempt_at", True), ("dead_at", True)],
    "idempotency_keys": [("created_at", False)],
    "inbox": [("received_at", False)],
    "outbox": [
        ("created_at", False),
        ("next_attempt_at", False),
        ("lease_until", True),
        ("delivered_at", True),
    ],
    "payments": [("created_at", False), ("updated_at", False)],
    "refunds": [("created_at", False), ("updated_at", False)],
    "token_versions": [("changed_at", False)],
}
"""Each table's timestamp columns, and whether they may be NULL."""


def upgrade() -> None:
    dialect = op.get_bind().dialect
    if dialect.name not in ("mysql", "mariadb"):
        return
    collation = "utf8mb4_nopad_bin" if dialect.is_mariadb else "utf8mb4_0900_bin"
    for table, columns in TIMESTAMPS.items():
        changes = [f"CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"]
        changes += [
            f"MODIFY {column} DATETIME(6) {'NULL' if nullable else 'NOT NULL'}"
            for column, nullable in columns
        ]
        op.execute(f"ALTER TABLE {table} " + ", ".join(changes))


def downgrade() -> None:
    pass
