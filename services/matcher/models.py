from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class PairingRecord(SQLModel, table=True):
    """The latest proposal of one (seed, need) pair, as published."""

    __tablename__ = "pairing"

    pairing_id: str = Field(primary_key=True, max_length=64)
    seed_id: str = Field(index=True, max_length=64)
    need_id: str = Field(index=True, max_length=64)
    office_id: str = Field(max_length=16)
    score: float
    pairing: dict = Field(sa_column=Column(JSON, nullable=False))  # shared.events.Pairing as JSON
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [PairingRecord]
