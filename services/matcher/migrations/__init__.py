"""The matcher service's schema history (Alembic revisions; see shared/migrations.py)."""
