"""The durable delivery queue (issue 5): ordering per need or seed, rotation, pause, failing runs,
digest mode, the next attempt of each attempt, and the event log behind the stream and replays.

Existing rows get: ordering_key '' (no order to keep with later events), mode per_event, no
failures so far.

Revision ID: notifications_0003
Revises: notifications_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'notifications_0003'
down_revision = 'notifications_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notification_event',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(64), nullable=False),
    sa.Column('event_type', sa.String(128), nullable=False),
    sa.Column('office_id', sa.String(64), nullable=False),
    sa.Column('ordering_key', sa.String(160), nullable=False),
    sa.Column('event', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('notification_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_event_office_id'), ['office_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_event_received_at'), ['received_at'], unique=False)

    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ordering_key', sa.String(160), nullable=False, server_default=''))
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_status'))
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_subscription_id'))
        batch_op.create_index('ix_webhook_delivery_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_delivery_order', ['subscription_id', 'ordering_key', 'status'], unique=False)
        batch_op.create_index('ix_webhook_delivery_settled', ['subscription_id', 'status', 'finished_at'], unique=False)

    with op.batch_alter_table('webhook_delivery_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', sa.String(20), nullable=False, server_default='per_event'))
        batch_op.add_column(sa.Column('previous_secret', sa.String(100), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sa.String(20), nullable=True))
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('consecutive_failures', sa.Integer(), nullable=False, server_default='0'))

    # The defaults were for existing rows only: the service always sets these columns.
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('ordering_key', existing_type=sa.String(160), server_default=None)
    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.alter_column('mode', existing_type=sa.String(20), server_default=None)
        batch_op.alter_column('consecutive_failures', existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.drop_column('consecutive_failures')
        batch_op.drop_column('failing_since')
        batch_op.drop_column('disabled_reason')
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret')
        batch_op.drop_column('mode')

    with op.batch_alter_table('webhook_delivery_attempt', schema=None) as batch_op:
        batch_op.drop_column('next_attempt_at')

    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_settled')
        batch_op.drop_index('ix_webhook_delivery_order')
        batch_op.drop_index('ix_webhook_delivery_due')
        batch_op.create_index(batch_op.f('ix_webhook_delivery_subscription_id'), ['subscription_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_delivery_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_delivery_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.drop_column('ordering_key')

    with op.batch_alter_table('notification_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_event_received_at'))
        batch_op.drop_index(batch_op.f('ix_notification_event_office_id'))

    op.drop_table('notification_event')
