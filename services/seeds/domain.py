"""Seed rules: no HTTP, no Kafka."""

from __future__ import annotations

from shared.auth import Principal, Role
from shared.errors import Problem
from shared.events import Envelope, EventType, SeedCreated, SeedProfile
from shared.ids import new_id
from shared.reference import office_id_for
from shared.registry import now_utc

from .models import Seed, SeedCreate

EVENT_SOURCE = "/matchnet/seeds"


def check_may_register(principal: Principal, prefecture: str) -> None:
    """Admins register anywhere; an office registers the seeds of its own prefecture."""
    if principal.role == Role.admin:
        return
    if principal.role == Role.office and principal.office_id == office_id_for(prefecture):
        return
    raise Problem(403, "Forbidden", "only an admin or the office of the seed's prefecture may register it")


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
