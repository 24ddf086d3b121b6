"""Cursor pagination over time-ordered ids: ``?limit=&cursor=``, with a hard page-size limit."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.errors import Problem

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


_ID_SHAPE = re.compile(r"^[a-z]+_[0-9a-f]{28}$")  # as shared.ids.new_id makes them


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        last_id = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        if _ID_SHAPE.match(last_id):
            return last_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Problem(
        400, "Invalid cursor", "cursor is not one this API returned", kind="validation",
        errors=[{"field": "cursor", "message": "not a cursor returned by this API"}],
    )


PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


def page_of(items: list[T], limit: int, id_of: str) -> Page[T]:
    """Build a page from up to ``limit + 1`` rows fetched in id order."""
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(getattr(items[-1], id_of)) if has_more and items else None
    return Page[T](items=items, next_cursor=next_cursor)
