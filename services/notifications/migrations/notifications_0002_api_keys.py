"""Stored, hashed API keys: the `api_key` table (the registry in notifications, a replica elsewhere).

Revision ID: notifications_0002
Revises: notifications_0001
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_api_key_table

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_api_key_table()


def downgrade() -> None:
    op.drop_table("api_key")
