"""Seed rules: who sees which seed, what its events carry. No HTTP, no Kafka."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, or_

from shared.auth import Principal
from shared.events import SeedProfile
from shared.reference import ProfileStatus
from shared.registry import Registry, own_prefecture, owns, sees_everything

from .models import Seed, SeedFields, SeedTerm

EVENT_SOURCE = "/matchnet/seeds"


def profile_of(seed: Seed) -> SeedProfile:
    return SeedProfile.model_validate(seed, from_attributes=True)


def view_for(principal: Principal, seed: Seed) -> SeedProfile | None:
    """Seeds are public, except drafts: those only admins, operators and the seed's own office see."""
    if seed.status != ProfileStatus.draft.value or sees_everything(principal) or owns(principal, seed.prefecture):
        return profile_of(seed)
    return None


def visibility(principal: Principal) -> list[Any]:
    """``view_for`` as SQL conditions."""
    if sees_everything(principal):
        return []
    published = col(Seed.status) != ProfileStatus.draft.value
    own = own_prefecture(principal)
    return [or_(published, col(Seed.prefecture) == own) if own else published]


SEEDS: Registry[Seed] = Registry(
    kind="seed",
    route="/v1/seeds",
    row=Seed,
    term=SeedTerm,
    fields_model=SeedFields,
    forms_field="offers",
    event_source=EVENT_SOURCE,
    view=view_for,
    visibility=visibility,
    event_profile=profile_of,  # nothing about a seed is confidential
)
