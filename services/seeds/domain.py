"""Seed rules: no HTTP, no Kafka."""

from __future__ import annotations

from shared.events import Envelope, EventType, SeedCreated, SeedProfile
from shared.ids import new_id
from shared.registry import now_utc

from .models import Seed, SeedCreate

EVENT_SOURCE = "/matchnet/seeds"


def new_seed(data: SeedCreate) -> Seed:
    now = now_utc()
    return Seed(
        id=new_id("seed"),
        title=data.title,
        description=data.description,
        keywords=list(dict.fromkeys(data.keywords)),
        fields=list(dict.fromkeys(data.fields)),
        owner_org=data.owner_org,
        owner_type=data.owner_type.value,
        prefecture=data.prefecture,
        offers=[o.value for o in dict.fromkeys(data.offers)],
        language=data.language.value,
        created_at=now,
        updated_at=now,
    )


def profile_of(seed: Seed) -> SeedProfile:
    return SeedProfile.model_validate(seed, from_attributes=True)


def seed_created_event(seed: Seed) -> Envelope:
    return Envelope.wrap(EventType.seed_created, EVENT_SOURCE, seed.id, SeedCreated(seed=profile_of(seed)))
