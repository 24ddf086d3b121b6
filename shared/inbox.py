"""Idempotent consumers: a processed event id is recorded in the same transaction as its effect.

Invalid records are kept too (``dead_letter_event``), never silently dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, Session, SQLModel

from shared.db import OnConflictStatement
from shared.events import Envelope


class InboxEvent(SQLModel, table=True):
    __tablename__ = "inbox_event"

    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=128)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)  # the purge's key


class DeadLetterEvent(SQLModel, table=True):
    """A record this service could not parse as a known event: kept for an operator to inspect."""

    __tablename__ = "dead_letter_event"

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=128)
    partition: int
    offset: int
    key: str | None = Field(default=None, sa_column=Column(Text))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    value: str | None = Field(default=None, sa_column=Column(Text))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


_INBOX = InboxEvent.__table__  # type: ignore[attr-defined]
# RETURNING tells whether the row was new (rowcount is not reliable for ON CONFLICT across drivers).
_CLAIM = OnConflictStatement(
    lambda dialect: (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_INBOX)
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(_INBOX.c.event_id),
    column_keys=["event_id", "event_type", "processed_at"],
)


def claim_event(session: Session, envelope: Envelope) -> bool:
    """Record ``envelope`` as processed in this transaction; False if it was processed before.

    One statement, ``INSERT … ON CONFLICT DO NOTHING``: a racing duplicate waits for the first
    transaction and then inserts nothing, so at most one of two consumers commits its effect.
    """
    values = {"event_id": envelope.id, "event_type": envelope.type, "processed_at": datetime.now(UTC)}
    return _CLAIM.execute(session.connection(), values).first() is not None


INBOX_TABLES: list[type[SQLModel]] = [InboxEvent, DeadLetterEvent]
