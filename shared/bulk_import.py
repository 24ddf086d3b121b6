"""Bulk import of existing catalogues: CSV (UTF-8 with or without BOM, or Shift_JIS) and JSON Lines.

Reading is separate from importing: ``read_rows`` turns a file into numbered rows of JSON-shaped
values (CSV cells become lists, numbers and nulls as the profile schema wants them) plus a report of
the rows that could not even be read. The registry validates each row with its Create model and
reports field errors per row; valid rows are imported, invalid ones never are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

UTF8_BOM = b"\xef\xbb\xbf"
# Japanese spreadsheets save "Shift_JIS" as Microsoft's code page 932, a superset of it.
SHIFT_JIS_CODEC = "cp932"
LIST_SEPARATOR = ";"
MAX_IMPORT_ROWS = 10_000


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


CONTENT_TYPES: dict[str, ImportFormat] = {
    "text/csv": ImportFormat.csv,
    "application/csv": ImportFormat.csv,
    "application/jsonl": ImportFormat.jsonl,
    "application/x-ndjson": ImportFormat.jsonl,
    "application/x-jsonlines": ImportFormat.jsonl,
    "application/jsonlines": ImportFormat.jsonl,
}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not a row's fault)."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ImportReport:
    """What an import did: counts and one entry per problem, by row number in the file."""

    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len({error.row for error in self.errors})

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [error.as_dict() for error in self.errors],
        }


def format_for(content_type: str | None, filename: str | None = None) -> ImportFormat:
    """The format named by a Content-Type (or, for the CLI, a file name's suffix)."""
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in CONTENT_TYPES:
            return CONTENT_TYPES[media_type]
    if filename:
        suffix = filename.rsplit(".", 1)[-1].lower()
        if suffix == "csv":
            return ImportFormat.csv
        if suffix in ("jsonl", "ndjson"):
            return ImportFormat.jsonl
    raise ImportFileError(
        "send CSV as text/csv or JSON Lines as application/x-ndjson (or name the file .csv / .jsonl)"
    )


def charset_of(content_type: str | None) -> str | None:
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def decode_text(data: bytes, charset: str | None = None) -> str:
    """UTF-8 (a BOM is dropped) unless a charset is named; bytes that are not UTF-8 are read as Shift_JIS."""
    if charset:
        shift_jis = charset.replace("-", "_") in ("shift_jis", "sjis", "cp932", "windows_31j")
        codec = SHIFT_JIS_CODEC if shift_jis else charset
        try:
            return data.decode(codec)
        except (LookupError, UnicodeDecodeError) as error:
            raise ImportFileError(f"the file is not valid {charset}: {error}") from error
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode(SHIFT_JIS_CODEC)
    except UnicodeDecodeError as error:
        raise ImportFileError("the file is neither UTF-8 nor Shift_JIS text") from error


@dataclass(frozen=True)
class ImportRow:
    number: int  # where the row is in the file: a JSON Lines line, a CSV spreadsheet row (header = 1)
    values: dict[str, Any]


def read_rows(
    text: str, file_format: ImportFormat, list_fields: Iterable[str], int_fields: Iterable[str] = ()
) -> tuple[list[ImportRow], list[RowError]]:
    """Numbered rows and the rows that could not be read (bad JSON, a row not an object, too many cells)."""
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    if file_format == ImportFormat.csv:
        source = _csv_rows(text, set(list_fields), set(int_fields))
    else:
        source = _jsonl_rows(text)
    for number, values, problem in source:
        if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
            raise ImportFileError(f"at most {MAX_IMPORT_ROWS} rows per import; split the file")
        if problem is not None:
            errors.append(RowError(number, problem[0], problem[1]))
        else:
            assert values is not None
            rows.append(ImportRow(number, values))
    return rows, errors


_Parsed = tuple[int, dict[str, Any] | None, tuple[str, str] | None]


def _jsonl_rows(text: str) -> Iterator[_Parsed]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, ("row", f"not valid JSON: {error.msg} at column {error.colno}")
            continue
        if not isinstance(value, dict):
            yield number, None, ("row", "each line must be one JSON object")
            continue
        yield number, value, None


def _csv_rows(text: str, list_fields: set[str], int_fields: set[str]) -> Iterator[_Parsed]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise ImportFileError(f"the CSV header cannot be read: {error}") from error
    columns = [name.strip() for name in header]
    if not any(columns):
        raise ImportFileError("the first CSV line must name the columns")
    duplicates = sorted({name for name in columns if name and columns.count(name) > 1})
    if duplicates:
        raise ImportFileError(f"CSV columns named twice: {', '.join(duplicates)}")
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield number, None, ("row", f"not valid CSV: {error}")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            yield number, None, ("row", f"{len(cells)} cells but only {len(columns)} columns")
            continue
        yield number, _csv_values(dict(zip(columns, cells, strict=False)), list_fields, int_fields), None


def _csv_values(cells: Mapping[str, str], list_fields: set[str], int_fields: set[str]) -> dict[str, Any]:
    """CSV cells as the JSON the Create model reads: empty is absent, lists split on ';', numbers parsed."""
    values: dict[str, Any] = {}
    for name, raw in cells.items():
        if not name:
            continue
        cell = raw.strip()
        if name in list_fields:
            values[name] = [part.strip() for part in cell.split(LIST_SEPARATOR) if part.strip()]
        elif cell == "":
            continue
        elif name in int_fields:
            try:
                values[name] = int(cell.replace(",", ""))
            except ValueError:
                values[name] = cell  # the model reports it, naming the field
        else:
            values[name] = cell
    return values


def validation_errors(row: int, error: ValidationError) -> list[RowError]:
    """A pydantic error as report entries naming each field."""
    out = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ())) or "row"
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "extra_forbidden":
            message = "unknown field: not part of this resource"
        out.append(RowError(row, location, message))
    return out


def validate_rows(
    rows: Iterable[ImportRow], model: type[ModelT]
) -> tuple[list[tuple[int, ModelT]], list[RowError]]:
    """Each row checked with ``model``: the valid ones, and the errors of the others."""
    valid: list[tuple[int, ModelT]] = []
    errors: list[RowError] = []
    for row in rows:
        try:
            valid.append((row.number, model.model_validate(row.values)))
        except ValidationError as error:
            errors.extend(validation_errors(row.number, error))
    return valid, errors


def cell_shapes(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """The fields of ``model`` a CSV cell must become a list for, and those it must become an int for."""
    list_fields: set[str] = set()
    int_fields: set[str] = set()
    for name, info in model.model_fields.items():
        shape = repr(info.annotation)
        if shape.startswith("list[") or "typing.List" in shape:
            list_fields.add(name)
        elif info.annotation is int or shape in ("int | None", "typing.Optional[int]"):
            int_fields.add(name)
    return list_fields, int_fields
