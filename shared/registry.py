"""What the seeds and needs registries share: create with outbox event and idempotency, list pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from shared.auth import Principal
from shared.db import Database, UtcDateTime
from shared.events import Envelope
from shared.idempotency import find_replay, idempotency_scope, remember, request_fingerprint
from shared.outbox import record_event
from shared.reference import Keyword, Language, PrefectureCode, ProfileStatus

EntityT = TypeVar("EntityT", bound=SQLModel)


class ProfileRow(SQLModel):
    """The columns every registry profile (seed, need) has; each table adds its own."""

    id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    title: str = Field(max_length=300)
    description: str = Field(sa_type=Text, nullable=False)
    keywords: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    fields: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    prefecture: str = Field(max_length=2, index=True)
    language: str = Field(max_length=2)
    status: str = Field(default=ProfileStatus.open.value, max_length=20, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class ProfileCreate(BaseModel):
    """What every new profile states; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    title: str = PydanticField(min_length=1, max_length=300)
    description: str = PydanticField(min_length=1, max_length=20000)
    keywords: list[Keyword] = PydanticField(default_factory=list, max_length=30)
    prefecture: PrefectureCode
    language: Language = Language.ja


def now_utc() -> datetime:
    return datetime.now(UTC)


def create_idempotently(
    db: Database,
    *,
    principal: Principal,
    route: str,
    idempotency_key: str | None,
    request_body: BaseModel,
    write: Callable[[Session], tuple[dict[str, Any], str]],
) -> JSONResponse:
    """Run ``write`` (returns the 201 body and its Location) once per Idempotency-Key.

    The key's record commits with the write; a replay with the same key and body returns the
    first answer, a concurrent duplicate that loses the race replays the winner's answer.
    """
    scope = idempotency_scope(principal.key_id, route, idempotency_key) if idempotency_key else None
    fingerprint = request_fingerprint(request_body.model_dump(mode="json")) if scope else ""
    for _attempt in range(2):
        try:
            with db.session() as session:
                if scope:
                    replay = find_replay(session, scope, fingerprint)
                    if replay is not None:
                        body = json.loads(replay.response_body)
                        return JSONResponse(
                            body, status_code=replay.status_code,
                            headers={"Idempotent-Replayed": "true", "Location": f"{route}/{body['id']}"},
                        )
                body, location = write(session)
                if scope:
                    remember(session, scope, fingerprint, 201, body)
            return JSONResponse(body, status_code=201, headers={"Location": location})
        except IntegrityError:
            if not scope:
                raise
    raise RuntimeError("idempotent create did not settle")


def create_with_event(
    db: Database,
    *,
    principal: Principal,
    route: str,
    idempotency_key: str | None,
    request_body: BaseModel,
    build: Callable[[], EntityT],
    public: Callable[[EntityT], BaseModel],
    event: Callable[[EntityT], Envelope],
) -> JSONResponse:
    """Insert an entity and its event in one transaction, once per Idempotency-Key."""

    def write(session: Session) -> tuple[dict[str, Any], str]:
        entity = build()
        session.add(entity)
        record_event(session, event(entity))
        return public(entity).model_dump(mode="json"), f"{route}/{entity.id}"  # type: ignore[attr-defined]

    return create_idempotently(
        db, principal=principal, route=route, idempotency_key=idempotency_key,
        request_body=request_body, write=write,
    )


def list_rows(
    session: Session,
    model: type[EntityT],
    *,
    after_id: str | None,
    limit: int,
    filters: Sequence[Any] = (),
) -> list[EntityT]:
    """Up to ``limit + 1`` rows in id (= creation) order after the cursor."""
    id_column = col(model.id)  # type: ignore[attr-defined]
    statement = select(model).where(*filters).order_by(id_column).limit(limit + 1)
    if after_id:
        statement = statement.where(id_column > after_id)
    return list(session.exec(statement).all())


def profile_filters(model: type[ProfileRow], status: ProfileStatus | None, prefecture: str | None) -> list[Any]:
    """The list filters seeds and needs share."""
    filters: list[Any] = []
    if status is not None:
        filters.append(col(model.status) == status.value)
    if prefecture is not None:
        filters.append(col(model.prefecture) == prefecture)
    return filters
