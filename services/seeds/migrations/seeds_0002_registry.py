"""The complete registry (issue 3): the seed profile's new fields, search terms, the audit trail.

Revision ID: seeds_0002
Revises: seeds_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migrations import add_common_profile_columns, backfill_terms, create_audit_table, create_term_table

revision = "seeds_0002"
down_revision = "seeds_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_common_profile_columns("seed")
    with op.batch_alter_table("seed") as batch:
        batch.add_column(sa.Column("ip_status", sa.String(40), nullable=True))
        batch.add_column(sa.Column("patent_numbers", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("trl", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("contact_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("contact_email", sa.String(254), nullable=True))
    with op.batch_alter_table("seed") as batch:
        batch.alter_column("patent_numbers", existing_type=sa.JSON(), server_default=None)
    create_term_table("seed_term")
    backfill_terms("seed", "seed_term", "offers")
    create_audit_table()


def downgrade() -> None:
    op.drop_table("audit_record")
    op.drop_table("seed_term")
    with op.batch_alter_table("seed") as batch:
        for index in ("ix_seed_external_id", "ix_seed_expires_on", "ix_seed_updated_at"):
            batch.drop_index(index)
        for column in ("external_id", "summary", "title_translated", "summary_translated", "classification_codes",
                       "expires_on", "ip_status", "patent_numbers", "trl", "contact_name", "contact_email"):
            batch.drop_column(column)
