"""The needs service's schema history (Alembic revisions; see shared/migrations.py)."""
