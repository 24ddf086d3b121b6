"""Schema migrations with Alembic: every service owns its history, the plumbing is here, once.

A service's revisions live in ``services/<name>/migrations/`` (files ``<name>_<NNNN>_<what>.py``,
revision ids ``<name>_<NNNN>``); the Alembic environment all of them share is
``shared/migration_env``. A service migrates its database to the newest revision when it starts
(``upgrade``); ``matchnet migrate <service>|all`` does the same from the command line.

To change a service's tables: change its models, then add the next revision to its folder
(``matchnet migrate <service> --new "what changed"`` writes one from the difference between the
models and the migrated database; check it, then commit it). ``tests/test_migrations.py`` fails
while the migrated schema and the models differ, on SQLite and PostgreSQL.

A revision is history: once merged it never changes. The helpers below that revisions call
(``create_common_tables``) are frozen with them; a later change to a common table is a new
helper called by a new revision in every service.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from shared.db import make_engine, normalise_database_url

ENVIRONMENT_DIR = Path(__file__).parent / "migration_env"
# A database created before migrations existed (tables made at start) has this table and no
# alembic_version: it holds exactly the initial revision, which is stamped before upgrading.
PRE_MIGRATION_MARKER_TABLE = "outbox_event"


def versions_dir(service: str) -> Path:
    """``services/<service>/migrations``: where the service's revisions live."""
    spec = importlib.util.find_spec(f"services.{service}.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"service {service!r} has no migrations package")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(service: str, connection: Connection | None = None,
                   tables: Sequence[type[SQLModel]] = ()) -> Config:
    """An Alembic configuration for one service's history (no alembic.ini: all of it is here)."""
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT_DIR))
    config.set_main_option("version_locations", str(versions_dir(service)))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    if tables:
        metadata = sa.MetaData()
        for table in tables:
            table.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
        config.attributes["target_metadata"] = metadata
    return config


def head_revision(service: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(service)).get_current_head()
    if head is None:
        raise LookupError(f"service {service!r} has no revisions")
    return head


def current_revision(url: str) -> str | None:
    """The revision a database is at (None: never migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(service: str, url: str, target: str = "head") -> str:
    """Migrate ``service``'s database at ``url`` to ``target``, in one transaction; returns the revision.

    Safe to run from several processes at once: PostgreSQL serialises them on an advisory lock,
    SQLite on its write lock (BEGIN IMMEDIATE), and the later ones find nothing left to do.
    """
    engine = make_engine(normalise_database_url(url))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                   {"name": f"matchnet-migrate-{service}"})
            config = alembic_config(service, connection)
            if _created_before_migrations(connection):
                base = ScriptDirectory.from_config(config).get_base()
                command.stamp(config, base or "base")
            command.upgrade(config, target)
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision or "base"


def new_revision(service: str, url: str, message: str, tables: Sequence[type[SQLModel]]) -> Path:
    """Write the next revision of ``service`` from the difference between ``tables`` and the
    database at ``url`` (migrated to head first). Returns the new file, to be read and committed."""
    upgrade(service, url)
    head = head_revision(service)
    number = int(head.rsplit("_", 1)[1]) + 1
    engine = make_engine(normalise_database_url(url))
    try:
        with engine.begin() as connection:
            config = alembic_config(service, connection, tables)
            script = command.revision(config, message, autogenerate=True, rev_id=f"{service}_{number:04d}")
    finally:
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def _created_before_migrations(connection: Connection) -> bool:
    inspector = sa.inspect(connection)
    return not inspector.has_table("alembic_version") and inspector.has_table(PRE_MIGRATION_MARKER_TABLE)


# ---- frozen helpers that revisions call ------------------------------------------------------


def timestamp_column(name: str, nullable: bool = False) -> sa.Column[datetime]:
    """A timezone-aware timestamp column, as shared.db.UtcDateTime stores it."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def create_common_tables() -> None:
    """The tables every service had in its initial revision: outbox, idempotency keys, inbox, dead letters."""
    op.create_table(
        "outbox_event",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=True),
        timestamp_column("created_at"),
        timestamp_column("published_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_outbox_event_published_at", "outbox_event", ["published_at"])
    op.create_table(
        "idempotency_record",
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        timestamp_column("created_at"),
    )
    op.create_table(
        "inbox_event",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        timestamp_column("processed_at"),
    )
    op.create_table(
        "dead_letter_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        timestamp_column("received_at"),
    )


def create_inbox_age_index() -> None:
    """The inbox's ``processed_at`` index: the hourly purge (shared/housekeeping.py) finds old ids by it."""
    op.create_index("ix_inbox_event_processed_at", "inbox_event", ["processed_at"])


def drop_common_tables() -> None:
    for table in ("dead_letter_event", "inbox_event", "idempotency_record", "outbox_event"):
        op.drop_table(table)


def create_audit_table() -> None:
    """``audit_record`` (shared.audit), as the registries' second revisions created it."""
    op.create_table(
        "audit_record",
        sa.Column("id", sa.String(64), primary_key=True),
        timestamp_column("at"),
        sa.Column("actor_key_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("actor_office_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity_type", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("version_before", sa.Integer(), nullable=True),
        sa.Column("version_after", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_record_entity_id", "audit_record", ["entity_id"])


def create_term_table(name: str) -> None:
    """A registry's search-term table (shared.registry.ProfileTermRow)."""
    op.create_table(
        name,
        sa.Column("profile_id", sa.String(64), primary_key=True),
        sa.Column("term", sa.String(64), primary_key=True),
    )
    op.create_index(f"ix_{name}_term", name, ["term"])


def add_common_profile_columns(table: str) -> None:
    """The profile columns issue 3 added to ``seed`` and ``need``; existing rows get a summary cut from
    their description and empty code lists (the API asks for the rest when they are next edited)."""
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("external_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch.add_column(sa.Column("title_translated", sa.String(300), nullable=True))
        batch.add_column(sa.Column("summary_translated", sa.Text(), nullable=True))
        batch.add_column(sa.Column("classification_codes", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("expires_on", sa.Date(), nullable=True))
    op.execute(sa.text(f"UPDATE {table} SET summary = substr(description, 1, 2000)"))
    with op.batch_alter_table(table) as batch:
        batch.alter_column("summary", existing_type=sa.Text(), nullable=False)
        batch.alter_column("classification_codes", existing_type=sa.JSON(), server_default=None)
        batch.create_index(f"ix_{table}_external_id", ["external_id"])
        batch.create_index(f"ix_{table}_expires_on", ["expires_on"])
        batch.create_index(f"ix_{table}_updated_at", ["updated_at"])


def backfill_terms(table: str, term_table: str, forms_column: str) -> None:
    """Index the rows a table already holds (search terms with today's shared.search)."""
    from shared.search import document_terms, facet_term

    def as_list(value: object) -> list[str]:
        loaded = json.loads(value) if isinstance(value, str) else value
        return [str(item) for item in loaded] if isinstance(loaded, list) else []

    connection = op.get_bind()
    rows = connection.execute(sa.text(
        f"SELECT id, title, summary, description, keywords, fields, {forms_column} AS forms FROM {table}"
    )).mappings().all()
    terms_table = sa.table(term_table, sa.column("profile_id"), sa.column("term"))
    for row in rows:
        terms = document_terms([row["title"], row["summary"], row["description"], *as_list(row["keywords"])])
        terms.update(facet_term("field", code) for code in as_list(row["fields"]))
        terms.update(facet_term("form", form) for form in as_list(row["forms"]))
        if terms:
            connection.execute(terms_table.insert(), [{"profile_id": row["id"], "term": t} for t in sorted(terms)])


def create_api_key_table() -> None:
    """``api_key`` (shared.auth.ApiKey): the key registry in notifications, a replica in every other service."""
    op.create_table(
        "api_key",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("office_id", sa.String(64), nullable=True),
        sa.Column("partner_id", sa.String(100), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        timestamp_column("created_at"),
        timestamp_column("revoked_at", nullable=True),
    )
    op.create_index("ix_api_key_role", "api_key", ["role"])
    op.create_index("ix_api_key_revoked_at", "api_key", ["revoked_at"])
