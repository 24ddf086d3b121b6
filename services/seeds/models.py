from __future__ import annotations

from pydantic import ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from shared.events import SeedProfile
from shared.reference import (
    CollaborationForm,
    FieldCode,
    OwnerType,
)
from shared.registry import ProfileCreate, ProfileRow


class Seed(ProfileRow, table=True):
    """A technology offer, as stored."""

    owner_org: str = Field(max_length=300)
    owner_type: str = Field(max_length=40)
    offers: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)


class SeedCreate(ProfileCreate):
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

    fields: list[FieldCode] = PydanticField(min_length=1, max_length=8)
    owner_org: str = PydanticField(min_length=1, max_length=300)
    owner_type: OwnerType
    offers: list[CollaborationForm] = PydanticField(min_length=1, max_length=6)


SeedPublic = SeedProfile

# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [Seed]
