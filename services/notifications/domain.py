"""Notification rules: who may subscribe to what, which pairings a subscriber gets, how a webhook is
signed and when it is retried. No HTTP server, no Kafka."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, update

from shared.apikeys import entry_of
from shared.auth import ApiKey, Principal, Role, new_api_key
from shared.errors import Problem
from shared.events import ApiKeyIssued, ApiKeyRevoked, Envelope, EventType, Pairing, PairingsProposed
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
    DeliveryPublic,
    DeliveryStatus,
    Subscription,
    SubscriptionCreate,
    SubscriptionFilters,
    SubscriptionKind,
    SubscriptionPublic,
    SubscriptionStatus,
    SubscriptionWithSecret,
)

EVENT_SOURCE = "/matchnet/notifications"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def now_utc() -> datetime:
    return datetime.now(UTC)


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, "Validation failed", f"{field}: {message}", kind="validation",
        errors=[{"field": field, "message": message}],
    )


# ---- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionTarget:
    """Whose events a subscription receives: one office, or one partner (through its filters)."""

    kind: SubscriptionKind
    office_id: str | None = None
    partner_id: str | None = None


def resolve_target(body: SubscriptionCreate) -> SubscriptionTarget:
    """The office or partner a request subscribes; 422 naming the field that does not fit its kind."""
    if body.kind == SubscriptionKind.office:
        for field in ("partner_id", "filters"):
            if getattr(body, field) is not None:
                raise _invalid(field, "not allowed for kind 'office'")
        if body.office_id is not None and body.prefecture is not None:
            raise _invalid("prefecture", "give office_id or prefecture, not both")
        if body.prefecture is not None:
            return SubscriptionTarget(SubscriptionKind.office, office_id=office_id_for(body.prefecture))
        if body.office_id is None:
            raise _invalid("office_id", "kind 'office' needs office_id or prefecture")
        if body.office_id not in OFFICE_IDS:
            raise _invalid("office_id", "unknown office; office ids are 'office-<JIS prefecture code>'")
        return SubscriptionTarget(SubscriptionKind.office, office_id=body.office_id)
    for field in ("office_id", "prefecture"):
        if getattr(body, field) is not None:
            raise _invalid(field, "not allowed for kind 'partner'")
    if body.partner_id is None:
        raise _invalid("partner_id", "kind 'partner' needs partner_id")
    return SubscriptionTarget(SubscriptionKind.partner, partner_id=body.partner_id)


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
    url: str, *, dev_mode: bool, resolve: Callable[[str], Sequence[str]] = _resolve_host
) -> None:
    """In production a webhook goes over https to a public address only (no SSRF into our network).

    Dev mode accepts any http(s) URL, loopback included, so local receivers work.
    """
    if dev_mode:
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
        filters=body.filters.model_dump(mode="json", exclude_none=True) if body.filters else None,
        secret=new_webhook_secret(),
        created_at=now,
        updated_at=now,
    )


def may_read(principal: Principal, subscription: Subscription) -> bool:
    """Admins and operators read every subscription; offices and partners their own."""
    if principal.role in (Role.admin, Role.operator):
        return True
    if principal.role == Role.office:
        return subscription.kind == SubscriptionKind.office and subscription.office_id == principal.office_id
    return subscription.kind == SubscriptionKind.partner and subscription.partner_id == principal.partner_id


def check_may_manage(principal: Principal, subscription: Subscription) -> None:
    """Whoever may create a subscription may delete it; operators only watch."""
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


def delete_subscription(session: Session, subscription: Subscription) -> None:
    """Soft delete: the row stays readable as 'deleted' and nothing still pending for it is sent."""
    if subscription.status == SubscriptionStatus.deleted:
        return
    now = now_utc()
    subscription.status = SubscriptionStatus.deleted.value
    subscription.updated_at = now
    session.execute(
        update(Delivery)
        .where(
            col(Delivery.subscription_id) == subscription.id,
            col(Delivery.status) == DeliveryStatus.pending.value,
        )
        .values(status=DeliveryStatus.cancelled.value, finished_at=now)
    )


def public_view(subscription: Subscription) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=subscription.id,
        kind=SubscriptionKind(subscription.kind),
        office_id=subscription.office_id,
        partner_id=subscription.partner_id,
        url=subscription.url,
        description=subscription.description,
        filters=SubscriptionFilters.model_validate(subscription.filters) if subscription.filters else None,
        status=SubscriptionStatus(subscription.status),
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def issued_view(subscription: Subscription) -> SubscriptionWithSecret:
    return SubscriptionWithSecret(**public_view(subscription).model_dump(), secret=subscription.secret)


# ---- which pairings a subscriber gets --------------------------------------------------------


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


def wanted_pairings(subscription: Subscription, proposed: PairingsProposed) -> list[Pairing] | None:
    """The pairings of ``proposed`` to send to ``subscription``, or None if it gets nothing.

    An office gets the whole list proposed to it. A partner gets the pairings that pass its filters,
    never one with a confidential need (partners never see those, as in the needs registry).
    """
    if subscription.status != SubscriptionStatus.active:
        return None
    if subscription.kind == SubscriptionKind.office:
        return list(proposed.pairings) if subscription.office_id == proposed.office_id else None
    filters = SubscriptionFilters.model_validate(subscription.filters or {})
    kept = [
        p for p in proposed.pairings
        if p.need.confidentiality != Confidentiality.confidential and pairing_passes(p, filters)
    ]
    return kept or None


def webhook_payload(envelope: Envelope, pairings: Sequence[Pairing]) -> str:
    """The CloudEvent in structured mode with only ``pairings`` kept (unknown fields pass through)."""
    kept = {p.pairing_id for p in pairings}
    event = envelope.to_structured()
    event["data"] = {
        **envelope.data,
        "pairings": [raw for raw in envelope.data.get("pairings", []) if raw.get("pairing_id") in kept],
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def new_delivery(subscription: Subscription, envelope: Envelope, payload: str, traceparent: str | None) -> Delivery:
    now = now_utc()
    return Delivery(
        id=new_id("msg"),
        subscription_id=subscription.id,
        event_id=envelope.id,
        event_type=envelope.type,
        payload=payload,
        next_attempt_at=now,
        traceparent=traceparent,
        created_at=now,
    )


def delivery_view(delivery: Delivery, attempts: Sequence[DeliveryAttempt]) -> DeliveryPublic:
    settled = delivery.status != DeliveryStatus.pending
    return DeliveryPublic(
        id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=DeliveryStatus(delivery.status),
        next_attempt_at=None if settled else delivery.next_attempt_at,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        attempts=[
            DeliveryAttemptPublic(
                attempted_at=a.attempted_at, status_code=a.status_code,
                latency_ms=a.latency_ms, error=a.error,
            )
            for a in attempts
        ],
    )


# ---- signing and retrying --------------------------------------------------------------------


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
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
    """Seconds before the next attempt: full jitter under ``base * 2^(n-1)``, never before the
    receiver's Retry-After, never beyond ``cap_s``."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempts_made - 1, 0), 60))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, cap_s)


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
