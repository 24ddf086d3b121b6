from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, HttpUrl, field_serializer
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.auth import Role
from shared.db import UtcDateTime
from shared.events import PAIRING_EVENT_TYPES
from shared.reference import BlockCode, FieldCode, PrefectureCode


class SubscriptionKind(StrEnum):
    office = "office"  # a regional support office: every list proposed to it
    partner = "partner"  # a partner portal: pairings that pass its filters


class SubscriptionStatus(StrEnum):
    active = "active"
    paused = "paused"  # by its owner: deliveries wait (nothing is sent) until it is resumed
    disabled = "disabled"  # by the service: the receiver answered 410 Gone, or failed for over a day
    deleted = "deleted"


class DeliveryMode(StrEnum):
    per_event = "per_event"  # one webhook per pairing event
    daily_digest = "daily_digest"  # one webhook a day listing the day's pairings, ranked (offices)


class DisabledReason(StrEnum):
    gone = "gone"  # the receiver answered 410 Gone
    failing = "failing"  # every attempt failed for longer than the allowed run


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"  # not retried: the receiver answered 410 Gone, or a test ping failed
    dead = "dead"  # every attempt failed
    cancelled = "cancelled"  # the subscription was deleted or disabled before it was sent


def _aware(nullable: bool = False, index: bool = False) -> Column[Any]:
    return Column(UtcDateTime(), nullable=nullable, index=index)


class Subscription(SQLModel, table=True):
    """A webhook endpoint and what it wants to hear about, as stored."""

    __tablename__ = "webhook_subscription"

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=20)
    office_id: str | None = Field(default=None, max_length=64, index=True)
    partner_id: str | None = Field(default=None, max_length=100, index=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, max_length=500)
    filters: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    mode: str = Field(default=DeliveryMode.per_event.value, max_length=20)
    # Needed in clear to sign every delivery; shown only when created or rotated.
    secret: str = Field(max_length=100)
    # After a rotation the old secret signs too (a second signature) until it expires.
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    status: str = Field(default=SubscriptionStatus.active.value, max_length=20, index=True)
    disabled_reason: str | None = Field(default=None, max_length=20)
    # The current run of failed attempts (None after a success): a run longer than a day disables.
    failing_since: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    consecutive_failures: int = 0
    created_at: datetime = Field(sa_column=_aware())
    updated_at: datetime = Field(sa_column=_aware())


class Delivery(SQLModel, table=True):
    """One event for one subscription: the Standard Webhooks message, retried until it settles."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),  # what the worker claims
        # A later delivery for the same need or seed waits while an earlier one is pending.
        Index("ix_webhook_delivery_order", "subscription_id", "ordering_key", "status"),
        Index("ix_webhook_delivery_settled", "subscription_id", "status", "finished_at"),
        Index("ix_webhook_delivery_finished_at", "finished_at"),  # the delivery log's purge
    )

    id: str = Field(primary_key=True, max_length=64)  # the webhook-id header, stable across retries
    subscription_id: str = Field(foreign_key="webhook_subscription.id", max_length=64)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    # The aggregate (a need or seed) whose events this subscription gets in order: "need:<id>".
    ordering_key: str = Field(max_length=160)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeliveryStatus.pending.value, max_length=20)
    attempts: int = 0  # since it was (re)queued: drives the backoff and the last attempt
    # While a worker holds the delivery this is its lease expiry, so no one else picks it.
    next_attempt_at: datetime = Field(sa_column=_aware())
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=_aware())
    finished_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    """One HTTP POST of a delivery and what came of it."""

    __tablename__ = "webhook_delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", max_length=64, index=True)
    attempted_at: datetime = Field(sa_column=_aware())
    status_code: int | None = None
    latency_ms: float
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # When the delivery is tried next after this attempt (None: it settled).
    next_attempt_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class NotificationEvent(SQLModel, table=True):
    """The event log: every pairing event received, kept for the stream, replays and digests."""

    __tablename__ = "notification_event"
    # Never reuse a number, even once the log is purged empty: a stream resumes after the last one.
    __table_args__ = {"sqlite_autoincrement": True}

    seq: int | None = Field(default=None, primary_key=True)  # the stream's event id (Last-Event-ID)
    event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=128)
    office_id: str = Field(max_length=64, index=True)
    ordering_key: str = Field(max_length=160)
    event: str = Field(sa_column=Column(Text, nullable=False))  # the CloudEvent, structured JSON
    received_at: datetime = Field(sa_column=_aware(index=True))


# ---- request and response schemas ------------------------------------------------------------


def _pairing_event_type(value: str) -> str:
    if value not in {t.value for t in PAIRING_EVENT_TYPES}:
        raise ValueError(f"not a pairing event type; known: {', '.join(t.value for t in PAIRING_EVENT_TYPES)}")
    return value


PairingEventType = Annotated[str, AfterValidator(_pairing_event_type)]


class SubscriptionFilters(BaseModel):
    """A partner's filters; each one set must hold for a pairing to be sent."""

    model_config = ConfigDict(extra="forbid")

    prefectures: list[PrefectureCode] | None = PydanticField(None, min_length=1, max_length=47)
    blocks: list[BlockCode] | None = PydanticField(None, min_length=1, max_length=9)
    fields: list[FieldCode] | None = PydanticField(None, min_length=1, max_length=30)
    min_score: float | None = PydanticField(None, ge=0)
    event_types: list[PairingEventType] | None = PydanticField(None, min_length=1, max_length=20)


class SubscriptionCreate(BaseModel):
    """A new webhook subscription. Unknown fields are rejected.

    ``kind=office`` names the office by ``office_id`` or by ``prefecture`` and may choose
    ``mode=daily_digest``; ``kind=partner`` names ``partner_id`` and may set ``filters``. An office
    or partner key may leave out its kind and id: it subscribes itself.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "office", "prefecture": "13", "url": "https://office13.example.jp/hooks/matchnet",
                 "description": "東京都 知財総合支援窓口"},
                {"url": "https://office13.example.jp/hooks/digest", "mode": "daily_digest"},
                {"kind": "partner", "partner_id": "tlo-hokkaido", "url": "https://tlo.example.jp/hooks",
                 "filters": {"blocks": ["hokkaido"], "fields": ["energy"], "min_score": 0.2}},
            ]
        },
    )

    kind: SubscriptionKind | None = None  # default: the caller's own (an office or partner key)
    url: HttpUrl
    office_id: str | None = PydanticField(None, min_length=1, max_length=64)
    prefecture: PrefectureCode | None = None
    partner_id: str | None = PydanticField(None, min_length=1, max_length=100)
    filters: SubscriptionFilters | None = None
    mode: DeliveryMode = DeliveryMode.per_event
    description: str | None = PydanticField(None, max_length=500)


class SubscriptionUpdate(BaseModel):
    """A change to a subscription: only the fields given change. ``status`` pauses (``paused``) or
    resumes (``active``; also re-enables a disabled subscription). Unknown fields are rejected."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "paused"}, {"filters": {"min_score": 0.3}}]},
    )

    url: HttpUrl | None = None
    description: str | None = PydanticField(None, max_length=500)
    filters: SubscriptionFilters | None = None
    mode: DeliveryMode | None = None
    status: Literal["active", "paused"] | None = None


class SecretRotation(BaseModel):
    """A new signing secret; the old one keeps signing for ``overlap_s`` seconds (default: a day)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"overlap_s": 86400}]})

    overlap_s: int | None = PydanticField(
        None, ge=0, le=7 * 86_400, description="Seconds both secrets sign (default a day, at most seven days)."
    )


class SubscriptionPublic(BaseModel):
    id: str
    kind: SubscriptionKind
    office_id: str | None
    partner_id: str | None
    url: str
    description: str | None
    filters: SubscriptionFilters | None
    mode: DeliveryMode
    status: SubscriptionStatus
    disabled_reason: DisabledReason | None
    failing_since: datetime | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None = PydanticField(
        description="until then deliveries carry a second signature made with the secret before the last rotation"
    )
    created_at: datetime
    updated_at: datetime

    @field_serializer("filters")
    def _only_set_filters(self, filters: SubscriptionFilters | None) -> dict[str, Any] | None:
        return filters.model_dump(mode="json", exclude_none=True) if filters is not None else None


class SubscriptionWithSecret(SubscriptionPublic):
    """The create and rotate responses: the only times the signing secret is shown."""

    secret: str


class DeliveryAttemptPublic(BaseModel):
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    next_attempt_at: datetime | None  # None when the delivery settled with this attempt


class DeliveryPublic(BaseModel):
    id: str  # the webhook-id
    subscription_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    next_attempt_at: datetime | None  # None once the delivery has settled
    created_at: datetime
    finished_at: datetime | None
    attempts: list[DeliveryAttemptPublic]


class ReplayResult(BaseModel):
    subscription_id: str
    since: datetime
    events: int = PydanticField(description="events since then that this subscription gets")
    queued: int = PydanticField(description="deliveries queued again (same webhook-id) or for the first time")


class LatencySummary(BaseModel):
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class DeliveryStats(BaseModel):
    """Delivery health of what the caller may see."""

    deliveries: dict[DeliveryStatus, int]
    oldest_pending_age_s: float | None
    attempts_last_hour: dict[str, int] = PydanticField(description="by outcome: delivered, gone, retry")
    attempt_latency_last_hour: LatencySummary


# ---- API keys (this service owns the registry; the table is shared.auth.ApiKey) ---------------


class ApiKeyCreate(BaseModel):
    """A new API key for one role. An office key names its office, a partner key its partner id;
    admin and operator keys name neither. Unknown fields are rejected."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"role": "office", "office_id": "office-13", "label": "東京都 知財総合支援窓口 コーディネーター"},
                {"role": "partner", "partner_id": "tlo-hokkaido", "label": "北海道TLO ポータル"},
                {"role": "operator", "label": "運用チーム"},
            ]
        },
    )

    role: Role
    office_id: str | None = PydanticField(None, min_length=1, max_length=64)
    partner_id: str | None = PydanticField(None, min_length=1, max_length=100)
    label: str | None = PydanticField(None, max_length=200, description="who or what holds the key")


class ApiKeyPublic(BaseModel):
    """An issued key as listed: never its secret, nor the secret's hash."""

    key_id: str
    role: Role
    office_id: str | None
    partner_id: str | None
    label: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyWithSecret(ApiKeyPublic):
    """The issue response: the only time the key is shown (it is stored only as a hash)."""

    api_key: str = PydanticField(description="send as 'Authorization: Bearer <api_key>'")


# The service's own tables (besides shared.service.COMMON_TABLES); its migrations create them.
TABLES: list[type[SQLModel]] = [Subscription, Delivery, DeliveryAttempt, NotificationEvent]
