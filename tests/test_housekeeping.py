"""Housekeeping: published outbox rows, processed event ids and finished deliveries are forgotten after
their retention, and nothing that is still needed is (on both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from services.notifications.app import purge_delivery_log
from services.notifications.models import TABLES, Delivery, DeliveryAttempt, DeliveryStatus
from shared.db import Database
from shared.housekeeping import purge_inbox, purge_outbox
from shared.inbox import InboxEvent
from shared.outbox import OutboxEvent
from shared.service import COMMON_TABLES
from tests.test_notifications_unit import _subscription

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, [*COMMON_TABLES, *TABLES])  # the inbox and the outbox among them
    database.create_tables()
    yield database
    database.dispose()


def _outbox_row(event_id: str, published_at: datetime | None) -> OutboxEvent:
    return OutboxEvent(event_id=event_id, event_type="t", topic="matchnet.needs", key="k", envelope="{}",
                       created_at=NOW - 30 * DAY, published_at=published_at)


def _outbox(db: Database) -> list[str]:
    with db.session() as session:
        return [row.event_id for row in session.exec(select(OutboxEvent).order_by(col(OutboxEvent.seq)))]


def test_the_outbox_forgets_old_published_rows_in_batches_but_never_unsent_ones_or_the_newest(db: Database) -> None:
    with db.session() as session:
        for n in range(5):
            session.add(_outbox_row(f"old_{n}", NOW - 8 * DAY))
        session.add(_outbox_row("unsent", None))
        session.add(_outbox_row("recent", NOW - DAY))
        session.add(_outbox_row("newest_old", NOW - 9 * DAY))

    assert purge_outbox(db, timedelta(days=7), batch=2) == 5

    assert _outbox(db) == ["unsent", "recent", "newest_old"]


def test_after_a_purge_a_new_outbox_row_gets_a_number_never_seen_before(db: Database) -> None:
    # The relay skips a handed row numbered at or below the highest it published: a number must
    # never come back (SQLite would reuse the largest if it were deleted).
    with db.session() as session:
        session.add(_outbox_row("first", NOW - 9 * DAY))
        last = _outbox_row("last", NOW - 9 * DAY)
        session.add(last)
        session.flush()
        highest = last.seq
    assert highest is not None

    assert purge_outbox(db, timedelta(days=7)) == 1
    with db.session() as session:
        fresh = _outbox_row("fresh", None)
        session.add(fresh)
        session.flush()
        assert fresh.seq is not None and fresh.seq > highest


def test_the_inbox_forgets_only_ids_older_than_its_retention(db: Database) -> None:
    with db.session() as session:
        for n, age in enumerate((40 * DAY, 36 * DAY, 34 * DAY, timedelta(0))):
            session.add(InboxEvent(event_id=f"evt_{n}", event_type="t", processed_at=NOW - age))

    assert purge_inbox(db, timedelta(days=35), batch=1) == 2

    with db.session() as session:
        assert sorted(e.event_id for e in session.exec(select(InboxEvent))) == ["evt_2", "evt_3"]


def test_the_delivery_log_forgets_finished_deliveries_with_their_attempts_never_pending_ones(db: Database) -> None:
    subscription = _subscription(office_id="office-13")
    with db.session() as session:
        session.add(subscription)
    ages = {"old_succeeded": (DeliveryStatus.succeeded, 91 * DAY), "old_dead": (DeliveryStatus.dead, 100 * DAY),
            "recent_failed": (DeliveryStatus.failed, 89 * DAY), "old_pending": (DeliveryStatus.pending, None)}
    with db.session() as session:
        for delivery_id, (status, finished_ago) in ages.items():
            session.add(Delivery(
                id=delivery_id, subscription_id=subscription.id, event_id=delivery_id, event_type="t",
                ordering_key="k", payload="{}", status=status.value, next_attempt_at=NOW,
                created_at=NOW - 120 * DAY, finished_at=None if finished_ago is None else NOW - finished_ago,
            ))
        session.flush()
        for delivery_id in ages:
            session.add(DeliveryAttempt(delivery_id=delivery_id, attempted_at=NOW - 120 * DAY, latency_ms=1.0))

    assert purge_delivery_log(db, timedelta(days=90), batch=1) == 2

    with db.session() as session:
        assert sorted(d.id for d in session.exec(select(Delivery))) == ["old_pending", "recent_failed"]
        assert sorted(a.delivery_id for a in session.exec(select(DeliveryAttempt))) == ["old_pending", "recent_failed"]
