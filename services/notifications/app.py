"""The notifications service: ``uvicorn services.notifications.app:app`` or ``python -m services.notifications``."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import Session, col, delete

from shared.db import Database
from shared.events import Topic
from shared.housekeeping import PURGE_BATCH, delete_in_batches
from shared.service import EventSubscription, Runtime, create_service_app

from .api import (
    FEED,
    WORKER,
    api_keys_router,
    deliveries_router,
    event_log_feed,
    stream_router,
    subscriptions_router,
)
from .delivery import DeliveryWorker
from .digest import record_due_digests
from .domain import now_utc
from .events import CONSUMER_GROUP, pairings_handler
from .models import Delivery, DeliveryAttempt, NotificationEvent
from .settings import NotificationsSettings

log = logging.getLogger(__name__)
PURGE_INTERVAL_S = 3600.0
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_ATTEMPT = DeliveryAttempt.__table__  # type: ignore[attr-defined]


def purge_event_log(db: Database, retention: timedelta) -> int:
    """Forget logged events older than ``retention``; returns how many."""
    with db.session() as session:
        result = session.execute(
            delete(NotificationEvent).where(col(NotificationEvent.received_at) < now_utc() - retention)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def purge_delivery_log(db: Database, retention: timedelta, batch: int = PURGE_BATCH) -> int:
    """Forget deliveries finished more than ``retention`` ago, with their attempts; returns how many.

    A pending delivery is never finished, so never forgotten. Batches of short transactions.
    """
    cutoff = now_utc() - retention

    def pick(session: Session, limit: int) -> list[Any]:
        return list(session.execute(
            select(_DELIVERY.c.id).where(_DELIVERY.c.finished_at < cutoff).limit(limit)
        ).scalars())

    def remove(session: Session, ids: list[Any]) -> None:
        session.execute(delete(_ATTEMPT).where(_ATTEMPT.c.delivery_id.in_(ids)))
        session.execute(delete(_DELIVERY).where(_DELIVERY.c.id.in_(ids)))

    return delete_in_batches(db, pick, remove, batch)


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    zone = ZoneInfo(settings.digest_time_zone)

    async def install_worker(runtime: Runtime) -> None:
        # Made before the consumers start, so their handler can hand deliveries to it.
        runtime.extras[WORKER] = DeliveryWorker.from_settings(runtime.db, settings)
        event_log_feed(runtime).bind(asyncio.get_running_loop())

    async def run_worker(runtime: Runtime) -> None:
        await runtime.extras[WORKER].run()

    async def make_digests(runtime: Runtime) -> None:
        while True:
            try:
                if await asyncio.to_thread(record_due_digests, runtime.db, zone):
                    runtime.extras[WORKER].wake()
            except Exception as error:  # the database is away: the next round makes them
                log.warning("digests: could not make the due digests (%s)", error)
            await asyncio.sleep(settings.digest_check_interval_s)

    async def purge_old_events(runtime: Runtime) -> None:
        retention = timedelta(seconds=settings.event_log_retention_s)
        delivery_retention = timedelta(seconds=settings.delivery_log_retention_s)
        while True:
            try:
                purged = await asyncio.to_thread(purge_event_log, runtime.db, retention)
                if purged:
                    log.info("event log: forgot %d events older than %s", purged, retention)
                forgotten = await asyncio.to_thread(purge_delivery_log, runtime.db, delivery_retention)
                if forgotten:
                    log.info("delivery log: forgot %d deliveries finished more than %s ago",
                             forgotten, delivery_retention)
            except Exception as error:
                log.warning("event or delivery log: purge failed (%s)", error)
            await asyncio.sleep(PURGE_INTERVAL_S)

    def consumers(runtime: Runtime) -> list[EventSubscription]:
        worker: DeliveryWorker = runtime.extras[WORKER]
        feed = runtime.extras[FEED]
        return [
            EventSubscription(
                topics=[Topic.pairings.value], group_id=CONSUMER_GROUP,
                handler=pairings_handler(worker, on_logged=feed.notify),
            )
        ]

    return create_service_app(
        settings=settings,
        title="matchnet notifications",
        description="Signed webhooks (Standard Webhooks, CloudEvents JSON) and a Server-Sent Events stream "
        "of pairing events for regional offices and partner portals, with a durable retry queue, "
        "replays, daily digests and a delivery log; and the network's API-key registry (issue, list, "
        "revoke), which every other service replicates.",
        routers=[subscriptions_router, deliveries_router, stream_router, api_keys_router],
        subscriptions=consumers,
        on_startup=[install_worker],
        background=[run_worker, make_digests, purge_old_events],
    )


app = create_app()
