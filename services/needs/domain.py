"""Need rules: who sees which need and which of its fields, what its events carry. No HTTP, no Kafka."""

from __future__ import annotations

from typing import Any

from sqlmodel import and_, col, or_

from shared.auth import Principal, Role
from shared.events import NeedProfile
from shared.reference import Confidentiality, ProfileStatus
from shared.registry import Registry, own_prefecture, owns, sees_everything

from .models import Need, NeedFields, NeedTerm

EVENT_SOURCE = "/matchnet/needs"


def full_profile(need: Need) -> NeedProfile:
    return NeedProfile.model_validate(need, from_attributes=True)


def view_for(principal: Principal, need: Need) -> NeedProfile | None:
    """What ``principal`` may see of ``need``: the profile, one with hidden fields, or nothing.

    Admins, operators and the need's own office see everything. Other offices and partners never
    see a confidential need or a draft; partners do not see the company name of a members-level need.
    """
    if sees_everything(principal) or owns(principal, need.prefecture):
        return full_profile(need)
    if need.confidentiality == Confidentiality.confidential.value or need.status == ProfileStatus.draft.value:
        return None
    profile = full_profile(need)
    if principal.role == Role.partner and need.confidentiality == Confidentiality.members.value:
        profile.company_name = None
    return profile


def visibility(principal: Principal) -> list[Any]:
    """``view_for`` as SQL conditions: which rows a reader may reach at all."""
    if sees_everything(principal):
        return []
    shared_with_network = and_(
        col(Need.confidentiality) != Confidentiality.confidential.value,
        col(Need.status) != ProfileStatus.draft.value,
    )
    own = own_prefecture(principal)
    return [or_(shared_with_network, col(Need.prefecture) == own) if own else shared_with_network]


def event_profile(need: Need) -> NeedProfile:
    """The need as events carry it: public-safe. The company name only when public; a confidential
    need's text replaced by its redacted summary (``text_redacted``): the matcher, which ranks on
    the full text, fetches it from this service with its key, so no event ever carries it.
    """
    profile = full_profile(need)
    if need.confidentiality != Confidentiality.public.value:
        profile.company_name = None
    if need.confidentiality == Confidentiality.confidential.value:
        redacted = need.redacted_summary or ""
        profile = profile.model_copy(update={
            "title": redacted, "summary": redacted, "description": redacted, "keywords": [],
            "title_translated": None, "summary_translated": None, "text_redacted": True,
        })
    return profile


NEEDS: Registry[Need] = Registry(
    kind="need",
    route="/v1/needs",
    row=Need,
    term=NeedTerm,
    fields_model=NeedFields,
    forms_field="wanted_forms",
    event_source=EVENT_SOURCE,
    view=view_for,
    visibility=visibility,
    event_profile=event_profile,
)
