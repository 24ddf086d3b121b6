"""Cursor pagination over time-ordered ids: ``?limit=&cursor=``, with a hard page-size limit."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.errors import Problem

T = TypeVar("T")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=_HasId)
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


def page_of(rows: Sequence[RowT], limit: int, views: Callable[[Sequence[RowT]], list[T]]) -> Page[T]:
    """A page from up to ``limit + 1`` rows fetched in id order, shown through ``views``.

    The cursor follows the last row read, not the last item shown, so rows a caller may not see
    (dropped by ``views``) never stall or shorten the walk through the list.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if has_more and rows else None
    return Page[T](items=views(rows), next_cursor=next_cursor)
