"""Need rules: who may register and read what. No HTTP, no Kafka."""

from __future__ import annotations

from shared.auth import Principal, Role
from shared.events import Envelope, EventType, NeedCreated, NeedProfile
from shared.ids import new_id
from shared.reference import Confidentiality, office_id_for
from shared.registry import now_utc

from .models import Need, NeedCreate

EVENT_SOURCE = "/matchnet/needs"


def new_need(data: NeedCreate) -> Need:
    now = now_utc()
    return Need(
        id=new_id("need"),
        title=data.title,
        description=data.description,
        keywords=list(dict.fromkeys(data.keywords)),
        fields=list(dict.fromkeys(data.fields)),
        company_name=data.company_name,
        company_size=data.company_size.value,
        prefecture=data.prefecture,
        wanted_forms=[f.value for f in dict.fromkeys(data.wanted_forms)],
        confidentiality=data.confidentiality.value,
        language=data.language.value,
        created_at=now,
        updated_at=now,
    )


def full_profile(need: Need) -> NeedProfile:
    return NeedProfile.model_validate(need, from_attributes=True)


def view_for(principal: Principal, need: Need) -> NeedProfile | None:
    """What ``principal`` may see of ``need``: the profile, one with hidden fields, or nothing.

    Admins, operators and the need's own office see everything. Other offices and partners never
    see a confidential need; partners do not see the company name of a members-level need.
    """
    if principal.role in (Role.admin, Role.operator):
        return full_profile(need)
    if principal.role == Role.office and principal.office_id == office_id_for(need.prefecture):
        return full_profile(need)
    if need.confidentiality == Confidentiality.confidential.value:
        return None
    profile = full_profile(need)
    if principal.role == Role.partner and need.confidentiality == Confidentiality.members.value:
        profile.company_name = None
    return profile


def need_created_event(need: Need) -> Envelope:
    # Internal topic: the matcher ranks on the full text and never republishes confidential text.
    return Envelope.wrap(EventType.need_created, EVENT_SOURCE, need.id, NeedCreated(need=full_profile(need)))
