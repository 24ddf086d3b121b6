from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.db import UtcDateTime
from shared.events import Pairing


class PairingRecord(SQLModel, table=True):
    """One (seed, need) pair: its place in its need's and its seed's top lists, as last published, and
    the coordinators' verdict. A pair in neither list is deleted unless dismissed (then it stays, so
    it is never ranked again)."""

    __tablename__ = "pairing"

    pairing_id: str = Field(primary_key=True, max_length=64)
    seed_id: str = Field(index=True, max_length=64)
    need_id: str = Field(index=True, max_length=64)
    office_id: str = Field(max_length=16)  # the need's office
    seed_office_id: str | None = Field(default=None, max_length=16)
    score: float
    pairing: dict = Field(sa_column=Column(JSON, nullable=False))  # shared.events.Pairing as JSON
    in_need_list: bool = False  # in its need's top list (a list is ordered by score)
    in_seed_list: bool = False  # in its seed's top list
    verdict: str | None = Field(default=None, max_length=16)  # accepted | dismissed
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class PairingFeedback(SQLModel, table=True):
    """Every verdict a coordinator gave on a pairing (the pairing keeps the latest)."""

    __tablename__ = "pairing_feedback"

    id: str = Field(primary_key=True, max_length=64)
    pairing_id: str = Field(index=True, max_length=64)
    seed_id: str = Field(max_length=64)
    need_id: str = Field(max_length=64)
    verdict: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    given_by_key_id: str = Field(max_length=64)
    given_by_office_id: str | None = Field(default=None, max_length=16)
    given_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


Verdict = Literal["accepted", "dismissed"]


class FeedbackCreate(BaseModel):
    """A coordinator's verdict on a pairing. ``dismissed`` is final: the pair is never proposed again."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"verdict": "dismissed", "reason": "同じ企業と既に共同研究中 / already working with this company"},
            {"verdict": "accepted", "reason": "紹介を進める"},
        ]},
    )

    verdict: Verdict
    reason: str | None = PydanticField(None, max_length=1000, description="Why, in a sentence or two.")


class FeedbackPublic(BaseModel):
    id: str
    pairing_id: str
    seed_id: str
    need_id: str
    verdict: Verdict
    reason: str | None
    given_by_key_id: str
    given_by_office_id: str | None
    given_at: datetime


class RankedPairing(Pairing):
    """A pairing in a list, with the coordinators' latest verdict."""

    verdict: Verdict | None = None


# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [PairingRecord, PairingFeedback]
