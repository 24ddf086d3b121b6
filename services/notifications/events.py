"""Handler for the pairing events (every type of ``PAIRING_EVENT_TYPES``): log the event, and add one
pending delivery per interested subscription.

The shared consumer loop has already claimed the event in the inbox within the same transaction,
so a redelivered event never yields a second log entry or delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam
from sqlmodel import Session, col, or_, select

from shared.db import after_commit
from shared.events import Envelope
from shared.kafka import EventHandler
from shared.telemetry import current_traceparent

from .delivery import ClaimedDelivery, OrderingSlot
from .domain import (
    HELD,
    audience_of,
    delivery_row,
    ordered_now,
    ordering_key,
    pairing_event,
    signing_secrets,
    visible_pairings,
    webhook_payload,
)
from .models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    NotificationEvent,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
)

CONSUMER_GROUP = "matchnet-notifications"
_INSERT_DELIVERY = Delivery.__table__.insert()  # type: ignore[attr-defined]
_INSERT_EVENT = NotificationEvent.__table__.insert()  # type: ignore[attr-defined]


@dataclass
class RecordedEvent:
    """What recording one event left to do after its commit."""

    claimed: list[ClaimedDelivery] = field(default_factory=list)  # to send at once
    followers: list[OrderingSlot] = field(default_factory=list)  # behind an earlier pending delivery
    logged: bool = False  # the event log grew


def _subscribers_statement() -> Any:
    """Subscriptions that may want an event of office ``:office_id``, each with whether a delivery for
    the same need or seed (``:ordering_key``) is still pending (then the new one waits behind it).
    One statement, built once: it is on every pairing's path."""
    earlier_pending = (
        select(Delivery.id)
        .where(
            col(Delivery.subscription_id) == col(Subscription.id),
            col(Delivery.ordering_key) == bindparam("ordering_key"),
            col(Delivery.status) == DeliveryStatus.pending.value,
        )
        .exists()
        .label("busy")
    )
    return (
        select(Subscription, earlier_pending)
        .where(
            col(Subscription.status).in_([SubscriptionStatus.active.value, SubscriptionStatus.paused.value]),
            col(Subscription.mode) == DeliveryMode.per_event.value,
            or_(
                col(Subscription.kind) == SubscriptionKind.partner.value,
                col(Subscription.office_id) == bindparam("office_id"),
            ),
        )
        .order_by(col(Subscription.id))
    )


_SUBSCRIBERS = _subscribers_statement()


def record_pairing_event(session: Session, envelope: Envelope, lease: timedelta = timedelta(0)) -> RecordedEvent:
    """Log a pairing event and add a pending delivery for each subscription that wants it.

    A delivery with nothing pending before it for the same need or seed is claimed at birth for
    ``lease`` (its first attempt is due only after it), so the worker it is handed to sends it at
    once and no poller takes it meanwhile; if this process dies, the lease runs out and any worker
    sends it. Others wait their turn in the database; a paused subscription's are held.
    """
    event = pairing_event(envelope)
    if event is None:
        return RecordedEvent()
    now = ordered_now()
    key = ordering_key(event)
    connection = session.connection()
    connection.execute(_INSERT_EVENT, {
        "event_id": envelope.id, "event_type": envelope.type, "office_id": event.office_id, "ordering_key": key,
        "event": envelope.model_dump_json(), "received_at": now,
    })
    recorded = RecordedEvent(logged=True)
    # The consumer span is active here, so each delivery continues the trace of the original POST.
    traceparent = current_traceparent()
    rows: list[dict[str, Any]] = []
    candidates = session.exec(_SUBSCRIBERS, params={"office_id": event.office_id, "ordering_key": key}).all()
    for subscription, busy in candidates:
        pairings = visible_pairings(audience_of(subscription), envelope.type, event)
        if pairings is None:
            continue
        # A plain row, not a model: validating a Delivery per subscription costs more than the insert.
        row = delivery_row(subscription.id, envelope, webhook_payload(envelope, pairings), traceparent, key, now)
        if subscription.status == SubscriptionStatus.paused:
            row["next_attempt_at"] = HELD
        elif busy:
            recorded.followers.append((subscription.id, key))
        else:
            row["next_attempt_at"] = now + lease
            recorded.claimed.append(
                ClaimedDelivery(
                    id=row["id"], subscription_id=subscription.id, url=subscription.url,
                    secrets=signing_secrets(subscription, now), payload=row["payload"],
                    traceparent=traceparent, attempt=1, ordering_key=key,
                )
            )
        rows.append(row)
    if rows:  # one Core statement for all of them: this is on every pairing's path
        connection.execute(_INSERT_DELIVERY, rows)
    return recorded


def record_deliveries(
    session: Session, envelope: Envelope, lease: timedelta = timedelta(0)
) -> list[ClaimedDelivery]:
    """``record_pairing_event``, returning the deliveries claimed for an immediate first attempt."""
    return record_pairing_event(session, envelope, lease).claimed


class DeliveryHandOver(Protocol):
    """What the handler needs of the delivery worker."""

    lease: timedelta

    def hand_over(self, claimed: list[ClaimedDelivery]) -> None: ...

    def note_followers(self, slots: list[OrderingSlot]) -> None: ...


def pairings_handler(worker: DeliveryHandOver, on_logged: Callable[[], None] | None = None) -> EventHandler:
    """The consumer handler: record the event and its deliveries; once they commit, hand the
    deliveries to the worker and tell the streams (``on_logged``)."""

    def handle(session: Session, envelope: Envelope) -> None:
        recorded = record_pairing_event(session, envelope, worker.lease)
        if recorded.claimed:
            after_commit(session, lambda: worker.hand_over(recorded.claimed))
        if recorded.followers:
            after_commit(session, lambda: worker.note_followers(recorded.followers))
        if recorded.logged and on_logged is not None:
            after_commit(session, on_logged)

    return handle
