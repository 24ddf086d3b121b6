"""Indexes for the hourly housekeeping (shared/housekeeping.py): the inbox by age.

Revision ID: matcher_0004
Revises: matcher_0003
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_inbox_age_index

revision = "matcher_0004"
down_revision = "matcher_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_inbox_age_index()


def downgrade() -> None:
    op.drop_index("ix_inbox_event_processed_at", table_name="inbox_event")
