from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from shared.auth import CurrentPrincipal, check_may_register
from shared.errors import Problem
from shared.pagination import Cursor, Page, PageSize, decode_cursor, page_of
from shared.reference import PrefectureCode, ProfileStatus
from shared.registry import create_with_event, list_rows, profile_filters
from shared.service import runtime_of

from .domain import new_seed, profile_of, seed_created_event
from .models import Seed, SeedCreate, SeedPublic

router = APIRouter(prefix="/v1/seeds", tags=["seeds"])


@router.post("", status_code=201, response_model=SeedPublic, summary="Register a seed")
def create_seed(
    body: SeedCreate,
    principal: CurrentPrincipal,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    check_may_register(principal, body.prefecture, "seed")
    return create_with_event(
        runtime_of(request).db,
        principal=principal,
        route="/v1/seeds",
        idempotency_key=idempotency_key,
        request_body=body,
        build=lambda: new_seed(body),
        public=profile_of,
        event=seed_created_event,
    )


@router.get("/{seed_id}", response_model=SeedPublic, summary="Read a seed")
def get_seed(seed_id: str, principal: CurrentPrincipal, request: Request) -> SeedPublic:
    with runtime_of(request).db.session() as session:
        seed = session.get(Seed, seed_id)
        if seed is None:
            raise Problem(404, "Not found", f"no seed {seed_id}")
        return profile_of(seed)


@router.get("", response_model=Page[SeedPublic], summary="List seeds (cursor pagination)")
def list_seeds(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    status: Annotated[ProfileStatus | None, Query()] = None,
    prefecture: Annotated[PrefectureCode | None, Query()] = None,
) -> Page[SeedPublic]:
    filters = profile_filters(Seed, status, prefecture)
    with runtime_of(request).db.session() as session:
        rows = list_rows(session, Seed, after_id=decode_cursor(cursor), limit=limit, filters=filters)
        return page_of(rows, limit, lambda shown: [profile_of(r) for r in shown])
