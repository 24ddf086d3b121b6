from __future__ import annotations

from pydantic import ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from shared.events import NeedProfile
from shared.reference import (
    CollaborationForm,
    CompanySize,
    Confidentiality,
    FieldCode,
)
from shared.registry import ProfileCreate, ProfileRow


class Need(ProfileRow, table=True):
    """A company's technology request, as stored."""

    company_name: str = Field(max_length=300)
    company_size: str = Field(max_length=20)
    wanted_forms: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    confidentiality: str = Field(max_length=20, index=True)


class NeedCreate(ProfileCreate):
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

    fields: list[FieldCode] = PydanticField(default_factory=list, max_length=8)
    company_name: str = PydanticField(min_length=1, max_length=300)
    company_size: CompanySize
    wanted_forms: list[CollaborationForm] = PydanticField(min_length=1, max_length=6)
    confidentiality: Confidentiality = Confidentiality.members


NeedPublic = NeedProfile

# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [Need]
