from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from shared.auth import CurrentPrincipal
from shared.pagination import Page
from shared.reference import CollaborationForm, OwnerType, ProfileStatus
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

from .domain import SEEDS
from .models import SEED_EXAMPLE, Seed, SeedCreate, SeedPublic, SeedUpdate

router = APIRouter(prefix="/v1/seeds", tags=["seeds"])

SeedId = Annotated[str, Path(description="The seed's id.", examples=["seed_0193a1b2c3d4e5f60718293a4b5c"])]
WITH_ETAG = {"description": "The seed; the ETag header carries its version.",
             "headers": {"ETag": {"description": 'The version, e.g. "3": send it as If-Match to change the seed.',
                                  "schema": {"type": "string"}}}}


@router.post(
    "", status_code=201, response_model=SeedPublic, summary="Register a seed",
    description="An admin, or the office of the seed's prefecture, registers a seed. Emits "
    "`jp.matchnet.seed.created.v1`. With `Idempotency-Key` a retry returns the first answer "
    "(`Idempotent-Replayed: true`) instead of registering twice.",
    responses={201: WITH_ETAG, 403: {"description": "Not an admin or the office of this prefecture."},
               422: {"description": "A field is invalid; the problem names it."}},
)
def create_seed(
    body: SeedCreate, principal: CurrentPrincipal, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return create_profile(runtime_of(request).db, SEEDS, principal, body, idempotency_key)


@router.get(
    "/{seed_id}", response_model=SeedPublic, summary="Read a seed",
    description="Any key reads a seed; a draft only admins, operators and its own office see (others get 404).",
    responses={200: WITH_ETAG, 404: {"description": "No such seed, or a draft of another office."}},
)
def get_seed(seed_id: SeedId, principal: CurrentPrincipal, request: Request) -> JSONResponse:
    return read_profile(runtime_of(request).db, SEEDS, principal, seed_id)


@router.patch(
    "/{seed_id}", response_model=SeedPublic, summary="Change some fields of a seed",
    description="JSON merge patch (`application/json` or `application/merge-patch+json`): the fields sent "
    "replace the stored ones, `null` clears an optional one; the result must be a valid seed. Requires "
    "`If-Match`. Emits `jp.matchnet.seed.updated.v1` with the changed fields (nothing if nothing changed). "
    "The status changes through `POST /v1/seeds/{id}/status`.",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 409: {"description": "The seed is withdrawn."},
               422: {"description": "The merged seed is invalid; the problem names the field."}},
)
def update_seed(
    seed_id: SeedId, body: SeedUpdate, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    return update_profile(runtime_of(request).db, SEEDS, principal, seed_id, if_match, body)


@router.post(
    "/{seed_id}/status", response_model=SeedPublic, summary="Change a seed's status",
    description="Legal transitions: draft → open | withdrawn; open → paused | closed | withdrawn; "
    "paused → open | closed | withdrawn; closed → open | withdrawn; expired → open (with a future "
    "`expires_on`) | closed | withdrawn; withdrawn is final. Anything else is 409 with the reason. "
    "Requires `If-Match`. Emits `jp.matchnet.seed.status_changed.v1` (or `.withdrawn.v1`).",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 409: {"description": "Not a legal transition."}},
)
def change_seed_status(
    seed_id: SeedId, body: StatusChange, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None
) -> JSONResponse:
    return change_status(runtime_of(request).db, SEEDS, principal, seed_id, if_match, body.status, body.reason)


@router.delete(
    "/{seed_id}", response_model=SeedPublic, summary="Withdraw a seed",
    description="Nothing is deleted: the seed becomes `withdrawn` (final) and stays readable, as do its "
    "pairings. Requires `If-Match`. Emits `jp.matchnet.seed.withdrawn.v1`.",
    responses={200: WITH_ETAG, **CONCURRENCY_RESPONSES, 409: {"description": "Already withdrawn."}},
)
def withdraw_seed(
    seed_id: SeedId, principal: CurrentPrincipal, request: Request, if_match: IfMatch = None,
    reason: Annotated[str | None, Query(max_length=500, description="Why, in a sentence.",
                                        examples=["技術移転が完了したため"])] = None,
) -> JSONResponse:
    return change_status(runtime_of(request).db, SEEDS, principal, seed_id, if_match, ProfileStatus.withdrawn, reason)


@router.get(
    "", response_model=Page[SeedPublic], summary="List and search seeds",
    description="Filters combine with AND; a repeated parameter means any of its values. `q` searches "
    "title, summary, their translations, description and keywords (Japanese by character bigrams, "
    "English by words). Cursor pagination: pass `next_cursor` back as `cursor` with the same sort.",
)
def list_seeds(
    principal: CurrentPrincipal,
    request: Request,
    params: Annotated[ProfileListParams, Depends()],
    owner_type: Annotated[list[OwnerType] | None, Query(description="Any of these owner types.",
                                                        examples=[["university"]])] = None,
    offers: Annotated[list[CollaborationForm] | None, Query(description="Offers any of these forms.",
                                                            examples=[["license"]])] = None,
) -> Page[SeedPublic]:
    conditions = [Seed.owner_type.in_([t.value for t in owner_type])] if owner_type else []  # type: ignore[attr-defined]
    return list_profiles(runtime_of(request).db, SEEDS, principal, params, forms=offers, conditions=conditions)


@router.post(":import", **import_route("seed", SEED_EXAMPLE))
async def import_seeds(principal: CurrentPrincipal, request: Request) -> ImportResult:
    return await import_request(request, runtime_of(request).db, SEEDS, SeedCreate, principal)
