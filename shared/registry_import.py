"""``POST /v1/seeds:import`` and ``/v1/needs:import``: a catalogue file into a registry, row by row.

Every row is validated as a create would be; the valid rows are imported, each invalid one is
reported with its row number, field and message, and never half-imported. A row with an
``external_id`` already known for the same owner (a seed's ``owner_org``, a need's
``company_name``) updates that profile instead of adding a second one: a re-import of the same
file changes nothing, and an edited file changes only what was edited (one ``updated`` event and
audit record per changed profile). Statuses are not changed by a re-import: they have their own
transitions.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from shared.auth import Principal, Role, require_role
from shared.bulk_import import (
    LIST_SEPARATOR,
    ImportFileError,
    ImportReport,
    RowError,
    cell_shapes,
    charset_of,
    decode_text,
    format_for,
    read_rows,
    validate_rows,
)
from shared.db import Database
from shared.errors import Problem
from shared.reference import ProfileStatus, office_id_for
from shared.registry import (
    Registry,
    RowT,
    column_values,
    insert_profile,
    record_change,
    set_fields,
    updated,
)

ROWS_PER_TRANSACTION = 100
IMPORT_DESCRIPTION = (
    "CSV (UTF-8 with or without BOM, or Shift_JIS; a header row naming the fields; lists separated "
    "by ';') or JSON Lines (one profile per line), as `text/csv` or `application/x-ndjson`. Every "
    "row is validated as on create; valid rows are imported, invalid ones reported by row number "
    "(CSV: the spreadsheet row, header = 1; JSON Lines: the line) and field. A row whose "
    "`external_id` is already known for the same owner updates that profile. Admins import for any "
    "prefecture, an office for its own."
)


def import_openapi(example: dict[str, Any]) -> dict[str, Any]:
    """The request body of an import route, as OpenAPI shows it (the route reads the raw body)."""
    cells = {name: LIST_SEPARATOR.join(value) if isinstance(value, list) else value for name, value in example.items()}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(cells), lineterminator="\n")
    writer.writeheader()
    writer.writerow(cells)
    return {"requestBody": {"required": True, "description": IMPORT_DESCRIPTION, "content": {
        "text/csv": {"schema": {"type": "string"}, "example": buffer.getvalue()},
        "application/x-ndjson": {"schema": {"type": "string"},
                                 "example": json.dumps(example, ensure_ascii=False) + "\n"},
    }}}


class ImportResult(BaseModel):
    """What an import did; ``errors`` lists every rejected row's problems."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "received": 3, "created": 1, "updated": 1, "unchanged": 0, "rejected": 1,
        "errors": [{"row": 4, "field": "trl", "message": "Input should be less than or equal to 9"}],
    }]})

    received: int = Field(description="Rows in the file (blank lines not counted).", examples=[3])
    created: int = Field(description="New profiles.", examples=[1])
    updated: int = Field(description="Profiles changed through their external_id (one event each).", examples=[1])
    unchanged: int = Field(description="Rows equal to the profile their external_id names.", examples=[0])
    rejected: int = Field(description="Rows not imported; each is in errors.", examples=[1])
    errors: list[dict[str, Any]] = Field(
        description="One entry per problem: row (CSV: spreadsheet row, header = 1; JSON Lines: line), "
        "field, message.",
        examples=[[{"row": 4, "field": "trl", "message": "Input should be less than or equal to 9"}]],
    )


def import_route(kind: str, example: dict[str, Any]) -> dict[str, Any]:
    """The ``router.post(":import", ...)`` options of a registry's import route (its document)."""
    return {
        "response_model": ImportResult, "summary": f"Import a catalogue of {kind}s (CSV or JSON Lines)",
        "description": IMPORT_DESCRIPTION, "openapi_extra": import_openapi(example),
        "responses": {400: {"description": "The file as a whole cannot be read (encoding, CSV header)."},
                      403: {"description": "Not an admin or an office."},
                      413: {"description": "Over 20 MiB: split the file."},
                      415: {"description": "Not text/csv or application/x-ndjson."}},
    }


async def import_request(
    request: Request, db: Database, registry: Registry[RowT], create_model: type[BaseModel], principal: Principal
) -> ImportResult:
    """An import route's work: the raw body (CSV or JSON Lines) imported off the event loop."""
    data = await request.body()
    return await run_in_threadpool(
        import_profiles, db, registry, create_model, principal, data, request.headers.get("content-type")
    )


def import_profiles(
    db: Database,
    registry: Registry[RowT],
    create_model: type[BaseModel],
    principal: Principal,
    data: bytes,
    content_type: str | None,
) -> ImportResult:
    require_role(principal, Role.admin, Role.office)
    try:
        file_format = format_for(content_type)
    except ImportFileError as error:
        raise Problem(415, "Unsupported media type", str(error), kind="unsupported-media-type") from None
    try:
        text = decode_text(data, charset_of(content_type))
        list_fields, int_fields = cell_shapes(create_model)
        rows, unreadable = read_rows(text, file_format, list_fields, int_fields)
    except ImportFileError as error:
        raise Problem(400, "Unreadable file", str(error), kind="unreadable-file") from None
    valid, invalid = validate_rows(rows, create_model)
    report = ImportReport(received=len(rows) + len(unreadable), errors=[*unreadable, *invalid])
    for start in range(0, len(valid), ROWS_PER_TRANSACTION):
        chunk = [(number, column_values(profile)) for number, profile in valid[start:start + ROWS_PER_TRANSACTION]]
        with db.session() as session:
            known = _existing(session, registry, [values for _, values in chunk])
            for number, values in chunk:
                _import_row(session, registry, principal, number, values, known, report)
    report.errors.sort(key=lambda error: (error.row, error.field))
    return ImportResult(**report.as_dict())


def _owner_field(registry: Registry[Any]) -> str:
    return "owner_org" if registry.kind == "seed" else "company_name"


# (external_id, owner) -> the profile it names, the earliest registered if several
KnownProfiles = dict[tuple[str, str], Any]


def _import_row(
    session: Session, registry: Registry[RowT], principal: Principal, number: int, values: dict[str, Any],
    known: KnownProfiles, report: ImportReport,
) -> None:
    if principal.role != Role.admin and principal.office_id != office_id_for(values["prefecture"]):
        report.errors.append(RowError(number, "prefecture", f"an office imports only the {registry.kind}s of "
                                      "its own prefecture"))
        return
    name = _name_of(registry, values)
    existing = known.get(name) if name is not None else None
    if existing is None:
        created = insert_profile(session, registry, principal, values, {"import_row": number})
        if name is not None:  # a later row of this file may name it
            known[name] = created
        report.created += 1
        return
    if principal.role != Role.admin and principal.office_id != office_id_for(existing.prefecture):
        report.errors.append(RowError(number, "external_id", f"names a {registry.kind} of another office"))
        return
    if existing.status == ProfileStatus.withdrawn.value:
        report.errors.append(RowError(number, "external_id", f"names a withdrawn {registry.kind}: withdrawal "
                                      "is final, import it with a new external_id"))
        return
    editable = sorted(registry.fields_model.model_fields)
    changed = set_fields(session, registry, existing, {field: values[field] for field in editable})
    if not changed:
        report.unchanged += 1
        return
    record_change(session, registry, principal, existing, updated(changed, {"import_row": number}))
    report.updated += 1


def _name_of(registry: Registry[Any], values: dict[str, Any]) -> tuple[str, str] | None:
    """What names a profile across imports: its external_id within its owner (None without one)."""
    return (values["external_id"], values[_owner_field(registry)]) if values.get("external_id") else None


def _existing(session: Session, registry: Registry[RowT], rows: list[dict[str, Any]]) -> KnownProfiles:
    """The profiles that ``rows`` name, in one query."""
    names = {name for values in rows if (name := _name_of(registry, values)) is not None}
    if not names:
        return {}
    table = registry.row
    owner_field = _owner_field(registry)
    statement = select(table).where(
        col(table.external_id).in_({external_id for external_id, _ in names}),
        col(getattr(table, owner_field)).in_({owner for _, owner in names}),
    ).order_by(col(table.created_at).desc())
    known: KnownProfiles = {}
    for row in session.exec(statement):  # the earliest last, so it wins
        name = _name_of(registry, {"external_id": row.external_id, owner_field: getattr(row, owner_field)})
        if name in names:
            known[name] = row
    return known
