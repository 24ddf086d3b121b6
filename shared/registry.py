"""What the seeds and needs registries share: profile columns and fields, the life of a profile
(create, update, status transitions, withdrawal, expiry), optimistic concurrency, events, audit,
search and list pages. Each service describes itself once (a ``Registry``) and keeps only its own
fields and visibility rules.

Every change runs in one transaction that locks the row, checks ``If-Match`` against its version,
applies the change, bumps the version, rewrites the search terms if the text changed, and records
the event (outbox) and the audit record: the row, its event and its audit record never disagree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator
from pydantic import Field as PydanticField
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import JSON, Date, Text, and_, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Field, Session, SQLModel, col, select

from shared.audit import record_audit
from shared.auth import Principal, Role, check_may_register, require_role
from shared.db import Database, UtcDateTime
from shared.errors import Problem, validation_problem
from shared.events import EVENT_SCHEMAS, PROFILE_EVENTS, Envelope, ProfileAction
from shared.idempotency import find_replay, idempotency_scope, remember, request_fingerprint
from shared.ids import new_id
from shared.outbox import record_event
from shared.pagination import Cursor, Page, PageSize, decode_keyset_cursor, invalid_cursor, keyset_page
from shared.reference import (
    PREFECTURE_OF_OFFICE,
    PREFECTURES,
    BlockCode,
    ClassificationCode,
    FieldCode,
    Keyword,
    Language,
    PrefectureCode,
    ProfileStatus,
    today_in_japan,
)
from shared.search import MAX_QUERY_LENGTH, MAX_TERM_LENGTH, document_terms, facet_term, query_terms
from shared.service import Hook, Runtime

log = logging.getLogger(__name__)

# ---- stored columns --------------------------------------------------------------------------


class ProfileRow(SQLModel):
    """The columns every registry profile (seed, need) has; each table adds its own.

    Columns added after the first revision are nullable where a profile registered before them
    has no value (the API requires them of every new or edited profile).
    """

    id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    external_id: str | None = Field(default=None, max_length=100, index=True)
    title: str = Field(max_length=300)
    summary: str = Field(sa_type=Text, nullable=False)
    title_translated: str | None = Field(default=None, max_length=300)
    summary_translated: str | None = Field(default=None, sa_type=Text)
    description: str = Field(sa_type=Text, nullable=False)
    keywords: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    fields: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    classification_codes: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    prefecture: str = Field(max_length=2, index=True)
    language: str = Field(max_length=2)
    status: str = Field(default=ProfileStatus.open.value, max_length=20, index=True)
    expires_on: date | None = Field(default=None, sa_type=Date, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UtcDateTime, nullable=False, index=True)


class ProfileTermRow(SQLModel):
    """One search or facet term of one profile (shared.search); each registry has its own table."""

    profile_id: str = Field(primary_key=True, max_length=64)
    term: str = Field(primary_key=True, max_length=MAX_TERM_LENGTH, index=True)


# The profile text free-text search looks at.
SEARCHED_FIELDS = ("title", "summary", "title_translated", "summary_translated", "description", "keywords")


# ---- request models --------------------------------------------------------------------------

ItemT = TypeVar("ItemT")


def unique(items: list[ItemT]) -> list[ItemT]:
    """The list without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))


def _creatable(status: ProfileStatus) -> ProfileStatus:
    if status == ProfileStatus.expired:
        raise ValueError("expired is set by the registry when expires_on has passed, not by a client")
    return status


# A new profile starts in any status but expired (an import may bring paused or closed ones).
InitialStatus = Annotated[ProfileStatus, AfterValidator(_creatable)]


class ProfileFields(BaseModel):
    """The fields every profile states (all of them editable); unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = PydanticField(
        None, min_length=1, max_length=100,
        description="The profile's id in the owner's own catalogue (a re-import with it updates).",
        examples=["HU-2024-017"],
    )
    language: Language = PydanticField(Language.ja, description="The language of title and summary.")
    title: str = PydanticField(min_length=1, max_length=300, description="Title, in `language`.")
    summary: str = PydanticField(min_length=1, max_length=2000, description="Two to four sentences, in `language`.")
    title_translated: str | None = PydanticField(
        None, min_length=1, max_length=300, description="The title in the other language."
    )
    summary_translated: str | None = PydanticField(
        None, min_length=1, max_length=2000, description="The summary in the other language."
    )
    description: str = PydanticField(min_length=1, max_length=20000, description="The full text.")
    keywords: Annotated[list[Keyword], AfterValidator(unique)] = PydanticField(
        default_factory=list, max_length=30, description="Up to 30 keywords of 1..60 characters, any language."
    )
    fields: Annotated[list[FieldCode], AfterValidator(unique)] = PydanticField(
        min_length=1, max_length=8, description="1..8 technology field codes (GET the taxonomy in README)."
    )
    classification_codes: Annotated[list[ClassificationCode], AfterValidator(unique)] = PydanticField(
        default_factory=list, max_length=20,
        description="IPC/CPC codes: a subclass ('G06N') or a group ('H10N 10/856'); stored normalised.",
    )
    prefecture: PrefectureCode = PydanticField(
        description="JIS X 0401 code; the prefecture's office owns the profile.", examples=["01"]
    )
    expires_on: date | None = PydanticField(
        None, description="Last day (Japan time) the profile is matched; afterwards it becomes expired "
        "and its office is reminded. None: it does not expire.", examples=["2027-03-31"],
    )


class ProfileUpdate(BaseModel):
    """A partial update (JSON merge patch): the fields sent replace the stored ones, ``null`` clears
    an optional field. The result must be a valid profile, as on create."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = PydanticField(None, min_length=1, max_length=100)
    language: Language | None = None
    title: str | None = PydanticField(None, min_length=1, max_length=300)
    summary: str | None = PydanticField(None, min_length=1, max_length=2000)
    title_translated: str | None = PydanticField(None, min_length=1, max_length=300)
    summary_translated: str | None = PydanticField(None, min_length=1, max_length=2000)
    description: str | None = PydanticField(None, min_length=1, max_length=20000)
    keywords: list[Keyword] | None = PydanticField(None, max_length=30)
    fields: list[FieldCode] | None = PydanticField(None, min_length=1, max_length=8)
    classification_codes: list[ClassificationCode] | None = PydanticField(None, max_length=20)
    prefecture: PrefectureCode | None = None
    expires_on: date | None = None
    # Named only to answer a clear message: the status has its own endpoint.
    status: SkipJsonSchema[Any] = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_has_its_own_endpoint(cls, value: Any) -> Any:
        raise ValueError("the status changes through POST …/{id}/status (only legal transitions)")


def update_schema(fields_model: type[BaseModel], example: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of an update model: each field described as in ``fields_model``, one example."""

    def extra(schema: dict[str, Any]) -> None:
        described = fields_model.model_json_schema()["properties"]
        for name, prop in schema.get("properties", {}).items():
            if "description" not in prop and "description" in described.get(name, {}):
                prop["description"] = described[name]["description"]
        schema["examples"] = [example]

    return extra


class StatusChange(BaseModel):
    """A status transition; ``reason`` is kept in the audit trail and the event."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "paused", "reason": "共同研究先と交渉中のため"}]}
    )

    status: ProfileStatus = PydanticField(description="The new status (see the legal transitions).")
    reason: str | None = PydanticField(None, max_length=500, description="Why, in a sentence.")


# ---- the life of a profile ------------------------------------------------------------------

# Legal transitions; ``expired`` is entered only by the expiry sweep, from open.
LEGAL_TRANSITIONS: dict[ProfileStatus, frozenset[ProfileStatus]] = {
    ProfileStatus.draft: frozenset({ProfileStatus.open, ProfileStatus.withdrawn}),
    ProfileStatus.open: frozenset({ProfileStatus.paused, ProfileStatus.closed, ProfileStatus.withdrawn}),
    ProfileStatus.paused: frozenset({ProfileStatus.open, ProfileStatus.closed, ProfileStatus.withdrawn}),
    ProfileStatus.closed: frozenset({ProfileStatus.open, ProfileStatus.withdrawn}),
    ProfileStatus.expired: frozenset({ProfileStatus.open, ProfileStatus.closed, ProfileStatus.withdrawn}),
    ProfileStatus.withdrawn: frozenset(),
}


def transition_refusal(
    kind: str, current: ProfileStatus, target: ProfileStatus, expires_on: date | None, today: date
) -> str | None:
    """Why ``current → target`` is not allowed, or None if it is."""
    if target == current:
        return f"the {kind} is already {current.value}"
    if current == ProfileStatus.withdrawn:
        return f"a withdrawn {kind} is final: its status no longer changes"
    if target == ProfileStatus.expired:
        return "expired is set by the registry when expires_on has passed, not by a client"
    if target not in LEGAL_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[current]))
        return f"{current.value} → {target.value} is not a legal transition; from {current.value}: {allowed}"
    if target == ProfileStatus.open and expires_on is not None and expires_on < today:
        return f"expires_on {expires_on.isoformat()} has passed: PATCH a later expires_on first, then open it"
    return None


# ---- optimistic concurrency ------------------------------------------------------------------

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match", description='The ETag (version) the change is based on, e.g. "3". Required: a '
        "missing one gets 428, a stale one 412.", examples=['"3"'],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Makes the POST safe to retry: a replay with the same key "
           "and body returns the first answer.", examples=["import-2026-11-26-001"]),
]
CONCURRENCY_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such profile, or one the caller may not see."},
    403: {"description": "The caller may not change this profile (operators and partners change nothing; "
          "an office changes only its prefecture's profiles)."},
    412: {"description": "If-Match names an older version: read the profile again and retry."},
    428: {"description": "If-Match is missing."},
}


def etag(version: int) -> str:
    return f'"{version}"'


def expected_versions(if_match: str | None) -> set[int] | None:
    """The versions ``If-Match`` accepts (None: ``*``, any); 428 if the header is missing.

    Strong comparison (RFC 9110): a weak tag ``W/"3"`` matches nothing.
    """
    if if_match is None or not if_match.strip():
        raise Problem(
            428, "Precondition required", "send If-Match with the ETag of the version you changed",
            kind="precondition-required", errors=[{"field": "If-Match", "message": "required"}],
        )
    if if_match.strip() == "*":
        return None
    versions: set[int] = set()
    for tag in if_match.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            continue
        tag = tag.strip('"')
        if tag.isdigit():
            versions.add(int(tag))
    return versions


def check_version(expected: set[int] | None, current: int) -> None:
    if expected is not None and current not in expected:
        raise Problem(
            412, "Precondition failed", f"the profile is at version {current}: read it again, then retry",
            kind="precondition-failed", errors=[{"field": "If-Match", "message": "stale version"}],
            headers={"ETag": etag(current)},
        )


def profile_response(
    view: BaseModel, version: int, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A profile with its ETag."""
    return JSONResponse(view.model_dump(mode="json"), status_code=status_code,
                        headers={"ETag": etag(version), **(headers or {})})


# ---- who may see and change what ------------------------------------------------------------


def sees_everything(principal: Principal) -> bool:
    """Admins and operators read every profile, drafts and confidential needs included."""
    return principal.role in (Role.admin, Role.operator)


def own_prefecture(principal: Principal) -> str | None:
    """The prefecture of an office key (None for other roles)."""
    if principal.role == Role.office and principal.office_id:
        return PREFECTURE_OF_OFFICE.get(principal.office_id)
    return None


def owns(principal: Principal, prefecture: str) -> bool:
    return own_prefecture(principal) == prefecture


def check_may_change(principal: Principal, prefecture: str, kind: str) -> None:
    """Admins change any profile; an office the profiles of its own prefecture; no one else any."""
    if principal.role == Role.admin or owns(principal, prefecture):
        return
    raise Problem(403, "Forbidden", f"only an admin or the office of the {kind}'s prefecture may change it")


# ---- the registry -----------------------------------------------------------------------------

RowT = TypeVar("RowT", bound=ProfileRow)
EntityT = TypeVar("EntityT", bound=SQLModel)


@dataclass(frozen=True)
class Registry(Generic[RowT]):
    """One registry (seeds or needs): its tables, fields, events and what a reader may see."""

    kind: Literal["seed", "need"]
    route: str
    row: type[RowT]
    term: type[ProfileTermRow]
    fields_model: type[ProfileFields]
    forms_field: str  # the collaboration forms column: offers (seeds), wanted_forms (needs)
    event_source: str
    # The profile as ``principal`` may see it, or None (then it is reported as missing).
    view: Callable[[Principal, RowT], BaseModel | None]
    # The same rule as SQL conditions, so lists, filters and search never reach a hidden profile.
    visibility: Callable[[Principal], list[Any]]
    # What events carry (see shared/events.py on what is public-safe).
    event_profile: Callable[[RowT], BaseModel]


@dataclass
class Change:
    """What a change did: its action, the event's extra fields, the audit details."""

    action: ProfileAction
    event: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)


def now_utc() -> datetime:
    return datetime.now(UTC)


def column_values(model: BaseModel) -> dict[str, Any]:
    """A validated model's fields as the columns store them (enum values, not members)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    return {name: plain(value) for name, value in model if name in type(model).model_fields}


def _editable_values(registry: Registry[RowT], row: RowT) -> dict[str, Any]:
    return {name: getattr(row, name) for name in registry.fields_model.model_fields}


def index_terms(session: Session, registry: Registry[RowT], row: RowT, *, new: bool = False) -> None:
    """Replace the profile's search and facet terms (a ``new`` profile has none to replace)."""
    table = registry.term.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    if not new:
        connection.execute(table.delete().where(table.c.profile_id == row.id))
    texts = [getattr(row, name) for name in SEARCHED_FIELDS if name != "keywords"] + list(row.keywords)
    terms = document_terms(texts)
    terms.update(facet_term("field", code) for code in row.fields)
    terms.update(facet_term("form", form) for form in getattr(row, registry.forms_field))
    if terms:
        connection.execute(table.insert(), [{"profile_id": row.id, "term": term} for term in sorted(terms)])


def _emit(session: Session, registry: Registry[RowT], row: RowT, action: ProfileAction, extra: dict[str, Any]) -> None:
    event_type = PROFILE_EVENTS[(registry.kind, action)]
    payload = EVENT_SCHEMAS[event_type].model_validate({registry.kind: registry.event_profile(row), **extra})
    record_event(session, Envelope.wrap(event_type, registry.event_source, row.id, payload))


def _found(registry: Registry[RowT], principal: Principal, row: RowT | None, profile_id: str) -> RowT:
    if row is None or registry.view(principal, row) is None:  # hidden is indistinguishable from missing
        raise Problem(404, "Not found", f"no {registry.kind} {profile_id}")
    return row


def _view(registry: Registry[RowT], principal: Principal, row: RowT) -> BaseModel:
    view = registry.view(principal, row)
    assert view is not None  # the caller was allowed to see the row a moment ago
    return view


# ---- create -------------------------------------------------------------------------------------


def create_idempotently(
    db: Database,
    *,
    principal: Principal,
    route: str,
    idempotency_key: str | None,
    request_body: BaseModel,
    write: Callable[[Session], tuple[dict[str, Any], str]],
    headers_of: Callable[[dict[str, Any]], dict[str, str]] = lambda _: {},
) -> JSONResponse:
    """Run ``write`` (returns the 201 body and its Location) once per Idempotency-Key.

    The key's record commits with the write; a replay with the same key and body returns the
    first answer, a concurrent duplicate that loses the race replays the winner's answer.
    ``headers_of`` adds headers derived from the body (a profile's ETag) to both.
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
                            headers={"Idempotent-Replayed": "true", "Location": f"{route}/{body['id']}",
                                     **headers_of(body)},
                        )
                body, location = write(session)
                if scope:
                    remember(session, scope, fingerprint, 201, body)
            return JSONResponse(body, status_code=201, headers={"Location": location, **headers_of(body)})
        except IntegrityError:
            if not scope:
                raise
    raise RuntimeError("idempotent create did not settle")


def insert_profile(
    session: Session, registry: Registry[RowT], principal: Principal, values: dict[str, Any],
    audit: dict[str, Any] | None = None,
) -> RowT:
    """A new profile of ``values`` (column values), its search terms, ``created`` event and audit record."""
    now = now_utc()
    row = registry.row(id=new_id(registry.kind), version=1, created_at=now, updated_at=now, **values)
    # A Core insert, then the row joins the session as if it had been read: an import may change it
    # later in the transaction, and the flush at commit has nothing to do for a plain registration.
    table = registry.row.__table__  # type: ignore[attr-defined]
    session.connection().execute(table.insert(), {column.key: getattr(row, column.key) for column in table.columns})
    make_transient_to_detached(row)
    session.add(row)
    index_terms(session, registry, row, new=True)
    _emit(session, registry, row, ProfileAction.created, {})
    record_audit(session, principal, ProfileAction.created, registry.kind, row.id, None, row.version,
                 {"status": row.status, **(audit or {})})
    return row


def create_profile(
    db: Database, registry: Registry[RowT], principal: Principal, body: ProfileFields, idempotency_key: str | None
) -> JSONResponse:
    """Register a profile (admin, or the office of its prefecture) with its event and audit record."""
    check_may_register(principal, body.prefecture, registry.kind)

    def write(session: Session) -> tuple[dict[str, Any], str]:
        row = insert_profile(session, registry, principal, column_values(body))
        return _view(registry, principal, row).model_dump(mode="json"), f"{registry.route}/{row.id}"

    return create_idempotently(db, principal=principal, route=registry.route, idempotency_key=idempotency_key,
                               request_body=body, write=write, headers_of=lambda b: {"ETag": etag(b["version"])})


# ---- read -------------------------------------------------------------------------------------------


def read_profile(db: Database, registry: Registry[RowT], principal: Principal, profile_id: str) -> JSONResponse:
    with db.session() as session:
        row = _found(registry, principal, session.get(registry.row, profile_id), profile_id)
        return profile_response(_view(registry, principal, row), row.version)


# ---- change -----------------------------------------------------------------------------------------


def change_profile(
    db: Database, registry: Registry[RowT], principal: Principal, profile_id: str, if_match: str | None,
    apply: Callable[[Session, RowT], Change | None],
) -> JSONResponse:
    """Lock the row, check who and which version, ``apply`` the change; then version, event, audit.

    ``apply`` mutates the row and says what it did, or returns None when nothing changed (then
    nothing is written and the version stays).
    """
    require_role(principal, Role.admin, Role.office)  # operators and partners change nothing
    expected = expected_versions(if_match)
    with db.session() as session:
        row = _found(registry, principal, session.get(registry.row, profile_id, with_for_update=True), profile_id)
        check_may_change(principal, row.prefecture, registry.kind)
        check_version(expected, row.version)
        change = apply(session, row)
        if change is not None:
            record_change(session, registry, principal, row, change)
        return profile_response(_view(registry, principal, row), row.version)


def record_change(session: Session, registry: Registry[RowT], principal: Principal, row: RowT, change: Change) -> None:
    """After ``row`` was changed: its next version, the event, and the audit record."""
    version_before = row.version
    row.version += 1
    row.updated_at = now_utc()
    session.add(row)
    _emit(session, registry, row, change.action, change.event)
    record_audit(session, principal, change.action, registry.kind, row.id, version_before, row.version, change.audit)


def set_fields(session: Session, registry: Registry[RowT], row: RowT, values: dict[str, Any]) -> list[str]:
    """Write into ``row`` the editable ``values`` that differ, re-indexing its search terms if they
    changed; returns the names of the changed fields in the order of ``values`` (empty: no change)."""
    changed = [name for name, value in values.items() if value != getattr(row, name)]
    for name in changed:
        setattr(row, name, values[name])
    if set(changed) & {*SEARCHED_FIELDS, "fields", registry.forms_field}:
        index_terms(session, registry, row)
    return changed


def updated(changed: list[str], audit: dict[str, Any] | None = None) -> Change:
    """The change of an edit of ``changed`` fields."""
    return Change(ProfileAction.updated, {"changed_fields": changed}, {"changed_fields": changed, **(audit or {})})


def update_profile(
    db: Database, registry: Registry[RowT], principal: Principal, profile_id: str, if_match: str | None,
    patch: ProfileUpdate,
) -> JSONResponse:
    """PATCH: merge the sent fields into the profile, validate the result as a whole, store what changed."""
    requested = patch.model_dump(exclude_unset=True)

    def apply(session: Session, row: RowT) -> Change | None:
        if row.status == ProfileStatus.withdrawn:
            raise Problem(409, "Conflict", f"a withdrawn {registry.kind} is final: it can no longer be edited",
                          kind="withdrawn", errors=[{"field": "status", "message": "withdrawn"}])
        current = _editable_values(registry, row)
        try:
            merged = registry.fields_model.model_validate({**current, **requested})
        except ValidationError as error:
            raise validation_problem(error) from None
        new_values = column_values(merged)
        if new_values["prefecture"] != current["prefecture"]:  # an office cannot hand a profile to another office
            check_may_register(principal, new_values["prefecture"], registry.kind)
        changed = set_fields(session, registry, row, new_values)
        return updated(changed) if changed else None

    return change_profile(db, registry, principal, profile_id, if_match, apply)


def change_status(
    db: Database, registry: Registry[RowT], principal: Principal, profile_id: str, if_match: str | None,
    target: ProfileStatus, reason: str | None,
) -> JSONResponse:
    """A status transition (withdrawn included); 409 naming the reason when it is not legal."""

    def apply(session: Session, row: RowT) -> Change:
        current = ProfileStatus(row.status)
        refusal = transition_refusal(registry.kind, current, target, row.expires_on, today_in_japan())
        if refusal:
            raise Problem(409, "Illegal status transition", refusal, kind="illegal-transition",
                          errors=[{"field": "status", "message": refusal}])
        row.status = target.value
        action = ProfileAction.withdrawn if target == ProfileStatus.withdrawn else ProfileAction.status_changed
        return Change(
            action, {"previous_status": current, "reason": reason},
            {"from_status": current.value, "to_status": target.value, "reason": reason},
        )

    return change_profile(db, registry, principal, profile_id, if_match, apply)


# ---- expiry -----------------------------------------------------------------------------------------


def expire_due(db: Database, registry: Registry[RowT], today: date, batch_size: int = 100) -> int:
    """Mark every open profile whose ``expires_on`` is before ``today`` expired, each with its event
    (the matcher drops it, its office is reminded) and audit record; returns how many.

    Replicas may sweep at once: on PostgreSQL each skips the rows another has locked.
    """
    expired = 0
    while True:
        with db.session() as session:
            statement = (
                select(registry.row)
                .where(col(registry.row.status) == ProfileStatus.open.value, col(registry.row.expires_on) < today)
                .order_by(col(registry.row.id))
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = list(session.exec(statement).all())
            for row in rows:
                row.status = ProfileStatus.expired.value
                row.version += 1
                row.updated_at = now_utc()
                session.add(row)
                _emit(session, registry, row, ProfileAction.expired, {"previous_status": ProfileStatus.open})
                record_audit(session, None, ProfileAction.expired, registry.kind, row.id, row.version - 1,
                             row.version, {"from_status": "open", "to_status": "expired",
                                           "expires_on": row.expires_on.isoformat() if row.expires_on else None})
        expired += len(rows)
        if len(rows) < batch_size:
            return expired


# ---- lists and search ---------------------------------------------------------------------------


def list_rows(
    session: Session,
    model: type[EntityT],
    *,
    after_id: str | None,
    limit: int,
    filters: Sequence[Any] = (),
) -> list[EntityT]:
    """Up to ``limit + 1`` rows in id (= creation) order after the cursor (any table with ids)."""
    id_column = col(model.id)  # type: ignore[attr-defined]
    statement = select(model).where(*filters).order_by(id_column).limit(limit + 1)
    if after_id:
        statement = statement.where(id_column > after_id)
    return list(session.exec(statement).all())


class ProfileSort(StrEnum):
    """A list's order: by creation (default), last change or title; '-' for descending."""

    created_asc = "created_at"
    created_desc = "-created_at"
    updated_asc = "updated_at"
    updated_desc = "-updated_at"
    title_asc = "title"
    title_desc = "-title"


@dataclass
class ProfileListParams:
    """The list filters, search and sort seeds and needs share (query parameters)."""

    status: Annotated[list[ProfileStatus] | None, Query(
        description="Any of these statuses (repeat the parameter).", examples=[["open"]])] = None
    fields: Annotated[list[FieldCode] | None, Query(
        description="Has any of these technology fields.", examples=[["energy"]])] = None
    prefecture: Annotated[list[PrefectureCode] | None, Query(
        description="In any of these prefectures (JIS X 0401).", examples=[["01"]])] = None
    block: Annotated[list[BlockCode] | None, Query(
        description="In any of these regional blocks.", examples=[["hokkaido"]])] = None
    updated_since: Annotated[datetime | None, Query(
        description="Changed at or after this time (ISO 8601; without an offset, UTC).",
        examples=["2026-11-01T00:00:00+09:00"])] = None
    q: Annotated[str | None, Query(
        min_length=1, max_length=MAX_QUERY_LENGTH,
        description="Free text over title, summary (and their translations), description and keywords; "
        "Japanese by character bigrams, English by words, case-insensitive; every term must occur.",
        examples=["熱電変換"])] = None
    sort: Annotated[ProfileSort, Query(
        description="created_at (default: a stable walk), updated_at or title; '-' for descending.")
    ] = ProfileSort.created_asc
    limit: PageSize = 50
    cursor: Cursor = None


# sort -> (column, descending); created_at sorts by id, which is time-ordered.
_SORT_KEYS: dict[ProfileSort, tuple[str, bool]] = {
    ProfileSort.created_asc: ("id", False),
    ProfileSort.created_desc: ("id", True),
    ProfileSort.updated_asc: ("updated_at", False),
    ProfileSort.updated_desc: ("updated_at", True),
    ProfileSort.title_asc: ("title", False),
    ProfileSort.title_desc: ("title", True),
}


def _has_any_term(registry: Registry[RowT], terms: Iterable[str]) -> Any:
    term = registry.term
    return col(registry.row.id).in_(select(term.profile_id).where(col(term.term).in_(list(terms))))


def _has_every_term(registry: Registry[RowT], terms: set[str]) -> Any:
    term = registry.term
    matching = (
        select(term.profile_id).where(col(term.term).in_(sorted(terms)))
        .group_by(col(term.profile_id)).having(func.count() == len(terms))
    )
    return col(registry.row.id).in_(matching)


def _sort_value(column: str, row: ProfileRow) -> str | None:
    if column == "id":
        return None
    value = getattr(row, column)
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _after(registry: Registry[RowT], column: str, descending: bool, value: str | None, last_id: str) -> Any:
    id_column = col(registry.row.id)
    after_id = id_column < last_id if descending else id_column > last_id
    if column == "id":
        return after_id
    sort_column = col(getattr(registry.row, column))
    key: Any = value
    if column == "updated_at":
        try:
            key = datetime.fromisoformat(value or "")
        except ValueError:
            raise invalid_cursor() from None
    beyond = sort_column < key if descending else sort_column > key
    return or_(beyond, and_(sort_column == key, after_id))


def list_profiles(
    db: Database, registry: Registry[RowT], principal: Principal, params: ProfileListParams,
    *, forms: Sequence[Enum] | None = None, conditions: Sequence[Any] = (),
) -> Page[Any]:
    """One page of the profiles ``principal`` may see that pass the filters and the query.

    Visibility is part of the SQL, so a hidden profile is never counted, matched by ``q`` or
    filtered on: a reader cannot learn of it from the size of a page or the presence of a cursor.
    """
    row = registry.row
    where: list[Any] = [*registry.visibility(principal), *conditions]
    if params.status:
        where.append(col(row.status).in_([status.value for status in params.status]))
    if params.prefecture:
        where.append(col(row.prefecture).in_(params.prefecture))
    if params.block:
        where.append(col(row.prefecture).in_([p.code for p in PREFECTURES.values() if p.block in params.block]))
    if params.updated_since is not None:
        since = params.updated_since
        where.append(col(row.updated_at) >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
    if params.fields:
        where.append(_has_any_term(registry, [facet_term("field", code) for code in params.fields]))
    if forms:
        where.append(_has_any_term(registry, [facet_term("form", form.value) for form in forms]))
    if params.q is not None:
        terms = query_terms(params.q)
        if not terms:  # nothing searchable in the query (only punctuation): nothing matches
            return Page[Any](items=[], next_cursor=None)
        where.append(_has_every_term(registry, terms))
    column, descending = _SORT_KEYS[params.sort]
    keyset = decode_keyset_cursor(params.cursor, params.sort.value)
    if keyset is not None:
        where.append(_after(registry, column, descending, *keyset))
    order = [col(getattr(row, column)), col(row.id)] if column != "id" else [col(row.id)]
    statement = (
        select(row).where(*where)
        .order_by(*[o.desc() if descending else o.asc() for o in order])
        .limit(params.limit + 1)
    )
    with db.session() as session:
        rows = list(session.exec(statement).all())
    return keyset_page(
        rows, params.limit,
        lambda shown: [view for r in shown if (view := registry.view(principal, r)) is not None],
        params.sort.value, lambda r: _sort_value(column, r),
    )


def expiry_sweep(registry: Registry[RowT], interval_s: float) -> Hook:
    """A background task for create_service_app: ``expire_due`` at start and every ``interval_s``."""

    async def sweep_expired(runtime: Runtime) -> None:
        while True:
            try:
                count = await asyncio.to_thread(expire_due, runtime.db, registry, today_in_japan())
                if count:
                    log.info("%s registry: %d profiles expired", registry.kind, count)
            except Exception as error:  # the database is away: try again next time
                log.warning("%s registry: expiry sweep failed (%s)", registry.kind, error)
            await asyncio.sleep(interval_s)

    return sweep_expired
