"""Alembic's entry point for every service: run the revisions on the connection shared.migrations opened.

Only online migrations with a connection handed in through ``config.attributes``; the service's
revisions come from ``version_locations`` (``services/<name>/migrations``).
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    # SQLite alters tables by copying them: batch mode does that for ALTER COLUMN and constraints.
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
