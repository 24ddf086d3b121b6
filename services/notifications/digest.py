"""The office daily digest: instead of one webhook per event, one signed delivery a day listing the
day's pairings, ranked by score.

A day is a calendar day in ``digest_time_zone`` (Asia/Tokyo); its digest is made from the event log
just after the day ends and delivered like any other webhook (same signing, retries, log). A day
with no pairing for the office sends nothing. Days missed while the service was down (up to a week
back) are made when it returns; each day's digest is made once (its event id is the day).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.db import Database
from shared.events import Envelope
from shared.ids import new_id

from .domain import (
    EVENT_SOURCE,
    HELD,
    PAIRING_TYPES,
    audience_of,
    now_utc,
    ordered_now,
    pairing_event,
    visible_pairings,
    webhook_payload,
)
from .models import Delivery, DeliveryMode, NotificationEvent, Subscription, SubscriptionStatus

log = logging.getLogger(__name__)
DIGEST_EVENT_TYPE = "jp.matchnet.pairings.digest.v1"
DIGEST_ORDERING_KEY = "digest"
CATCH_UP_DAYS = 7


def digest_event_id(day: date) -> str:
    return f"digest:{day.isoformat()}"


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The start and end of a calendar day in ``zone``, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def digest_payload(
    subscription: Subscription, day: date, zone: ZoneInfo, logged: list[NotificationEvent], now: datetime
) -> str | None:
    """The digest CloudEvent of ``day`` from its logged events, or None when it lists nothing.

    Each pairing appears once, as the latest event of the day told it, ranked by score.
    """
    audience = audience_of(subscription)
    latest: dict[str, dict[str, Any]] = {}
    for row in logged:
        envelope = Envelope.model_validate_json(row.event)
        pairings_event = pairing_event(envelope)
        if pairings_event is None:
            continue
        pairings = visible_pairings(audience, envelope.type, pairings_event)
        if not pairings:
            continue
        sent = json.loads(webhook_payload(envelope, pairings))["data"]["pairings"]
        for pairing in sent:
            latest[pairing["pairing_id"]] = {
                **pairing, "rank_in_event": pairing.get("rank"), "event_id": envelope.id,
                "event_type": envelope.type, "received_at": row.received_at.isoformat(),
            }
    if not latest:
        return None
    ranked = sorted(latest.values(), key=lambda p: (-float(p.get("score", 0)), p["pairing_id"]))
    start, end = day_window(day, zone)
    event = {
        "specversion": "1.0", "id": new_id("evt"), "source": EVENT_SOURCE, "type": DIGEST_EVENT_TYPE,
        "time": now.isoformat(), "subject": subscription.office_id, "datacontenttype": "application/json",
        "data": {
            "office_id": subscription.office_id, "date": day.isoformat(), "time_zone": zone.key,
            "from": start.isoformat(), "to": end.isoformat(),
            "pairings": [{**pairing, "rank": rank} for rank, pairing in enumerate(ranked, start=1)],
        },
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def record_due_digests(db: Database, zone: ZoneInfo, now: datetime | None = None) -> list[str]:
    """Make the digests of the days that have ended (the last week, from the subscription's
    creation on) and are not made yet; returns the new deliveries' ids."""
    now = now or now_utc()
    today = now.astimezone(zone).date()
    with db.session() as session:
        subscriptions = session.exec(
            select(Subscription).where(
                col(Subscription.mode) == DeliveryMode.daily_digest.value,
                col(Subscription.status).in_([SubscriptionStatus.active.value, SubscriptionStatus.paused.value]),
            )
        ).all()
    made: list[str] = []
    for subscription in subscriptions:
        first_day = max(today - timedelta(days=CATCH_UP_DAYS), subscription.created_at.astimezone(zone).date())
        days = [first_day + timedelta(days=n) for n in range((today - first_day).days)]
        for day in days:
            try:
                with db.session() as session:
                    delivery_id = _record_digest(session, subscription, day, zone, now)
            except IntegrityError:  # another replica made it first
                continue
            if delivery_id is not None:
                made.append(delivery_id)
    return made


def _record_digest(
    session: Session, subscription: Subscription, day: date, zone: ZoneInfo, now: datetime
) -> str | None:
    event_id = digest_event_id(day)
    made_before = session.exec(
        select(Delivery.id).where(col(Delivery.subscription_id) == subscription.id, col(Delivery.event_id) == event_id)
    ).first()
    if made_before is not None:
        return None
    start, end = day_window(day, zone)
    logged = list(session.exec(
        select(NotificationEvent).where(
            col(NotificationEvent.office_id) == subscription.office_id,
            col(NotificationEvent.event_type).in_(PAIRING_TYPES),
            col(NotificationEvent.received_at) >= start, col(NotificationEvent.received_at) < end,
        ).order_by(col(NotificationEvent.seq))
    ).all())
    payload = digest_payload(subscription, day, zone, logged, now)
    if payload is None:
        return None
    stamp = ordered_now()
    delivery = Delivery(
        id=new_id("msg"), subscription_id=subscription.id, event_id=event_id, event_type=DIGEST_EVENT_TYPE,
        ordering_key=DIGEST_ORDERING_KEY, payload=payload,
        next_attempt_at=HELD if subscription.status == SubscriptionStatus.paused else stamp, created_at=stamp,
    )
    session.add(delivery)
    session.flush()
    log.info("digest of %s for %s recorded (%s)", day, subscription.id, delivery.id)
    return delivery.id
