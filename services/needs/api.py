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

from .domain import full_profile, need_created_event, new_need, view_for
from .models import Need, NeedCreate, NeedPublic

router = APIRouter(prefix="/v1/needs", tags=["needs"])


@router.post("", status_code=201, response_model=NeedPublic, summary="Register a need")
def create_need(
    body: NeedCreate,
    principal: CurrentPrincipal,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    check_may_register(principal, body.prefecture, "need")
    return create_with_event(
        runtime_of(request).db,
        principal=principal,
        route="/v1/needs",
        idempotency_key=idempotency_key,
        request_body=body,
        build=lambda: new_need(body),
        public=full_profile,
        event=need_created_event,
    )


@router.get("/{need_id}", response_model=NeedPublic, summary="Read a need")
def get_need(need_id: str, principal: CurrentPrincipal, request: Request) -> NeedPublic:
    with runtime_of(request).db.session() as session:
        need = session.get(Need, need_id)
        view = view_for(principal, need) if need is not None else None
        if view is None:  # hidden needs are indistinguishable from missing ones
            raise Problem(404, "Not found", f"no need {need_id}")
        return view


@router.get("", response_model=Page[NeedPublic], summary="List needs visible to the caller (cursor pagination)")
def list_needs(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    status: Annotated[ProfileStatus | None, Query()] = None,
    prefecture: Annotated[PrefectureCode | None, Query()] = None,
) -> Page[NeedPublic]:
    filters = profile_filters(Need, status, prefecture)
    with runtime_of(request).db.session() as session:
        rows = list_rows(session, Need, after_id=decode_cursor(cursor), limit=limit, filters=filters)
    # Needs the caller may not see are dropped from the page, never from the cursor's walk.
    return page_of(rows, limit, lambda shown: [v for r in shown if (v := view_for(principal, r)) is not None])
