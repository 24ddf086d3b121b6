"""Housekeeping every service runs: the outbox and the inbox would otherwise grow forever.

- A published outbox row is needed only until the broker has it; it is kept ``outbox_retention``
  (seven days by default) for an operator who wants to see what left, then deleted. The newest row
  always stays: SQLite numbers a new row one past the largest, and the relay must never see a
  number again.
- An inbox row turns a redelivered event into a no-op; a redelivery comes from a topic that still
  holds the event. It is kept ``inbox_retention``, longer than the retention of every topic the
  network deletes from (30 days at most, `matchnet/contracts.py`), then deleted. The compacted key
  topic keeps its last events for ever, and applying one twice changes nothing (a key's entry is
  merged, a revocation never undone).

Deleted in batches, each its own short transaction, so that a first purge of a large table holds no
lock for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from shared.db import Database
from shared.inbox import InboxEvent
from shared.outbox import OutboxEvent

log = logging.getLogger(__name__)

_OUTBOX = OutboxEvent.__table__  # type: ignore[attr-defined]
_INBOX = InboxEvent.__table__  # type: ignore[attr-defined]
PURGE_BATCH = 1_000
PURGE_INTERVAL_S = 3600.0


def delete_in_batches(
    db: Database,
    pick: Callable[[Session, int], list[Any]],
    remove: Callable[[Session, list[Any]], None],
    batch: int = PURGE_BATCH,
) -> int:
    """``pick`` up to ``batch`` keys and ``remove`` them, one short transaction per batch, until a
    batch comes back short; returns how many keys were removed."""
    deleted = 0
    while True:
        with db.session() as session:
            keys = pick(session, batch)
            if keys:
                remove(session, keys)
        deleted += len(keys)
        if len(keys) < batch:
            return deleted


def purge_outbox(db: Database, retention: timedelta, batch: int = PURGE_BATCH) -> int:
    """Delete rows published more than ``retention`` ago, never the newest row; returns how many."""
    cutoff = datetime.now(UTC) - retention

    def pick(session: Session, limit: int) -> list[Any]:
        newest = session.execute(select(func.max(_OUTBOX.c.seq))).scalar_one_or_none()
        if newest is None:
            return []
        return list(session.execute(
            select(_OUTBOX.c.seq)
            .where(_OUTBOX.c.published_at < cutoff, _OUTBOX.c.seq < newest)
            .order_by(_OUTBOX.c.seq)
            .limit(limit)
        ).scalars())

    def remove(session: Session, seqs: list[Any]) -> None:
        session.execute(delete(_OUTBOX).where(_OUTBOX.c.seq.in_(seqs)))

    return delete_in_batches(db, pick, remove, batch)


def purge_inbox(db: Database, retention: timedelta, batch: int = PURGE_BATCH) -> int:
    """Delete the ids of events processed more than ``retention`` ago; returns how many."""
    cutoff = datetime.now(UTC) - retention

    def pick(session: Session, limit: int) -> list[Any]:
        return list(session.execute(
            select(_INBOX.c.event_id).where(_INBOX.c.processed_at < cutoff).limit(limit)
        ).scalars())

    def remove(session: Session, ids: list[Any]) -> None:
        session.execute(delete(_INBOX).where(_INBOX.c.event_id.in_(ids)))

    return delete_in_batches(db, pick, remove, batch)


async def keep_tables_trim(
    db: Database, service: str, outbox_retention: timedelta, inbox_retention: timedelta,
    interval_s: float = PURGE_INTERVAL_S,
) -> None:
    """Purge the outbox and the inbox now and every ``interval_s``, until cancelled."""
    while True:
        try:
            outbox = await asyncio.to_thread(purge_outbox, db, outbox_retention)
            inbox = await asyncio.to_thread(purge_inbox, db, inbox_retention)
            if outbox or inbox:
                log.info("%s: purged %d published outbox rows older than %s and %d inbox rows older than %s",
                         service, outbox, outbox_retention, inbox, inbox_retention)
        except Exception as error:  # the database is away or busy: the next round purges
            log.warning("%s: housekeeping failed (%s)", service, error)
        await asyncio.sleep(interval_s)
