"""Alembic's entry point for every service: run the revisions on the connection shared.migrations opened.

Only online migrations with a connection handed in through ``config.attributes``; the service's
revisions come from ``version_locations`` (``services/<name>/migrations``).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlmodel.sql.sqltypes import AutoString

from shared.db import UtcDateTime

config = context.config


def render_item(type_: str, obj: Any, _context: Any) -> str | Literal[False]:
    """Write the models' column types as plain SQLAlchemy types in generated revisions."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String({obj.length})" if obj.length else "sa.String()"
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False

connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    # SQLite alters tables by copying them: batch mode does that for ALTER COLUMN and constraints.
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
