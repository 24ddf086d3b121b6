"""Cursor pagination: ``?limit=&cursor=``, with a hard page-size limit.

Two cursors, both opaque to clients: over time-ordered ids (``page_of``), and over another sort key
with the id as tie-break (``keyset_page``, e.g. ``-updated_at``), which names its sort so that a
cursor is never read under another one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import Problem

T = TypeVar("T")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=_HasId)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class Page(BaseModel, Generic[T]):
    """One page; pass ``next_cursor`` as ``cursor`` for the next one (None: this was the last)."""

    # Parametrised pages (Page[SeedProfile]) do not inherit the docstring as their description.
    model_config = ConfigDict(json_schema_extra={"description": "One page of a list, and the cursor of the next."})

    items: list[T] = Field(description="This page's items, at most `limit`.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; None on the last page.",
                                    examples=["WyJ0aXRsZSIsIueGsembu-WkieaPmyIsInNlZWRfMDE5M2ExYjIiXQ"])


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


_ID_SHAPE = re.compile(r"^[a-z]+_[0-9a-f]{28}$")  # as shared.ids.new_id makes them


def _unb64(cursor: str) -> str:
    return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()


def invalid_cursor() -> Problem:
    return Problem(
        400, "Invalid cursor", "cursor is not one this API returned for this sort", kind="validation",
        errors=[{"field": "cursor", "message": "not a cursor returned by this API"}],
    )


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        last_id = _unb64(cursor)
        if _ID_SHAPE.match(last_id):
            return last_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise invalid_cursor()


def encode_keyset_cursor(sort: str, value: str | None, last_id: str) -> str:
    raw = json.dumps([sort, value, last_id], ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_keyset_cursor(cursor: str | None, sort: str) -> tuple[str | None, str] | None:
    """(sort value, id) of the last row of the previous page, or None on the first page; 400 if
    the cursor is not one ``keyset_page`` made for this sort."""
    if not cursor:
        return None
    try:
        decoded = json.loads(_unb64(cursor))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_cursor() from None
    if (
        isinstance(decoded, list) and len(decoded) == 3 and decoded[0] == sort
        and (decoded[1] is None or isinstance(decoded[1], str))
        and isinstance(decoded[2], str) and _ID_SHAPE.match(decoded[2])
    ):
        return decoded[1], decoded[2]
    raise invalid_cursor()


PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


def page_of(rows: Sequence[RowT], limit: int, views: Callable[[Sequence[RowT]], list[T]]) -> Page[T]:
    """A page from up to ``limit + 1`` rows fetched in id order, shown through ``views``.

    The cursor follows the last row read, not the last item shown, so rows a caller may not see
    (dropped by ``views``) never stall or shorten the walk through the list.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if has_more and rows else None
    return Page[T](items=views(rows), next_cursor=next_cursor)


def keyset_page(
    rows: Sequence[RowT], limit: int, views: Callable[[Sequence[RowT]], list[T]],
    sort: str, sort_value: Callable[[RowT], str | None],
) -> Page[T]:
    """A page from up to ``limit + 1`` rows fetched in (sort key, id) order, shown through ``views``."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_keyset_cursor(sort, sort_value(rows[-1]), rows[-1].id) if has_more and rows else None
    return Page[T](items=views(rows), next_cursor=next_cursor)
