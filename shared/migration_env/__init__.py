"""The Alembic environment every service shares (``env.py``); each service keeps its own revisions."""
