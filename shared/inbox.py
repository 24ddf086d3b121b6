"""Idempotent consumers: a processed event id is recorded in the same transaction as its effect.

Invalid records are kept too (``dead_letter_event``), never silently dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, Session, SQLModel

from shared.events import Envelope


class InboxEvent(SQLModel, table=True):
    __tablename__ = "inbox_event"

    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=128)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


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


def claim_event(session: Session, envelope: Envelope) -> bool:
    """Record ``envelope`` as processed in this transaction; False if it was processed before.

    A concurrent duplicate fails the transaction on the primary key at flush or commit, so at most
    one of two racing consumers commits its effect.
    """
    if session.get(InboxEvent, envelope.id) is not None:
        return False
    session.add(InboxEvent(event_id=envelope.id, event_type=envelope.type))
    session.flush()
    return True


def was_processed(session: Session, event_id: str) -> bool:
    return session.get(InboxEvent, event_id) is not None


INBOX_TABLES: list[type[SQLModel]] = [InboxEvent, DeadLetterEvent]
