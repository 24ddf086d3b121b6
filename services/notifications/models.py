from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, HttpUrl
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.auth import Role
from shared.db import UtcDateTime
from shared.reference import BlockCode, FieldCode, PrefectureCode


class SubscriptionKind(StrEnum):
    office = "office"  # a regional support office: every list proposed to it
    partner = "partner"  # a partner portal: pairings that pass its filters


class SubscriptionStatus(StrEnum):
    active = "active"
    disabled = "disabled"  # the receiver answered 410 Gone
    deleted = "deleted"


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"  # the receiver answered 410 Gone
    dead = "dead"  # every attempt failed
    cancelled = "cancelled"  # the subscription was deleted or disabled before it was sent


def _aware() -> Column[Any]:
    return Column(UtcDateTime(), nullable=False)


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
    # Needed in clear to sign every delivery; never returned after the create response.
    secret: str = Field(max_length=100)
    status: str = Field(default=SubscriptionStatus.active.value, max_length=20, index=True)
    created_at: datetime = Field(sa_column=_aware())
    updated_at: datetime = Field(sa_column=_aware())


class Delivery(SQLModel, table=True):
    """One event for one subscription: the Standard Webhooks message, retried until it settles."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id"),)

    id: str = Field(primary_key=True, max_length=64)  # the webhook-id header, stable across retries
    subscription_id: str = Field(foreign_key="webhook_subscription.id", max_length=64, index=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeliveryStatus.pending.value, max_length=20, index=True)
    attempts: int = 0
    # While a worker holds the delivery this is its lease expiry, so no one else picks it.
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=_aware())
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    """One HTTP POST of a delivery and what came of it."""

    __tablename__ = "webhook_delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", max_length=64, index=True)
    attempted_at: datetime = Field(sa_column=_aware())
    status_code: int | None = None
    latency_ms: float
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


# ---- request and response schemas ------------------------------------------------------------


class SubscriptionFilters(BaseModel):
    """A partner's filters; each one set must hold for a pairing to be sent."""

    model_config = ConfigDict(extra="forbid")

    prefectures: list[PrefectureCode] | None = PydanticField(None, min_length=1, max_length=47)
    blocks: list[BlockCode] | None = PydanticField(None, min_length=1, max_length=9)
    fields: list[FieldCode] | None = PydanticField(None, min_length=1, max_length=30)
    min_score: float | None = PydanticField(None, ge=0)


class SubscriptionCreate(BaseModel):
    """A new webhook subscription. Unknown fields are rejected.

    ``kind=office`` names the office by ``office_id`` or by ``prefecture``; ``kind=partner`` names
    ``partner_id`` and may set ``filters``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "office", "prefecture": "13", "url": "https://office13.example.jp/hooks/matchnet",
                 "description": "東京都 知財総合支援窓口"},
                {"kind": "partner", "partner_id": "tlo-hokkaido", "url": "https://tlo.example.jp/hooks",
                 "filters": {"blocks": ["hokkaido"], "fields": ["energy"], "min_score": 0.2}},
            ]
        },
    )

    kind: SubscriptionKind
    url: HttpUrl
    office_id: str | None = PydanticField(None, min_length=1, max_length=64)
    prefecture: PrefectureCode | None = None
    partner_id: str | None = PydanticField(None, min_length=1, max_length=100)
    filters: SubscriptionFilters | None = None
    description: str | None = PydanticField(None, max_length=500)


class SubscriptionPublic(BaseModel):
    id: str
    kind: SubscriptionKind
    office_id: str | None
    partner_id: str | None
    url: str
    description: str | None
    filters: SubscriptionFilters | None
    status: SubscriptionStatus
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(SubscriptionPublic):
    """The create response: the only time the signing secret is shown."""

    secret: str


class DeliveryAttemptPublic(BaseModel):
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


class DeliveryPublic(BaseModel):
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    next_attempt_at: datetime | None  # None once the delivery has settled
    created_at: datetime
    finished_at: datetime | None
    attempts: list[DeliveryAttemptPublic]


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
TABLES: list[type[SQLModel]] = [Subscription, Delivery, DeliveryAttempt]
