from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.events import SeedProfile
from shared.reference import (
    CollaborationForm,
    FieldCode,
    Keyword,
    Language,
    OwnerType,
    PrefectureCode,
    ProfileStatus,
)


class Seed(SQLModel, table=True):
    """A technology offer, as stored."""

    id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    title: str = Field(max_length=300)
    description: str = Field(sa_column=Column(Text, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fields: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner_org: str = Field(max_length=300)
    owner_type: str = Field(max_length=40)
    prefecture: str = Field(max_length=2, index=True)
    offers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = Field(max_length=2)
    status: str = Field(default=ProfileStatus.open.value, max_length=20, index=True)
    created_at: datetime
    updated_at: datetime


class SeedCreate(BaseModel):
    """A new seed. Unknown fields are rejected."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "排熱を電気に変える柔軟な熱電変換シート",
                    "description": "低温排熱(80〜150℃)から発電できる有機熱電材料。工場配管に巻き付けて使える。",
                    "keywords": ["熱電変換", "排熱回収", "thermoelectric"],
                    "fields": ["energy", "materials"],
                    "owner_org": "北海道工業大学",
                    "owner_type": "university",
                    "prefecture": "01",
                    "offers": ["license", "joint_research"],
                    "language": "ja",
                }
            ]
        },
    )

    title: str = PydanticField(min_length=1, max_length=300)
    description: str = PydanticField(min_length=1, max_length=20000)
    keywords: list[Keyword] = PydanticField(default_factory=list, max_length=30)
    fields: list[FieldCode] = PydanticField(min_length=1, max_length=8)
    owner_org: str = PydanticField(min_length=1, max_length=300)
    owner_type: OwnerType
    prefecture: PrefectureCode
    offers: list[CollaborationForm] = PydanticField(min_length=1, max_length=6)
    language: Language = Language.ja


SeedPublic = SeedProfile
