"""Handler for ``pairings.proposed``: one pending delivery per interested subscription.

The shared consumer loop has already claimed the event in the inbox within the same transaction,
so a redelivered event never yields a second delivery.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, col, or_, select

from shared.db import after_commit
from shared.events import Envelope, EventType, PairingsProposed
from shared.kafka import EventHandler
from shared.telemetry import current_traceparent

from .domain import new_delivery, wanted_pairings, webhook_payload
from .models import Subscription, SubscriptionKind, SubscriptionStatus

CONSUMER_GROUP = "matchnet-notifications"


def record_deliveries(session: Session, envelope: Envelope) -> int:
    """Add a pending delivery for each active subscription that wants this event; returns how many."""
    if envelope.type != EventType.pairings_proposed:
        return 0
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
    recorded = 0
    for subscription in candidates:
        pairings = wanted_pairings(subscription, proposed)
        if pairings is None:
            continue
        session.add(new_delivery(subscription, envelope, webhook_payload(envelope, pairings), traceparent))
        recorded += 1
    return recorded


def pairings_handler(wake: Callable[[], None]) -> EventHandler:
    """The consumer handler: record deliveries, and wake the delivery worker once they commit."""

    def handle(session: Session, envelope: Envelope) -> None:
        if record_deliveries(session, envelope):
            after_commit(session, wake)

    return handle
