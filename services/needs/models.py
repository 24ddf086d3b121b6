from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.events import NeedProfile
from shared.reference import (
    CollaborationForm,
    CompanySize,
    Confidentiality,
    FieldCode,
    Keyword,
    Language,
    PrefectureCode,
    ProfileStatus,
)


class Need(SQLModel, table=True):
    """A company's technology request, as stored."""

    id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    title: str = Field(max_length=300)
    description: str = Field(sa_column=Column(Text, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fields: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    company_name: str = Field(max_length=300)
    company_size: str = Field(max_length=20)
    prefecture: str = Field(max_length=2, index=True)
    wanted_forms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    confidentiality: str = Field(max_length=20, index=True)
    language: str = Field(max_length=2)
    status: str = Field(default=ProfileStatus.open.value, max_length=20, index=True)
    created_at: datetime
    updated_at: datetime


class NeedCreate(BaseModel):
    """A new need. Unknown fields are rejected."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "工場の排熱を有効活用したい",
                    "description": "鋳造工程で出る100℃前後の排熱を捨てている。電気や暖房に使えないか。",
                    "keywords": ["排熱", "省エネ"],
                    "fields": ["energy"],
                    "company_name": "札幌鋳造株式会社",
                    "company_size": "sme",
                    "prefecture": "01",
                    "wanted_forms": ["license", "joint_research"],
                    "confidentiality": "members",
                    "language": "ja",
                }
            ]
        },
    )

    title: str = PydanticField(min_length=1, max_length=300)
    description: str = PydanticField(min_length=1, max_length=20000)
    keywords: list[Keyword] = PydanticField(default_factory=list, max_length=30)
    fields: list[FieldCode] = PydanticField(default_factory=list, max_length=8)
    company_name: str = PydanticField(min_length=1, max_length=300)
    company_size: CompanySize
    prefecture: PrefectureCode
    wanted_forms: list[CollaborationForm] = PydanticField(min_length=1, max_length=6)
    confidentiality: Confidentiality = Confidentiality.members
    language: Language = Language.ja


NeedPublic = NeedProfile
