"""The matcher's tables as they were before migrations: common tables and ``pairing``.

Revision ID: matcher_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_common_tables, drop_common_tables, timestamp_column

revision = "matcher_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_common_tables()
    op.create_table(
        "pairing",
        sa.Column("pairing_id", sa.String(64), primary_key=True),
        sa.Column("seed_id", sa.String(64), nullable=False),
        sa.Column("need_id", sa.String(64), nullable=False),
        sa.Column("office_id", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("pairing", sa.JSON(), nullable=False),
        timestamp_column("updated_at"),
    )
    op.create_index("ix_pairing_seed_id", "pairing", ["seed_id"])
    op.create_index("ix_pairing_need_id", "pairing", ["need_id"])


def downgrade() -> None:
    op.drop_table("pairing")
    drop_common_tables()
