from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from shared.audit import AuditRecord
from shared.events import SeedProfile
from shared.reference import (
    CollaborationForm,
    EmailAddress,
    IpStatus,
    OwnerType,
    PatentNumber,
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


class Seed(ProfileRow, table=True):
    """A technology offer, as stored."""

    owner_org: str = Field(max_length=300)
    owner_type: str = Field(max_length=40)
    ip_status: str | None = Field(default=None, max_length=40)
    patent_numbers: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    offers: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    trl: int | None = None
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, max_length=254)


class SeedTerm(ProfileTermRow, table=True):
    """A search or facet term of a seed."""

    __tablename__ = "seed_term"


SEED_EXAMPLE: dict[str, Any] = {
    "external_id": "HIT-2024-017",
    "language": "ja",
    "title": "排熱を電気に変える柔軟な熱電変換シート",
    "summary": "80〜150℃の低温排熱から発電できる有機熱電シート。工場の配管に巻き付けるだけで、"
    "無線センサの電源や補助電力を賄える。",
    "title_translated": "Flexible thermoelectric sheet that turns low-temperature waste heat into power",
    "summary_translated": "An organic thermoelectric sheet that generates power from 80-150 °C waste heat "
    "when wrapped around factory pipes.",
    "description": "導電性高分子と無機ナノ粒子を複合化した熱電材料を印刷でシート状に成形した。"
    "曲面の配管に巻き付けられ、外気との温度差から直接発電する。",
    "keywords": ["熱電変換", "排熱回収", "thermoelectric"],
    "fields": ["energy", "materials"],
    "classification_codes": ["H10N 10/856"],
    "owner_org": "北海道工業大学",
    "owner_type": "university",
    "prefecture": "01",
    "ip_status": "patent_application",
    "patent_numbers": ["特願2024-012345"],
    "offers": ["license", "joint_research"],
    "trl": 4,
    "contact_name": "産学連携推進本部 山田 花子",
    "contact_email": "sangaku@example.ac.jp",
    "status": "open",
    "expires_on": "2027-03-31",
}


class SeedFields(ProfileFields):
    """Every editable field of a seed."""

    owner_org: str = PydanticField(min_length=1, max_length=300, description="The organisation offering it.")
    owner_type: OwnerType = PydanticField(description="university, kosen, national_lab, "
                                          "public_research_institute (公設試), company or tlo.")
    ip_status: IpStatus = PydanticField(description="The kind of IP behind the seed.")
    patent_numbers: Annotated[list[PatentNumber], AfterValidator(unique)] = PydanticField(
        default_factory=list, max_length=20, description="Patent or application numbers, as written.",
        examples=[["特許第7123456号", "特願2023-123456"]],
    )
    offers: Annotated[list[CollaborationForm], AfterValidator(unique)] = PydanticField(
        min_length=1, max_length=6, description="The collaboration forms on offer."
    )
    trl: int = PydanticField(ge=1, le=9, description="Technology readiness level 1..9.")
    contact_name: str = PydanticField(min_length=1, max_length=200,
                                      description="The responsible coordinator or office.")
    contact_email: EmailAddress = PydanticField(description="Where a company writes about the seed.")


class SeedCreate(SeedFields):
    """A new seed. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SEED_EXAMPLE]})

    status: InitialStatus = PydanticField(
        ProfileStatus.open, description="Starting status (default open; any but expired)."
    )


class SeedUpdate(ProfileUpdate):
    """A partial update of a seed (JSON merge patch); the result must be a valid seed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=update_schema(SeedFields, {"trl": 5, "expires_on": "2028-03-31", "offers": ["license"]}),
    )

    owner_org: str | None = PydanticField(None, min_length=1, max_length=300)
    owner_type: OwnerType | None = None
    ip_status: IpStatus | None = None
    patent_numbers: list[PatentNumber] | None = PydanticField(None, max_length=20)
    offers: list[CollaborationForm] | None = PydanticField(None, min_length=1, max_length=6)
    trl: int | None = PydanticField(None, ge=1, le=9)
    contact_name: str | None = PydanticField(None, min_length=1, max_length=200)
    contact_email: EmailAddress | None = None


SeedPublic = SeedProfile

# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [Seed, SeedTerm, AuditRecord]
