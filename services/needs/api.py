from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from shared.auth import CurrentPrincipal
from shared.pagination import Page
from shared.reference import CollaborationForm, CompanySize, ProfileStatus
from shared.registry import (
    CONCURRENCY_RESPONSES,
    IdempotencyKey,
    IfMatch,
    ProfileListParams,
    StatusChange,
    change_status,
    create_profile,
    list_profiles,
    read_profile,
    update_profile,
)
from shared.registry_import import ImportResult, import_request, import_route
from shared.service import runtime_of

from .domain import NEEDS
from .models import NEED_EXAMPLE, Need, NeedCreate, NeedPublic, NeedUpdate

router = APIRouter(prefix="/v1/needs", tags=["needs"])

NeedId = Annotated[str, Path(description="The need's id.", examples=["need_0193a1b2c3d4e5f60718293a4b5c"])]
WITH_ETAG = {"description": "The need as the caller may see it; the ETag header carries its version.",
             "headers": {"ETag": {"description": 'The version, e.g. "3": send it as If-Match to change the need.',
                                  "schema": {"type": "string"}}}}
HIDDEN = "No such need, or one the caller may not see (another office's confidential need or draft)."


@router.post(
    "", status_code=201, response_model=NeedPublic, summary="Register a need",
    description="An admin, or the office of the need's prefecture, registers a need. A confidential need "
    "needs a `redacted_summary` (which must not name the company). Emits `jp.matchnet.need.created.v1`. "
    "With `Idempotency-Key` a retry returns the first answer (`Idempotent-Replayed: true`).",
    responses={201: WITH_ETAG, 403: {"description": "Not an admin or the office of this prefecture."},
               422: {"description": "A field is invalid; the problem names it."}},
)
def create_need(
    body: NeedCreate, principal: CurrentPrincipal, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return create_profile(runtime_of(request).db, NEEDS, principal, body, idempotency_key)


@router.get(
    "/{need_id}", response_model=NeedPublic, summary="Read a need",
    description="Admins, operators and the need's own office see all of it. Other offices and partners see "
    "public and members-level needs that are not drafts; partners without the company name of a "
    "members-level need. A confidential need of another office is reported as missing.",
    responses={200: WITH_ETAG, 404: {"description": HIDDEN}},
)
def get_need(need_id: NeedId, principal: CurrentPrincipal, request: Request) -> JSONResponse:
    return read_profile(runtime_of(request).db, NEEDS, principal, need_id)


@router.patch(
    "/{need_id}", response_model=NeedPublic, summary="Change some fields of a need",
    description="JSON merge patch (`application/json` or `application/merge-patch+json`): the fields sent "
    "replace the stored ones, `null` clears an optional one; the result must be a valid need (making it "
    "confidential needs a `redacted_summary`). Requires `If-Match`. Emits `jp.matchnet.need.updated.v1` "
    "with the changed fields. The status changes through `POST /v1/needs/{id}/status`.",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 404: {"description": HIDDEN},
               409: {"description": "The need is withdrawn."},
               422: {"description": "The merged need is invalid; the problem names the field."}},
)
def update_need(
    need_id: NeedId, body: NeedUpdate, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    return update_profile(runtime_of(request).db, NEEDS, principal, need_id, if_match, body)


@router.post(
    "/{need_id}/status", response_model=NeedPublic, summary="Change a need's status",
    description="Legal transitions: draft → open | withdrawn; open → paused | closed | withdrawn; "
    "paused → open | closed | withdrawn; closed → open | withdrawn; expired → open (with a future "
    "`expires_on`) | closed | withdrawn; withdrawn is final. Anything else is 409 with the reason. "
    "Requires `If-Match`. Emits `jp.matchnet.need.status_changed.v1` (or `.withdrawn.v1`).",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 404: {"description": HIDDEN},
               409: {"description": "Not a legal transition."}},
)
def change_need_status(
    need_id: NeedId, body: StatusChange, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    return change_status(runtime_of(request).db, NEEDS, principal, need_id, if_match, body.status, body.reason)


@router.delete(
    "/{need_id}", response_model=NeedPublic, summary="Withdraw a need",
    description="Nothing is deleted: the need becomes `withdrawn` (final) and stays readable to those who "
    "may see it. Requires `If-Match`. Emits `jp.matchnet.need.withdrawn.v1`.",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 404: {"description": HIDDEN},
               409: {"description": "Already withdrawn."}},
)
def withdraw_need(
    need_id: NeedId, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None,
    reason: Annotated[str | None, Query(max_length=500, description="Why, in a sentence.",
                                        examples=["社内で解決したため"])] = None,
) -> JSONResponse:
    return change_status(runtime_of(request).db, NEEDS, principal, need_id, if_match, ProfileStatus.withdrawn, reason)


@router.get(
    "", response_model=Page[NeedPublic], summary="List and search the needs the caller may see",
    description="Filters combine with AND; a repeated parameter means any of its values. `q` searches "
    "title, summary, their translations, description and keywords (Japanese by character bigrams, "
    "English by words) of the needs the caller may see, and nothing else: hidden needs are never matched, "
    "counted or filtered on. Cursor pagination: pass `next_cursor` back as `cursor` with the same sort.",
)
def list_needs(
    principal: CurrentPrincipal,
    request: Request,
    params: Annotated[ProfileListParams, Depends()],
    company_size: Annotated[list[CompanySize] | None, Query(description="Any of these company sizes.",
                                                            examples=[["sme"]])] = None,
    wanted_forms: Annotated[list[CollaborationForm] | None, Query(description="Wants any of these forms.",
                                                                  examples=[["joint_research"]])] = None,
) -> Page[NeedPublic]:
    conditions = [Need.company_size.in_([s.value for s in company_size])] if company_size else []  # type: ignore[attr-defined]
    return list_profiles(runtime_of(request).db, NEEDS, principal, params, forms=wanted_forms, conditions=conditions)


@router.post(":import", **import_route("need", NEED_EXAMPLE))
async def import_needs(principal: CurrentPrincipal, request: Request) -> ImportResult:
    return await import_request(request, runtime_of(request).db, NEEDS, NeedCreate, principal)
