"""Stored, hashed API keys: the `api_key` table (the registry in notifications, a replica elsewhere).

Revision ID: seeds_0003
Revises: seeds_0002
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_api_key_table

revision = "seeds_0003"
down_revision = "seeds_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_api_key_table()


def downgrade() -> None:
    op.drop_table("api_key")
