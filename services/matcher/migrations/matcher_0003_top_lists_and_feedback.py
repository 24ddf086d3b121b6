"""Top lists and feedback: whether a pairing is in its need's and in its seed's top list, its verdict,
the seed's office; ``pairing_feedback`` keeps every verdict. The pairings stored before are their
needs' lists; seeds' lists start empty and fill as seeds and needs change.

Revision ID: matcher_0003
Revises: matcher_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import timestamp_column

revision = "matcher_0003"
down_revision = "matcher_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pairing") as batch:
        batch.add_column(sa.Column("seed_office_id", sa.String(16), nullable=True))
        # Every pairing stored so far was proposed for its need: it is in the need's list.
        batch.add_column(sa.Column("in_need_list", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("in_seed_list", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=True))
    with op.batch_alter_table("pairing") as batch:
        batch.alter_column("in_need_list", existing_type=sa.Boolean(), server_default=None)
        batch.alter_column("in_seed_list", existing_type=sa.Boolean(), server_default=None)
    op.create_table(
        "pairing_feedback",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pairing_id", sa.String(64), nullable=False),
        sa.Column("seed_id", sa.String(64), nullable=False),
        sa.Column("need_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("given_by_key_id", sa.String(64), nullable=False),
        sa.Column("given_by_office_id", sa.String(16), nullable=True),
        timestamp_column("given_at"),
    )
    op.create_index("ix_pairing_feedback_pairing_id", "pairing_feedback", ["pairing_id"])


def downgrade() -> None:
    op.drop_table("pairing_feedback")
    with op.batch_alter_table("pairing") as batch:
        for column in ("verdict", "in_seed_list", "in_need_list", "seed_office_id"):
            batch.drop_column(column)
