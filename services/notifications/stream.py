"""``GET /v1/stream``: pairing events as Server-Sent Events, for portals that cannot receive webhooks.

Read from the event log, so a reader resumes with ``Last-Event-ID`` (the log's sequence number)
without a gap or a duplicate for as long as the log keeps events (at least seven days). Readers
are woken when the log grows (and poll every few seconds as a safety net).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, func, select

from shared.db import Database
from shared.events import Envelope

from .domain import Audience, event_view, now_utc
from .models import NotificationEvent

RECONNECT_MS = 2000  # the client's wait before reconnecting, sent as the stream's ``retry``
SAFETY_POLL_S = 2.0
# A sequence number can commit after a higher one (PostgreSQL, concurrent writers): a reader holds
# back behind a missing number this long before taking it for a rolled-back one.
GAP_GRACE = timedelta(seconds=5)
BATCH = 200


class EventLogFeed:
    """Tells waiting stream readers that the event log grew. ``notify`` is thread-safe."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self.version = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            self._loop = loop
            self._changed = asyncio.Event()

    def notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, version: int, timeout_s: float) -> None:
        """Return once the log grew after ``version``, or after ``timeout_s``."""
        if self.version != version:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await changed.wait()


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    event_type: str
    event: str
    received_at: datetime


def read_log(db: Database, after_seq: int, limit: int = BATCH) -> list[LoggedEvent]:
    with db.session() as session:
        rows = session.exec(
            select(NotificationEvent).where(col(NotificationEvent.seq) > after_seq)
            .order_by(col(NotificationEvent.seq)).limit(limit)
        ).all()
        return [LoggedEvent(r.seq or 0, r.event_type, r.event, r.received_at) for r in rows]


def log_position(db: Database, before: datetime | None = None) -> int:
    """The sequence number of the last event logged (before ``before``, if given); 0 if none."""
    with db.session() as session:
        statement = select(func.max(col(NotificationEvent.seq)))
        if before is not None:
            statement = statement.where(col(NotificationEvent.received_at) < before)
        return int(session.exec(statement).one() or 0)


def sse_message(seq: int, event_type: str, data: str) -> str:
    return f"id: {seq}\nevent: {event_type}\ndata: {data}\n\n"


async def event_stream(
    db: Database, feed: EventLogFeed, audience: Audience, after_seq: int, *, keepalive_s: float
) -> AsyncIterator[str]:
    """The events after ``after_seq`` that ``audience`` may see, then each new one as it is logged;
    a comment line every ``keepalive_s`` while there is nothing to send. Runs until the client goes."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RECONNECT_MS}\n\n"
    last = after_seq
    quiet_since = loop.time()
    while True:
        version = feed.version
        rows = await asyncio.to_thread(read_log, db, last)
        now = now_utc()
        messages: list[str] = []
        held_back = False
        for row in rows:
            if row.seq > last + 1 and now - row.received_at < GAP_GRACE:
                held_back = True  # an earlier number may still commit: do not step over it yet
                break
            last = row.seq
            view = event_view(Envelope.model_validate_json(row.event), audience)
            if view is not None:
                messages.append(sse_message(row.seq, row.event_type, view))
        if messages:
            yield "".join(messages)
            quiet_since = loop.time()
        if held_back:
            await asyncio.sleep(0.05)
            continue
        if len(rows) == BATCH:
            continue
        if loop.time() - quiet_since >= keepalive_s:
            yield ": keep-alive\n\n"
            quiet_since = loop.time()
        await feed.wait(version, min(keepalive_s, SAFETY_POLL_S))
