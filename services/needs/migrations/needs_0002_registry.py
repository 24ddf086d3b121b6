"""The complete registry (issue 3): the need profile's new fields, search terms, the audit trail.

Revision ID: needs_0002
Revises: needs_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import add_common_profile_columns, backfill_terms, create_audit_table, create_term_table

revision = "needs_0002"
down_revision = "needs_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_common_profile_columns("need")
    with op.batch_alter_table("need") as batch:
        batch.add_column(sa.Column("industry", sa.String(1), nullable=True))
        batch.add_column(sa.Column("budget_min_jpy", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("budget_max_jpy", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("timeline_months", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("redacted_summary", sa.Text(), nullable=True))
    create_term_table("need_term")
    backfill_terms("need", "need_term", "wanted_forms")
    create_audit_table()


def downgrade() -> None:
    op.drop_table("audit_record")
    op.drop_table("need_term")
    with op.batch_alter_table("need") as batch:
        for index in ("ix_need_external_id", "ix_need_expires_on", "ix_need_updated_at"):
            batch.drop_index(index)
        for column in ("external_id", "summary", "title_translated", "summary_translated", "classification_codes",
                       "expires_on", "industry", "budget_min_jpy", "budget_max_jpy", "timeline_months",
                       "redacted_summary"):
            batch.drop_column(column)
