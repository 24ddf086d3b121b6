"""Database plumbing: one engine per service, SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel, create_engine

# Keys in Session.info: set by whoever writes, read after a successful commit.
OUTBOX_ROWS = "matchnet.outbox_rows"
AFTER_COMMIT = "matchnet.after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once this session's transaction has committed (never on rollback)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class OnConflictStatement:
    """An ``INSERT … ON CONFLICT`` for SQLite and PostgreSQL, compiled once per dialect.

    SQLAlchemy builds no cache key for its dialect-specific inserts, so executing one compiles it
    every time (about 70 µs here, on every consumed event's path); the compiled form keeps the
    columns' bind and result processing.
    """

    def __init__(self, build: Callable[[str], Any], column_keys: Sequence[str]) -> None:
        self._statements = {dialect: build(dialect) for dialect in ("sqlite", "postgresql")}
        self._column_keys = list(column_keys)
        self._compiled: dict[str, Any] = {}

    def execute(self, connection: Connection, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
        """Execute with one row's parameters, or many (an executemany)."""
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._statements[dialect.name].compile(dialect=dialect, column_keys=self._column_keys)
            self._compiled[dialect.name] = compiled
        return connection.execute(compiled, parameters)


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so pysqlite must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; without it concurrent writes collapse.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: no SQLITE_BUSY on a read-to-write upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """A service's database: its engine (and, for tests, the tables to create directly)."""

    def __init__(self, url: str, tables: Sequence[type[SQLModel]] = ()) -> None:
        self.url = normalise_database_url(url)
        self.engine = make_engine(self.url)
        self.tables = list(tables)
        # Called with the outbox items a transaction wrote, after it commits (the relay takes them).
        self.outbox_listeners: list[Callable[[list[Any]], None]] = []

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def create_tables(self) -> None:
        """Create the given tables directly: for tests with ad-hoc tables. Services migrate (shared.migrations)."""
        SQLModel.metadata.create_all(self.engine, tables=[t.__table__ for t in self.tables])  # type: ignore[attr-defined]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on error.

        Objects stay readable after commit (no expire), which saves a SELECT per attribute read.
        """
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session
            outbox_rows = session.info.pop(OUTBOX_ROWS, None)
            if outbox_rows:
                for listener in self.outbox_listeners:
                    listener(outbox_rows)
            for callback in session.info.pop(AFTER_COMMIT, []):
                callback()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
