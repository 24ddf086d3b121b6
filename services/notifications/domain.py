"""Notification rules: who may subscribe to what, which pairings a subscriber sees, how a webhook is
signed and when it is retried, how subscriptions change. No HTTP server, no Kafka."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import os
import random
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlmodel import Session, col, func, select, update

from shared.apikeys import entry_of
from shared.auth import ApiKey, Principal, Role, new_api_key
from shared.errors import Problem
from shared.events import (
    PAIRING_EVENT_TYPES,
    ApiKeyIssued,
    ApiKeyRevoked,
    DisabledSubscription,
    Envelope,
    EventType,
    Pairing,
    PairingsEvent,
    SubscriptionDisabled,
    redacted_need_title,
)
from shared.ids import new_id
from shared.outbox import record_event
from shared.reference import OFFICE_IDS, PREFECTURES, Confidentiality, block_of, office_id_for

from .models import (
    ApiKeyCreate,
    ApiKeyPublic,
    ApiKeyWithSecret,
    Delivery,
    DeliveryAttempt,
    DeliveryAttemptPublic,
    DeliveryMode,
    DeliveryPublic,
    DeliveryStats,
    DeliveryStatus,
    DisabledReason,
    LatencySummary,
    NotificationEvent,
    ReplayResult,
    Subscription,
    SubscriptionCreate,
    SubscriptionFilters,
    SubscriptionKind,
    SubscriptionPublic,
    SubscriptionStatus,
    SubscriptionUpdate,
    SubscriptionWithSecret,
)

EVENT_SOURCE = "/matchnet/notifications"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
PING_EVENT_TYPE = "jp.matchnet.webhook.ping.v1"
# A pending delivery of a paused subscription waits with this as its next attempt: never due.
HELD = datetime(9999, 1, 1, tzinfo=UTC)
PAIRING_TYPES = frozenset(t.value for t in PAIRING_EVENT_TYPES)
MAX_RETRY_AFTER_S = 86_400.0  # a receiver asking to wait longer is retried after a day


def now_utc() -> datetime:
    return datetime.now(UTC)


_last_stamp = datetime.min.replace(tzinfo=UTC)
_stamp_lock = threading.Lock()


def ordered_now() -> datetime:
    """The time, strictly increasing within this process: rows stamped with it sort in the order
    they were made, which is the order deliveries for one need or seed are sent in."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(now_utc(), _last_stamp + timedelta(microseconds=1))
        return _last_stamp


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, "Validation failed", f"{field}: {message}", kind="validation",
        errors=[{"field": field, "message": message}],
    )


def _conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


# ---- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionTarget:
    """Whose events a subscription receives: one office, or one partner (through its filters)."""

    kind: SubscriptionKind
    office_id: str | None = None
    partner_id: str | None = None


def resolve_target(body: SubscriptionCreate, principal: Principal) -> SubscriptionTarget:
    """The office or partner a request subscribes; 422 naming the field that does not fit its kind.

    An office or partner key that names neither its kind nor its id subscribes itself.
    """
    kind = body.kind or {Role.office: SubscriptionKind.office, Role.partner: SubscriptionKind.partner}.get(
        principal.role
    )
    if kind is None:
        raise _invalid("kind", "required: 'office' or 'partner'")
    if kind == SubscriptionKind.office:
        for field_name in ("partner_id", "filters"):
            if getattr(body, field_name) is not None:
                raise _invalid(field_name, "not allowed for kind 'office'")
        if body.office_id is not None and body.prefecture is not None:
            raise _invalid("prefecture", "give office_id or prefecture, not both")
        if body.prefecture is not None:
            return SubscriptionTarget(SubscriptionKind.office, office_id=office_id_for(body.prefecture))
        if body.office_id is None and principal.role == Role.office:
            return SubscriptionTarget(SubscriptionKind.office, office_id=principal.office_id)
        if body.office_id is None:
            raise _invalid("office_id", "kind 'office' needs office_id or prefecture")
        if body.office_id not in OFFICE_IDS:
            raise _invalid("office_id", "unknown office; office ids are 'office-<JIS prefecture code>'")
        return SubscriptionTarget(SubscriptionKind.office, office_id=body.office_id)
    for field_name in ("office_id", "prefecture"):
        if getattr(body, field_name) is not None:
            raise _invalid(field_name, "not allowed for kind 'partner'")
    _check_mode(SubscriptionKind.partner, body.mode)
    if body.partner_id is None and principal.role == Role.partner:
        return SubscriptionTarget(SubscriptionKind.partner, partner_id=principal.partner_id)
    if body.partner_id is None:
        raise _invalid("partner_id", "kind 'partner' needs partner_id")
    return SubscriptionTarget(SubscriptionKind.partner, partner_id=body.partner_id)


def _check_mode(kind: SubscriptionKind, mode: DeliveryMode | None) -> None:
    if kind == SubscriptionKind.partner and mode == DeliveryMode.daily_digest:
        raise _invalid("mode", "the daily digest is for offices; partners get one delivery per event")


def check_may_subscribe(principal: Principal, target: SubscriptionTarget) -> None:
    """Admins subscribe anyone; an office only itself; a partner only itself; operators nobody."""
    if principal.role == Role.admin:
        return
    if principal.role == Role.office and target == SubscriptionTarget(SubscriptionKind.office, principal.office_id):
        return
    if principal.role == Role.partner and target == SubscriptionTarget(
        SubscriptionKind.partner, partner_id=principal.partner_id
    ):
        return
    raise Problem(403, "Forbidden", "an office subscribes only its own office, a partner only its own partner id")


def _resolve_host(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


def _is_public_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_webhook_url(
    url: str, *, development_mode: bool, resolve: Callable[[str], Sequence[str]] = _resolve_host
) -> None:
    """In production a webhook goes over https to a public address only (no SSRF into our network).

    Development mode accepts any http(s) URL, loopback included, so local receivers work.
    """
    if development_mode:
        return
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise _invalid("url", "must use https")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        raise _invalid("url", "must not point at a loopback or private address")
    try:
        addresses: Sequence[str] = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolve(host)
        except OSError:
            raise _invalid("url", f"host {host} does not resolve") from None
    if not addresses or not all(_is_public_address(a) for a in addresses):
        raise _invalid("url", "must not point at a loopback or private address")


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def new_subscription(body: SubscriptionCreate, target: SubscriptionTarget) -> Subscription:
    now = now_utc()
    return Subscription(
        id=new_id("sub"),
        kind=target.kind.value,
        office_id=target.office_id,
        partner_id=target.partner_id,
        url=str(body.url),
        description=body.description,
        filters=_stored_filters(body.filters),
        mode=body.mode.value,
        secret=new_webhook_secret(),
        created_at=now,
        updated_at=now,
    )


def _stored_filters(filters: SubscriptionFilters | None) -> dict[str, Any] | None:
    stored = filters.model_dump(mode="json", exclude_none=True) if filters else None
    return stored or None


def may_read(principal: Principal, subscription: Subscription) -> bool:
    """Admins and operators read every subscription; offices and partners their own."""
    if principal.role in (Role.admin, Role.operator):
        return True
    if principal.role == Role.office:
        return subscription.kind == SubscriptionKind.office and subscription.office_id == principal.office_id
    return subscription.kind == SubscriptionKind.partner and subscription.partner_id == principal.partner_id


def check_may_manage(principal: Principal, subscription: Subscription) -> None:
    """Whoever may create a subscription may change or delete it; operators only watch."""
    if principal.role == Role.operator or not may_read(principal, subscription):
        raise Problem(403, "Forbidden", "operators cannot change subscriptions")


def visible_subscriptions(principal: Principal) -> list[Any]:
    """SQL conditions on Subscription for what ``principal`` may list."""
    if principal.role in (Role.admin, Role.operator):
        return []
    if principal.role == Role.office:
        return [col(Subscription.kind) == SubscriptionKind.office.value,
                col(Subscription.office_id) == principal.office_id]
    return [col(Subscription.kind) == SubscriptionKind.partner.value,
            col(Subscription.partner_id) == principal.partner_id]


def _settle_pending(session: Session, subscription_id: str, status: DeliveryStatus, now: datetime,
                    keep: str | None = None) -> None:
    """Settle every delivery still pending for a subscription (but ``keep``) as ``status``."""
    conditions = [col(Delivery.subscription_id) == subscription_id, col(Delivery.status) == DeliveryStatus.pending]
    if keep is not None:
        conditions.append(col(Delivery.id) != keep)
    session.execute(update(Delivery).where(*conditions).values(status=status.value, finished_at=now))


def _hold_pending(session: Session, subscription_id: str, until: datetime, *, only_held: bool = False) -> None:
    """Move the next attempt of the pending deliveries of a subscription: all of them to ``HELD``
    (a pause), or the held ones to now (a resume; one in flight keeps its lease)."""
    conditions = [col(Delivery.subscription_id) == subscription_id, col(Delivery.status) == DeliveryStatus.pending]
    if only_held:
        conditions.append(col(Delivery.next_attempt_at) >= HELD)
    session.execute(update(Delivery).where(*conditions).values(next_attempt_at=until))


def delete_subscription(session: Session, subscription: Subscription) -> None:
    """Soft delete: the row stays readable as 'deleted' and nothing still pending for it is sent."""
    if subscription.status == SubscriptionStatus.deleted:
        return
    now = now_utc()
    subscription.status = SubscriptionStatus.deleted.value
    subscription.updated_at = now
    session.add(subscription)
    _settle_pending(session, subscription.id, DeliveryStatus.cancelled, now)


def update_subscription(
    session: Session, subscription: Subscription, change: SubscriptionUpdate, *, development_mode: bool
) -> bool:
    """Apply the fields given; returns True when deliveries may have become due (resumed)."""
    given = change.model_fields_set
    kind = SubscriptionKind(subscription.kind)
    if subscription.status == SubscriptionStatus.deleted:
        raise _conflict("a deleted subscription cannot change")
    for name in given:
        if getattr(change, name) is None and name in ("url", "mode", "status"):
            raise _invalid(name, "may not be null")
    if "filters" in given and kind == SubscriptionKind.office:
        raise _invalid("filters", "not allowed for kind 'office'")
    if "mode" in given:
        _check_mode(kind, change.mode)
    now = now_utc()
    if "url" in given:
        check_webhook_url(str(change.url), development_mode=development_mode)
        subscription.url = str(change.url)
    if "description" in given:
        subscription.description = change.description
    if "filters" in given:
        subscription.filters = _stored_filters(change.filters)
    if "mode" in given and change.mode is not None:
        subscription.mode = change.mode.value
    resumed = False
    if "status" in given and change.status != subscription.status:
        if change.status == SubscriptionStatus.paused:
            if subscription.status != SubscriptionStatus.active:
                raise _conflict(f"only an active subscription can be paused; this one is {subscription.status}")
            _hold_pending(session, subscription.id, HELD)
        else:  # resume a paused one, or enable again a disabled one: its failure run starts afresh
            _hold_pending(session, subscription.id, now, only_held=True)
            subscription.disabled_reason = None
            subscription.failing_since = None
            subscription.consecutive_failures = 0
            resumed = True
        subscription.status = str(change.status)
    subscription.updated_at = now
    session.add(subscription)
    return resumed


def rotate_secret(subscription: Subscription, overlap: timedelta) -> None:
    """A new signing secret; the current one keeps signing beside it for ``overlap``."""
    if subscription.status == SubscriptionStatus.deleted:
        raise _conflict("a deleted subscription has no secret to rotate")
    now = now_utc()
    if overlap > timedelta(0):
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_expires_at = now + overlap
    else:
        subscription.previous_secret = None
        subscription.previous_secret_expires_at = None
    subscription.secret = new_webhook_secret()
    subscription.updated_at = now


def signing_secrets(subscription: Subscription, now: datetime | None = None) -> tuple[str, ...]:
    """The secrets that sign a delivery now: the current one, and the previous one during its overlap."""
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and expires > (now or now_utc()):
        return (subscription.secret, subscription.previous_secret)
    return (subscription.secret,)


def public_view(subscription: Subscription) -> SubscriptionPublic:
    expires = subscription.previous_secret_expires_at
    return SubscriptionPublic(
        id=subscription.id,
        kind=SubscriptionKind(subscription.kind),
        office_id=subscription.office_id,
        partner_id=subscription.partner_id,
        url=subscription.url,
        description=subscription.description,
        filters=SubscriptionFilters.model_validate(subscription.filters) if subscription.filters else None,
        mode=DeliveryMode(subscription.mode),
        status=SubscriptionStatus(subscription.status),
        disabled_reason=DisabledReason(subscription.disabled_reason) if subscription.disabled_reason else None,
        failing_since=subscription.failing_since,
        consecutive_failures=subscription.consecutive_failures,
        previous_secret_expires_at=expires if expires is not None and expires > now_utc() else None,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def issued_view(subscription: Subscription) -> SubscriptionWithSecret:
    return SubscriptionWithSecret(**public_view(subscription).model_dump(), secret=subscription.secret)


# ---- failure runs ----------------------------------------------------------------------------


def disable_subscription(
    session: Session,
    subscription: Subscription,
    reason: DisabledReason,
    now: datetime,
    *,
    last_error: str | None = None,
    keep: str | None = None,
) -> None:
    """Stop a subscription the service gave up on, cancel what waits for it (but ``keep``, which the
    caller settles), and tell the operators (``subscription.disabled`` through the outbox, in this
    transaction)."""
    if subscription.status in (SubscriptionStatus.disabled, SubscriptionStatus.deleted):
        return
    subscription.status = SubscriptionStatus.disabled.value
    subscription.disabled_reason = reason.value
    subscription.updated_at = now
    session.add(subscription)
    _settle_pending(session, subscription.id, DeliveryStatus.cancelled, now, keep=keep)
    record_event(session, Envelope.wrap(
        EventType.subscription_disabled, EVENT_SOURCE, subscription.id,
        SubscriptionDisabled(
            subscription=DisabledSubscription(
                id=subscription.id, kind=SubscriptionKind(subscription.kind).value, office_id=subscription.office_id,
                partner_id=subscription.partner_id, url=subscription.url,
            ),
            reason=reason.value, failing_since=subscription.failing_since,
            consecutive_failures=subscription.consecutive_failures, last_error=last_error, disabled_at=now,
        ),
    ))


# ---- who sees which pairings -----------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Who receives pairing events and through which filters: a subscription, or a stream reader.

    An office sees its own office's events; a partner what passes its filters, never a confidential
    need; an operator (admin or operator key) every event, through the filters it gives.
    """

    kind: Literal["office", "partner", "operator"]
    office_id: str | None = None
    filters: SubscriptionFilters = dataclasses.field(default_factory=SubscriptionFilters)


def audience_of(subscription: Subscription) -> Audience:
    if subscription.kind == SubscriptionKind.office:
        return Audience("office", office_id=subscription.office_id)
    return Audience("partner", filters=SubscriptionFilters.model_validate(subscription.filters or {}))


def _blocks_of(prefectures: set[str]) -> set[str]:
    return {block_of(code) for code in prefectures if code in PREFECTURES}


def pairing_passes(pairing: Pairing, filters: SubscriptionFilters) -> bool:
    """Every filter that is set must hold. A place or field filter holds if the seed's or the need's does."""
    places = {pairing.seed.prefecture, pairing.need.prefecture}
    if filters.prefectures is not None and not places & set(filters.prefectures):
        return False
    if filters.blocks is not None and not _blocks_of(places) & set(filters.blocks):
        return False
    if filters.fields is not None and not {*pairing.seed.fields, *pairing.need.fields} & set(filters.fields):
        return False
    return filters.min_score is None or pairing.score >= filters.min_score


def visible_pairings(audience: Audience, event_type: str, event: PairingsEvent) -> list[Pairing] | None:
    """The pairings of ``event`` that ``audience`` gets, or None if it gets nothing of it.

    An office gets the whole list proposed to it. Defensively, a confidential need reaches no one
    but its own office (and operators), whatever the event says: the matcher already sends only
    a redacted summary of it, and this keeps it so if that ever changes.
    """
    filters = audience.filters
    if filters.event_types is not None and event_type not in filters.event_types:
        return None
    if audience.kind == "office":
        if event.office_id != audience.office_id:
            return None
        return [p for p in event.pairings
                if p.need.confidentiality != Confidentiality.confidential or p.need.office_id == audience.office_id]
    if audience.kind == "operator" and audience.office_id is not None and event.office_id != audience.office_id:
        return None
    kept = [
        p for p in event.pairings
        if (audience.kind == "operator" or p.need.confidentiality != Confidentiality.confidential)
        and pairing_passes(p, filters)
    ]
    return kept or None


def wanted_pairings(subscription: Subscription, proposed: PairingsEvent,
                    event_type: str = EventType.pairings_proposed.value) -> list[Pairing] | None:
    """The pairings of ``proposed`` to send to ``subscription``, or None if it gets nothing."""
    if subscription.status != SubscriptionStatus.active:
        return None
    return visible_pairings(audience_of(subscription), event_type, proposed)


def _safe_pairing(raw: dict[str, Any], pairing: Pairing) -> dict[str, Any]:
    """A pairing as sent: a confidential need shows only its summary fields and the redacted title."""
    if pairing.need.confidentiality != Confidentiality.confidential:
        return raw
    need = pairing.need.model_dump(mode="json")
    need["title"] = redacted_need_title(pairing.need.fields)
    return {**raw, "need": need}


def webhook_payload(envelope: Envelope, pairings: Sequence[Pairing]) -> str:
    """The CloudEvent in structured mode with only ``pairings`` kept (unknown fields pass through)."""
    kept = {p.pairing_id: p for p in pairings}
    event = envelope.to_structured()
    event["data"] = {
        **envelope.data,
        "pairings": [_safe_pairing(raw, kept[raw["pairing_id"]])
                     for raw in envelope.data.get("pairings", []) if raw.get("pairing_id") in kept],
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def pairing_event(envelope: Envelope) -> PairingsEvent | None:
    """The payload of a pairing event (any type of ``PAIRING_EVENT_TYPES``), or None for another event."""
    if envelope.type not in PAIRING_TYPES:
        return None
    payload = envelope.payload()
    return payload if isinstance(payload, PairingsEvent) else None


def event_view(envelope: Envelope, audience: Audience) -> str | None:
    """The CloudEvent JSON ``audience`` may see of a pairing event, or None."""
    event = pairing_event(envelope)
    if event is None:
        return None
    pairings = visible_pairings(audience, envelope.type, event)
    return None if pairings is None else webhook_payload(envelope, pairings)


def ordering_key(event: PairingsEvent) -> str:
    """The aggregate whose events a subscription receives in order: the need or seed that caused it."""
    return f"{event.trigger_kind}:{event.trigger_id}"


def new_delivery(
    subscription: Subscription,
    envelope: Envelope,
    payload: str,
    traceparent: str | None,
    *,
    key: str = "",
    now: datetime | None = None,
) -> Delivery:
    now = now or now_utc()
    return Delivery(
        id=new_id("msg"),
        subscription_id=subscription.id,
        event_id=envelope.id,
        event_type=envelope.type,
        ordering_key=key,
        payload=payload,
        next_attempt_at=now,
        traceparent=traceparent,
        created_at=now,
    )


def delivery_row(
    subscription_id: str, envelope: Envelope, payload: str, traceparent: str | None, key: str, now: datetime
) -> dict[str, Any]:
    """The columns of a new pending delivery, as ``new_delivery`` makes them, for a Core insert."""
    return {
        "id": new_id("msg"), "subscription_id": subscription_id, "event_id": envelope.id,
        "event_type": envelope.type, "ordering_key": key, "payload": payload,
        "status": DeliveryStatus.pending.value, "attempts": 0, "next_attempt_at": now, "traceparent": traceparent,
        "created_at": now, "finished_at": None,
    }


def requeue(delivery: Delivery, subscription: Subscription, now: datetime) -> None:
    """Send a settled delivery again, as it was (same webhook-id), with a fresh retry schedule."""
    delivery.status = DeliveryStatus.pending.value
    delivery.attempts = 0
    delivery.finished_at = None
    delivery.next_attempt_at = HELD if subscription.status == SubscriptionStatus.paused else now


def check_may_requeue(subscription: Subscription) -> None:
    if subscription.status not in (SubscriptionStatus.active, SubscriptionStatus.paused):
        raise _conflict(f"the subscription is {subscription.status}; enable it first (PATCH status 'active')")


def delivery_view(delivery: Delivery, attempts: Sequence[DeliveryAttempt]) -> DeliveryPublic:
    waiting = delivery.status == DeliveryStatus.pending and delivery.next_attempt_at < HELD
    return DeliveryPublic(
        id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=DeliveryStatus(delivery.status),
        next_attempt_at=delivery.next_attempt_at if waiting else None,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        attempts=[
            DeliveryAttemptPublic(
                attempted_at=a.attempted_at, status_code=a.status_code,
                latency_ms=a.latency_ms, error=a.error,
                next_attempt_at=a.next_attempt_at if a.next_attempt_at is None or a.next_attempt_at < HELD else None,
            )
            for a in attempts
        ],
    )


def ping_payload(subscription: Subscription) -> str:
    """The body of a test ping: a CloudEvent that names the subscription."""
    event = {
        "specversion": "1.0", "id": new_id("evt"), "source": EVENT_SOURCE, "type": PING_EVENT_TYPE,
        "time": now_utc().isoformat(), "subject": subscription.id, "datacontenttype": "application/json",
        "data": {"subscription_id": subscription.id, "message": "matchnet test ping"},
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# ---- replay and statistics -------------------------------------------------------------------


def replay_since(session: Session, subscription: Subscription, since: datetime, now: datetime) -> ReplayResult:
    """Queue again what the subscription got since ``since`` (same webhook-id), and queue for the
    first time the logged events it would have got but has no delivery of (events from before it
    subscribed, or filtered out then). A digest subscription gets its digests again."""
    check_may_requeue(subscription)
    if subscription.mode == DeliveryMode.daily_digest:
        digests = session.exec(
            select(Delivery).where(col(Delivery.subscription_id) == subscription.id,
                                   col(Delivery.created_at) >= since).order_by(col(Delivery.created_at))
        ).all()
        queued = 0
        for delivery in digests:
            if delivery.status != DeliveryStatus.pending:
                requeue(delivery, subscription, now)
                session.add(delivery)
                queued += 1
        return ReplayResult(subscription_id=subscription.id, since=since, events=len(digests), queued=queued)
    audience = audience_of(subscription)
    logged = session.exec(
        select(NotificationEvent)
        .where(col(NotificationEvent.received_at) >= since)
        .order_by(col(NotificationEvent.seq))
    ).all()
    wanted: list[tuple[NotificationEvent, Envelope, str]] = []
    for row in logged:
        envelope = Envelope.model_validate_json(row.event)
        view = event_view(envelope, audience)
        if view is not None:
            wanted.append((row, envelope, view))
    existing: dict[str, Delivery] = {}
    event_ids = [row.event_id for row, _, _ in wanted]
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start:start + 500]
        for delivery in session.exec(
            select(Delivery).where(col(Delivery.subscription_id) == subscription.id, col(Delivery.event_id).in_(chunk))
        ):
            existing[delivery.event_id] = delivery
    queued = 0
    for row, envelope, view in wanted:
        sent_before = existing.get(row.event_id)
        if sent_before is not None:
            if sent_before.status == DeliveryStatus.pending:
                continue
            delivery = sent_before
            requeue(delivery, subscription, now)
        else:
            # Stamped with the event's arrival, so it is sent in event order among this need's or seed's.
            delivery = new_delivery(subscription, envelope, view, None, key=row.ordering_key, now=row.received_at)
            delivery.next_attempt_at = HELD if subscription.status == SubscriptionStatus.paused else now
        session.add(delivery)
        queued += 1
    return ReplayResult(subscription_id=subscription.id, since=since, events=len(wanted), queued=queued)


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def delivery_stats(session: Session, scope: Sequence[Any], now: datetime, sample: int = 10_000) -> DeliveryStats:
    """Counts by status, the oldest pending delivery's age, and the last hour's attempts (outcomes
    and latency percentiles over up to ``sample`` of the latest), for the deliveries in ``scope``."""
    counts = dict.fromkeys(DeliveryStatus, 0)
    for status, count in session.exec(
        select(Delivery.status, func.count()).where(*scope).group_by(col(Delivery.status))
    ).all():
        counts[DeliveryStatus(status)] = int(count)
    oldest = session.exec(
        select(func.min(col(Delivery.created_at))).where(*scope, col(Delivery.status) == DeliveryStatus.pending.value)
    ).one()
    if isinstance(oldest, str):  # SQLite's min() of a timestamp column comes back as text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    attempts = session.exec(
        select(DeliveryAttempt.status_code, DeliveryAttempt.latency_ms)
        .join(Delivery, col(Delivery.id) == col(DeliveryAttempt.delivery_id))
        .where(*scope, col(DeliveryAttempt.attempted_at) >= now - timedelta(hours=1))
        .order_by(col(DeliveryAttempt.id).desc()).limit(sample)
    ).all()
    outcomes = {verdict.value: 0 for verdict in AttemptVerdict}
    for status_code, _ in attempts:
        outcomes[judge_attempt(status_code).value] += 1
    latencies = sorted(latency for _, latency in attempts)
    return DeliveryStats(
        deliveries=counts,
        oldest_pending_age_s=round((now - oldest).total_seconds(), 3) if oldest is not None else None,
        attempts_last_hour=outcomes,
        attempt_latency_last_hour=LatencySummary(
            count=len(latencies), p50_ms=_percentile(latencies, 0.5), p90_ms=_percentile(latencies, 0.9),
            p99_ms=_percentile(latencies, 0.99), max_ms=latencies[-1] if latencies else None,
        ),
    )


# ---- signing and retrying --------------------------------------------------------------------


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(secrets: str | Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; several secrets (during a rotation) give space-separated signatures."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign_webhook(key, webhook_id, timestamp, body) for key in keys),
    }


class AttemptVerdict(StrEnum):
    delivered = "delivered"
    gone = "gone"  # 410: the receiver wants no more; the subscription is disabled
    retry = "retry"


def judge_attempt(status_code: int | None) -> AttemptVerdict:
    """2xx delivers, 410 Gone disables, anything else (or no answer at all) is retried."""
    if status_code is not None and 200 <= status_code < 300:
        return AttemptVerdict.delivered
    if status_code == 410:
        return AttemptVerdict.gone
    return AttemptVerdict.retry


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP date with "-0000" parses naive; HTTP dates are UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def retry_delay(
    attempts_made: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 86_400.0,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next attempt: between half and all of ``min(base * 2^(n-1), cap)`` (jitter
    spreads retries, the lower half keeps the schedule's length), and never before the receiver's
    Retry-After (honoured up to a day, whatever the cap)."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempts_made - 1, 0), 60))
    delay = ceiling * (rng or random).uniform(0.5, 1.0)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def retry_schedule(max_attempts: int, base_s: float, cap_s: float) -> list[float]:
    """The longest wait before each retry (attempt 2 … max_attempts), without Retry-After."""
    return [min(cap_s, base_s * 2 ** (n - 1)) for n in range(1, max_attempts)]


# ---- API keys --------------------------------------------------------------------------------


def check_key_scope(body: ApiKeyCreate) -> None:
    """An office key names a known office, a partner key its partner; nothing else names either."""
    wanted = {Role.office: "office_id", Role.partner: "partner_id"}.get(body.role)
    for field in ("office_id", "partner_id"):
        if field != wanted and getattr(body, field) is not None:
            raise _invalid(field, f"not allowed for role '{body.role.value}'")
    if wanted is not None and getattr(body, wanted) is None:
        raise _invalid(wanted, f"required for role '{body.role.value}'")
    if body.role == Role.office and body.office_id not in OFFICE_IDS:
        raise _invalid("office_id", "unknown office; office ids are 'office-<JIS prefecture code>'")


def issue_api_key(session: Session, body: ApiKeyCreate, issuer: Principal) -> tuple[ApiKey, str]:
    """Store a new key (its hash only) and its ``apikey.issued`` event; returns the row and the key."""
    check_key_scope(body)
    issued = new_api_key()
    record = ApiKey(
        key_id=issued.key_id, role=body.role.value, office_id=body.office_id, partner_id=body.partner_id,
        label=body.label, secret_hash=issued.secret_hash, created_by=issuer.key_id, created_at=now_utc(),
    )
    session.add(record)
    record_event(session, Envelope.wrap(
        EventType.api_key_issued, EVENT_SOURCE, record.key_id, ApiKeyIssued(key=entry_of(record))
    ))
    return record, issued.token


def revoke_api_key(session: Session, record: ApiKey, revoker: Principal) -> None:
    """Revoke a key once (a second revocation changes nothing) and tell every service."""
    if record.revoked_at is not None:
        return
    record.revoked_at = now_utc()
    session.add(record)
    record_event(session, Envelope.wrap(
        EventType.api_key_revoked, EVENT_SOURCE, record.key_id,
        ApiKeyRevoked(key=entry_of(record), revoked_by=revoker.key_id),
    ))


def api_key_view(record: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(record, from_attributes=True)


def issued_key_view(record: ApiKey, token: str) -> ApiKeyWithSecret:
    return ApiKeyWithSecret(**api_key_view(record).model_dump(), api_key=token)
