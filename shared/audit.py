"""The audit trail of a registry: who changed what, when, from which version to which.

One record per change, written in the change's own transaction (so the trail and the data never
disagree), readable by admins and operators at ``GET /v1/audit``. Records name the profile and the
fields that changed, never their values: the trail leaks no text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON
from sqlmodel import Field, Session, SQLModel, col, select

from shared.auth import CurrentPrincipal, Principal, Role, require_role
from shared.db import UtcDateTime
from shared.events import ProfileAction
from shared.ids import new_id
from shared.pagination import Cursor, Page, PageSize, decode_cursor, page_of
from shared.service import runtime_of

# The registry's own jobs (the expiry sweep) act as this principal.
SYSTEM_KEY_ID = "system:expiry-sweep"
SYSTEM_ROLE = "system"


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_record"

    id: str = Field(primary_key=True, max_length=64)  # time-ordered: the trail's order
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    actor_key_id: str = Field(max_length=100)
    actor_role: str = Field(max_length=20)
    actor_office_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=40)
    entity_type: str = Field(max_length=20)
    entity_id: str = Field(max_length=64, index=True)
    version_before: int | None = None
    version_after: int
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)


_INSERT_AUDIT = AuditRecord.__table__.insert()  # type: ignore[attr-defined]


def record_audit(
    session: Session,
    principal: Principal | None,
    action: ProfileAction,
    entity_type: str,
    entity_id: str,
    version_before: int | None,
    version_after: int,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit record in the caller's transaction; ``principal`` None is the registry itself.

    A Core insert: nothing reads the record back in its transaction, and an ORM object would cost
    a unit-of-work flush on the path of every registration and change.
    """
    session.connection().execute(_INSERT_AUDIT, {
        "id": new_id("audit"),
        "at": datetime.now(UTC),
        "actor_key_id": principal.key_id if principal else SYSTEM_KEY_ID,
        "actor_role": principal.role.value if principal else SYSTEM_ROLE,
        "actor_office_id": principal.office_id if principal else None,
        "action": action.value,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version_before": version_before,
        "version_after": version_after,
        "details": details or {},
    })


class AuditEntry(BaseModel):
    """One change: who made it (API key id and role), what, when, and the versions before and after."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "audit_0193a1b2c3d4e5f60718293a4b5c", "at": "2026-11-26T09:30:00Z",
                    "actor_key_id": "3f9a1c2b7d4e8a01", "actor_role": "office", "actor_office_id": "office-01",
                    "action": "status_changed", "entity_type": "seed",
                    "entity_id": "seed_0193a1b2c3d4e5f60718293a4b5c", "version_before": 2, "version_after": 3,
                    "details": {"from_status": "open", "to_status": "paused", "reason": "共同研究先と交渉中"},
                }
            ]
        },
    )

    id: str = PydanticField(description="Time-ordered id of the record.")
    at: datetime = PydanticField(description="When the change committed (UTC).")
    actor_key_id: str = PydanticField(description="The id of the API key that made the change "
                                      f"('{SYSTEM_KEY_ID}' for the registry's own expiry sweep).")
    actor_role: str = PydanticField(description="admin, office, or system.")
    actor_office_id: str | None = PydanticField(description="The office of an office key.")
    action: ProfileAction = PydanticField(description="created, updated, status_changed, withdrawn or expired.")
    entity_type: str = PydanticField(description="seed or need.")
    entity_id: str = PydanticField(description="The profile's id.")
    version_before: int | None = PydanticField(description="None for a creation.")
    version_after: int = PydanticField(description="The profile's version after the change.")
    details: dict[str, Any] = PydanticField(
        description="changed_fields of an update; from_status, to_status and reason of a status change."
    )


def audit_router() -> APIRouter:
    """``GET /v1/audit``: the registry's audit trail, oldest first, for admins and operators."""
    router = APIRouter(tags=["audit"])

    @router.get(
        "/v1/audit", response_model=Page[AuditEntry], summary="Read the audit trail (admin, operator)",
        description="Every change of this registry, oldest first, cursor-paginated. Filter by the profile "
        "(`entity_id`) or the kind of change (`action`). Offices and partners get 403.",
        responses={403: {"description": "The caller is neither admin nor operator."}},
    )
    def read_audit(
        principal: CurrentPrincipal,
        request: Request,
        limit: PageSize = 50,
        cursor: Cursor = None,
        entity_id: Annotated[str | None, Query(max_length=64, description="Only this profile's changes.",
                                               examples=["seed_0193a1b2c3d4e5f60718293a4b5c"])] = None,
        action: Annotated[ProfileAction | None, Query(description="Only this kind of change.")] = None,
    ) -> Page[AuditEntry]:
        require_role(principal, Role.admin, Role.operator)
        statement = select(AuditRecord).order_by(col(AuditRecord.id)).limit(limit + 1)
        after = decode_cursor(cursor)
        if after:
            statement = statement.where(col(AuditRecord.id) > after)
        if entity_id:
            statement = statement.where(col(AuditRecord.entity_id) == entity_id)
        if action:
            statement = statement.where(col(AuditRecord.action) == action.value)
        with runtime_of(request).db.session() as session:
            rows = list(session.exec(statement).all())
        return page_of(rows, limit, lambda shown: [AuditEntry.model_validate(row) for row in shown])

    return router
