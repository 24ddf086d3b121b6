"""The seeds service's tables as they were before migrations: common tables and ``seed``.

Revision ID: seeds_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_common_tables, drop_common_tables, timestamp_column

revision = "seeds_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_common_tables()
    op.create_table(
        "seed",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("prefecture", sa.String(2), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
        sa.Column("owner_org", sa.String(300), nullable=False),
        sa.Column("owner_type", sa.String(40), nullable=False),
        sa.Column("offers", sa.JSON(), nullable=False),
    )
    op.create_index("ix_seed_prefecture", "seed", ["prefecture"])
    op.create_index("ix_seed_status", "seed", ["status"])


def downgrade() -> None:
    op.drop_table("seed")
    drop_common_tables()
