"""Stored, hashed API keys: the `api_key` table (the registry in notifications, a replica elsewhere).

Revision ID: matcher_0002
Revises: matcher_0001
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_api_key_table

revision = "matcher_0002"
down_revision = "matcher_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_api_key_table()


def downgrade() -> None:
    op.drop_table("api_key")
