"""The notifications service's tables as they were before migrations: common tables,
subscriptions, deliveries and their attempts.

Revision ID: notifications_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_common_tables, drop_common_tables, timestamp_column

revision = "notifications_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_common_tables()
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("office_id", sa.String(64), nullable=True),
        sa.Column("partner_id", sa.String(100), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("filters", sa.JSON(), nullable=True),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
    )
    op.create_index("ix_webhook_subscription_office_id", "webhook_subscription", ["office_id"])
    op.create_index("ix_webhook_subscription_partner_id", "webhook_subscription", ["partner_id"])
    op.create_index("ix_webhook_subscription_status", "webhook_subscription", ["status"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subscription_id", sa.String(64), sa.ForeignKey("webhook_subscription.id"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp_column("next_attempt_at"),
        sa.Column("traceparent", sa.String(64), nullable=True),
        timestamp_column("created_at"),
        timestamp_column("finished_at", nullable=True),
        sa.UniqueConstraint("subscription_id", "event_id"),
    )
    op.create_index("ix_webhook_delivery_subscription_id", "webhook_delivery", ["subscription_id"])
    op.create_index("ix_webhook_delivery_next_attempt_at", "webhook_delivery", ["next_attempt_at"])
    op.create_index("ix_webhook_delivery_status", "webhook_delivery", ["status"])
    op.create_table(
        "webhook_delivery_attempt",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(64), sa.ForeignKey("webhook_delivery.id"), nullable=False),
        timestamp_column("attempted_at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_webhook_delivery_attempt_delivery_id", "webhook_delivery_attempt", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_delivery_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_subscription")
    drop_common_tables()
