"""The delivery instruments (OpenTelemetry metrics), named ``matchnet.deliveries.*``.

Counters and the latency histogram are updated by the delivery worker as attempts end; the pending
count and the age of the oldest pending delivery are read from the database when collected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from sqlmodel import col, func, select

from shared.db import Database
from shared.telemetry import meter as service_meter

from .domain import now_utc
from .models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)
SETTLED = (DeliveryStatus.succeeded, DeliveryStatus.failed, DeliveryStatus.dead, DeliveryStatus.cancelled)


def pending_summary(db: Database) -> tuple[int, datetime | None]:
    """How many deliveries are pending, and when the oldest of them was recorded."""
    with db.session() as session:
        count, oldest = session.exec(
            select(func.count(), func.min(col(Delivery.created_at)))
            .where(col(Delivery.status) == DeliveryStatus.pending.value)
        ).one()
    return int(count), oldest


class DeliveryMetrics:
    """The instruments of one worker; ``meter`` defaults to the service's (tests pass their own)."""

    def __init__(self, db: Database | None = None, meter: Meter | None = None) -> None:
        meter = meter or service_meter("matchnet.notifications")
        self._db = db
        self.attempts = meter.create_counter(
            "matchnet.deliveries.attempts", unit="{attempt}",
            description="webhook attempts by outcome: delivered (2xx), gone (410), retry (anything else)",
        )
        self.attempt_duration = meter.create_histogram(
            "matchnet.deliveries.attempt.duration", unit="ms",
            description="time from sending a webhook to its answer (or to the error)",
        )
        self.settled = {
            status: meter.create_counter(
                f"matchnet.deliveries.{status.value}", unit="{delivery}",
                description=f"deliveries that ended {status.value}",
            )
            for status in SETTLED
        }
        meter.create_observable_gauge(
            "matchnet.deliveries.pending", callbacks=[self._observe_pending], unit="{delivery}",
            description="deliveries waiting for their first or next attempt",
        )
        meter.create_observable_gauge(
            "matchnet.deliveries.oldest_pending.age", callbacks=[self._observe_oldest], unit="s",
            description="age of the oldest pending delivery (0 when none)",
        )
        self._last: tuple[int, datetime | None] | None = None

    def attempt_ended(self, outcome: str, latency_ms: float, attributes: dict[str, Any] | None = None) -> None:
        self.attempts.add(1, {"outcome": outcome, **(attributes or {})})
        self.attempt_duration.record(latency_ms, {"outcome": outcome})

    def delivery_settled(self, status: str) -> None:
        counter = self.settled.get(DeliveryStatus(status)) if status in DeliveryStatus._value2member_map_ else None
        if counter is not None:
            counter.add(1)

    def _summary(self) -> tuple[int, datetime | None] | None:
        if self._db is None:
            return None
        try:
            self._last = pending_summary(self._db)
        except Exception as error:  # collection must not fail because the database is away
            log.warning("delivery metrics: could not read the pending deliveries (%s)", error)
        return self._last

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        summary = self._summary()
        return [] if summary is None else [Observation(summary[0])]

    def _observe_oldest(self, options: CallbackOptions) -> Iterable[Observation]:
        summary = self._last if self._last is not None else self._summary()
        if summary is None:
            return []
        oldest = summary[1]
        return [Observation((now_utc() - oldest).total_seconds() if oldest else 0.0)]
