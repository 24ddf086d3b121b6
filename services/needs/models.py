from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, ValidationInfo, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Text
from sqlmodel import Field, SQLModel

from shared.audit import AuditRecord
from shared.events import NeedProfile
from shared.reference import (
    CollaborationForm,
    CompanySize,
    Confidentiality,
    IndustryCode,
    ProfileStatus,
)
from shared.registry import (
    InitialStatus,
    ProfileFields,
    ProfileRow,
    ProfileTermRow,
    ProfileUpdate,
    unique,
    update_schema,
)
from shared.search import normalise


class Need(ProfileRow, table=True):
    """A company's technology request, as stored."""

    company_name: str = Field(max_length=300)
    company_size: str = Field(max_length=20)
    industry: str | None = Field(default=None, max_length=1)
    wanted_forms: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    budget_min_jpy: int | None = Field(default=None, sa_type=BigInteger)
    budget_max_jpy: int | None = Field(default=None, sa_type=BigInteger)
    timeline_months: int | None = None
    confidentiality: str = Field(max_length=20, index=True)
    redacted_summary: str | None = Field(default=None, sa_type=Text)


class NeedTerm(ProfileTermRow, table=True):
    """A search or facet term of a need."""

    __tablename__ = "need_term"


NEED_EXAMPLE: dict[str, Any] = {
    "external_id": "SAPPORO-N-0042",
    "language": "ja",
    "title": "工場の排熱を有効活用したい",
    "summary": "鋳造工程で出る100℃前後の排熱を捨てている。設備を大きく変えずに電気や暖房に回したい。",
    "title_translated": "Put our factory's waste heat to use",
    "description": "鋳物工場の溶解炉や冷却工程から出る熱を、いまはそのまま外に捨てている。燃料代が上がっているので、"
    "少しでも電気や暖房に回せないか考えている。今ある配管やダクトに後から付けられるものが望ましい。",
    "keywords": ["排熱", "省エネ"],
    "fields": ["energy"],
    "company_name": "札幌鋳造株式会社",
    "company_size": "sme",
    "industry": "E",
    "prefecture": "01",
    "wanted_forms": ["license", "joint_research"],
    "budget_min_jpy": 1_000_000,
    "budget_max_jpy": 5_000_000,
    "timeline_months": 12,
    "confidentiality": "members",
    "status": "open",
    "expires_on": "2027-03-31",
}


class NeedFields(ProfileFields):
    """Every editable field of a need."""

    company_name: str = PydanticField(min_length=1, max_length=300, description="Hidden by confidentiality.")
    company_size: CompanySize = PydanticField(description="sme, large or venture.")
    industry: IndustryCode = PydanticField(description="JSIC major group letter A..T.")
    wanted_forms: Annotated[list[CollaborationForm], AfterValidator(unique)] = PydanticField(
        min_length=1, max_length=6, description="The collaboration forms the company wants."
    )
    budget_min_jpy: int | None = PydanticField(None, ge=0, description="Budget range in yen (optional).")
    budget_max_jpy: int | None = PydanticField(None, ge=0, validate_default=True,
                                               description="Upper end of the budget range, yen.")
    timeline_months: int | None = PydanticField(None, ge=1, le=120, description="Months for the collaboration.")
    confidentiality: Confidentiality = PydanticField(
        Confidentiality.members, description="public: anyone; members: offices and partners (company name "
        "hidden from partners); confidential: only the owning office, admins and operators.",
    )
    redacted_summary: str | None = PydanticField(
        None, min_length=1, max_length=1000, validate_default=True,
        description="Required when confidential: the office's summary, revealing neither company nor specifics.",
        examples=["北海道の製造業者が、工程の排熱を電力に変える技術を探している。"],
    )

    @field_validator("budget_max_jpy")
    @classmethod
    def _budget_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("budget_min_jpy")
        if value is not None and low is not None and value < low:
            raise ValueError("must not be below budget_min_jpy")
        return value

    @field_validator("redacted_summary")
    @classmethod
    def _redacted_when_confidential(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("confidentiality") == Confidentiality.confidential and not value:
            raise ValueError("required when confidentiality is confidential")
        company = info.data.get("company_name")
        if value and company and normalise(company) in normalise(value):
            raise ValueError("must not name the company")
        return value


class NeedCreate(NeedFields):
    """A new need. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [NEED_EXAMPLE]})

    status: InitialStatus = PydanticField(
        ProfileStatus.open, description="Starting status (default open; any but expired)."
    )


class NeedUpdate(ProfileUpdate):
    """A partial update of a need (JSON merge patch); the result must be a valid need."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=update_schema(NeedFields, {
            "confidentiality": "confidential", "redacted_summary": "北海道の製造業者が排熱の活用技術を探している。"
        }),
    )

    company_name: str | None = PydanticField(None, min_length=1, max_length=300)
    company_size: CompanySize | None = None
    industry: IndustryCode | None = None
    wanted_forms: list[CollaborationForm] | None = PydanticField(None, min_length=1, max_length=6)
    budget_min_jpy: int | None = PydanticField(None, ge=0)
    budget_max_jpy: int | None = PydanticField(None, ge=0)
    timeline_months: int | None = PydanticField(None, ge=1, le=120)
    confidentiality: Confidentiality | None = None
    redacted_summary: str | None = PydanticField(None, min_length=1, max_length=1000)


NeedPublic = NeedProfile

# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [Need, NeedTerm, AuditRecord]
