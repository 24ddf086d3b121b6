"""Indexes for the hourly housekeeping (shared/housekeeping.py): the inbox by age, the deliveries by
the time they finished.

Revision ID: notifications_0004
Revises: notifications_0003
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_inbox_age_index

revision = "notifications_0004"
down_revision = "notifications_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_inbox_age_index()
    op.create_index("ix_webhook_delivery_finished_at", "webhook_delivery", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_finished_at", table_name="webhook_delivery")
    op.drop_index("ix_inbox_event_processed_at", table_name="inbox_event")
