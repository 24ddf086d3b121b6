"""Handler for ``pairings.proposed``: one pending delivery per interested subscription.

The shared consumer loop has already claimed the event in the inbox within the same transaction,
so a redelivered event never yields a second delivery.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from sqlmodel import Session, col, or_, select

from shared.db import after_commit
from shared.events import Envelope, EventType, PairingsProposed
from shared.kafka import EventHandler
from shared.telemetry import current_traceparent

from .delivery import ClaimedDelivery
from .domain import new_delivery, wanted_pairings, webhook_payload
from .models import Delivery, Subscription, SubscriptionKind, SubscriptionStatus

CONSUMER_GROUP = "matchnet-notifications"
_INSERT_DELIVERY = Delivery.__table__.insert()  # type: ignore[attr-defined]


def record_deliveries(
    session: Session, envelope: Envelope, lease: timedelta = timedelta(0)
) -> list[ClaimedDelivery]:
    """Add a pending delivery for each active subscription that wants this event.

    Each is claimed at birth for ``lease`` (its first attempt is due only after it), so the worker
    it is handed to sends it at once and no poller takes it meanwhile; if this process dies, the
    lease runs out and any worker sends it. Returns the claimed deliveries.
    """
    if envelope.type != EventType.pairings_proposed:
        return []
    proposed = envelope.payload()
    assert isinstance(proposed, PairingsProposed)
    candidates = session.exec(
        select(Subscription).where(
            col(Subscription.status) == SubscriptionStatus.active.value,
            or_(
                col(Subscription.kind) == SubscriptionKind.partner.value,
                col(Subscription.office_id) == proposed.office_id,
            ),
        ).order_by(col(Subscription.id))
    ).all()
    # The consumer span is active here, so each delivery continues the trace of the original POST.
    traceparent = current_traceparent()
    claimed: list[ClaimedDelivery] = []
    rows: list[dict[str, object]] = []
    for subscription in candidates:
        pairings = wanted_pairings(subscription, proposed)
        if pairings is None:
            continue
        delivery = new_delivery(subscription, envelope, webhook_payload(envelope, pairings), traceparent)
        delivery.next_attempt_at += lease
        rows.append(delivery.model_dump())
        claimed.append(
            ClaimedDelivery(
                id=delivery.id, subscription_id=subscription.id, url=subscription.url, secret=subscription.secret,
                payload=delivery.payload, traceparent=traceparent, attempt=1,
            )
        )
    if rows:  # one Core statement for all of them: this is on every pairing's path
        session.connection().execute(_INSERT_DELIVERY, rows)
    return claimed


class DeliveryHandOver(Protocol):
    """What the handler needs of the delivery worker."""

    lease: timedelta

    def hand_over(self, claimed: list[ClaimedDelivery]) -> None: ...


def pairings_handler(worker: DeliveryHandOver) -> EventHandler:
    """The consumer handler: record deliveries, and hand them to the worker once they commit."""

    def handle(session: Session, envelope: Envelope) -> None:
        claimed = record_deliveries(session, envelope, worker.lease)
        if claimed:
            after_commit(session, lambda: worker.hand_over(claimed))

    return handle
