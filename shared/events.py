"""The event contract: CloudEvents 1.0 envelope, every event type and its pydantic schema, topic names.

On Kafka an event travels in binary content mode: ``ce_*`` headers carry the attributes, the value is
the JSON ``data``, and the key is the aggregate id (a seed, a need, or an office for pairings).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from shared.auth import Role
from shared.ids import new_id
from shared.reference import (
    CollaborationForm,
    CompanySize,
    Confidentiality,
    Language,
    OwnerType,
    ProfileStatus,
)

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"


class Topic(StrEnum):
    seeds = "matchnet.seeds"
    needs = "matchnet.needs"
    pairings = "matchnet.pairings"
    api_keys = "matchnet.apikeys"
    subscriptions = "matchnet.subscriptions"  # webhook subscription health, for operators


class EventType(StrEnum):
    seed_created = "jp.matchnet.seed.created.v1"
    need_created = "jp.matchnet.need.created.v1"
    pairings_proposed = "jp.matchnet.pairings.proposed.v1"
    api_key_issued = "jp.matchnet.apikey.issued.v1"
    api_key_revoked = "jp.matchnet.apikey.revoked.v1"
    subscription_disabled = "jp.matchnet.subscription.disabled.v1"


# The event types of the pairings topic, each with a PairingsEvent payload: notifications delivers
# every one of them to webhooks and streams, so a new type needs an entry here and nothing there.
PAIRING_EVENT_TYPES: tuple[EventType, ...] = (EventType.pairings_proposed,)


# ---- payload schemas -------------------------------------------------------------------------


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SeedProfile(_Contract):
    id: str
    version: int
    title: str
    description: str
    keywords: list[str]
    fields: list[str]
    owner_org: str
    owner_type: OwnerType
    prefecture: str
    offers: list[CollaborationForm]
    language: Language
    status: ProfileStatus
    created_at: datetime
    updated_at: datetime


class NeedProfile(_Contract):
    id: str
    version: int
    title: str
    description: str
    keywords: list[str]
    fields: list[str]
    company_name: str | None  # None where the reader may not see it
    company_size: CompanySize
    prefecture: str
    wanted_forms: list[CollaborationForm]
    confidentiality: Confidentiality
    language: Language
    status: ProfileStatus
    created_at: datetime
    updated_at: datetime


class SeedCreated(_Contract):
    seed: SeedProfile


class NeedCreated(_Contract):
    need: NeedProfile


class SeedSummary(_Contract):
    id: str
    title: str
    owner_org: str
    owner_type: OwnerType
    prefecture: str
    offers: list[CollaborationForm]
    fields: list[str] = Field(default_factory=list)


def redacted_need_title(fields: list[str]) -> str:
    """What a confidential need is called outside its own office: never its text, only its fields."""
    return f"非公開のニーズ / confidential need (fields: {', '.join(fields) or '-'})"


class NeedSummary(_Contract):
    """What a pairing tells about a need. For a confidential need the title is ``redacted_need_title``."""

    id: str
    title: str
    prefecture: str
    office_id: str
    company_size: CompanySize
    confidentiality: Confidentiality
    fields: list[str] = Field(default_factory=list)


class Explanation(_Contract):
    shared_terms: list[str] = Field(default_factory=list)
    shared_fields: list[str] = Field(default_factory=list)


class Pairing(_Contract):
    pairing_id: str
    rank: int
    score: float
    seed: SeedSummary
    need: NeedSummary
    explanation: Explanation


class PairingsEvent(_Contract):
    """What every pairing event (``PAIRING_EVENT_TYPES``) tells: for one regional office, the pairings
    concerned and the seed or need whose change caused the event (its aggregate)."""

    office_id: str
    trigger_kind: Literal["seed", "need"]
    trigger_id: str
    pairings: list[Pairing]


class PairingsProposed(PairingsEvent):
    """One regional office's ranked list, caused by a new seed or need (the trigger)."""


class ApiKeyEntry(_Contract):
    """An API key as every service stores it to verify it: the secret's SHA-256, never the secret."""

    key_id: str
    role: Role
    office_id: str | None = None
    partner_id: str | None = None
    label: str | None = None
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyIssued(_Contract):
    key: ApiKeyEntry


class ApiKeyRevoked(_Contract):
    """The key's whole entry, revoked: a consumer that missed the issue still learns to refuse it."""

    key: ApiKeyEntry
    revoked_by: str


class DisabledSubscription(_Contract):
    id: str
    kind: Literal["office", "partner"]
    office_id: str | None = None
    partner_id: str | None = None
    url: str


class SubscriptionDisabled(_Contract):
    """A webhook subscription the notifications service stopped: its receiver answered 410 Gone
    (``reason`` "gone") or failed every attempt for longer than the allowed run (``reason`` "failing")."""

    subscription: DisabledSubscription
    reason: Literal["gone", "failing"]
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    disabled_at: datetime


EVENT_SCHEMAS: dict[EventType, type[BaseModel]] = {
    EventType.seed_created: SeedCreated,
    EventType.need_created: NeedCreated,
    EventType.pairings_proposed: PairingsProposed,
    EventType.api_key_issued: ApiKeyIssued,
    EventType.api_key_revoked: ApiKeyRevoked,
    EventType.subscription_disabled: SubscriptionDisabled,
}

EVENT_TOPICS: dict[EventType, Topic] = {
    EventType.seed_created: Topic.seeds,
    EventType.need_created: Topic.needs,
    EventType.pairings_proposed: Topic.pairings,
    EventType.api_key_issued: Topic.api_keys,
    EventType.api_key_revoked: Topic.api_keys,
    EventType.subscription_disabled: Topic.subscriptions,
}


# ---- envelope --------------------------------------------------------------------------------


class InvalidEvent(ValueError):
    """A record that is not a CloudEvent of a known type with a valid payload."""


class Envelope(_Contract):
    id: str
    source: str
    type: str
    specversion: str = SPEC_VERSION
    time: datetime
    subject: str
    datacontenttype: str = JSON_CONTENT_TYPE
    data: dict[str, Any]
    _payload: BaseModel | None = PrivateAttr(default=None)

    @classmethod
    def wrap(cls, event_type: EventType, source: str, subject: str, data: BaseModel) -> Envelope:
        """A new event with a fresh id; ``subject`` is the aggregate id and becomes the Kafka key."""
        if not isinstance(data, EVENT_SCHEMAS[event_type]):
            raise TypeError(f"{event_type} carries {EVENT_SCHEMAS[event_type].__name__}")
        return cls(
            id=new_id("evt"),
            source=source,
            type=event_type.value,
            time=datetime.now(UTC),
            subject=subject,
            data=data.model_dump(mode="json"),
        )

    @property
    def topic(self) -> Topic:
        return EVENT_TOPICS[EventType(self.type)]

    def payload(self) -> BaseModel:
        """The data parsed with the schema of its type (parsed once, then kept)."""
        if self._payload is None:
            try:
                self._payload = EVENT_SCHEMAS[EventType(self.type)].model_validate(self.data)
            except (ValueError, ValidationError) as error:
                raise InvalidEvent(f"{self.type}: {error}") from error
        return self._payload

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Binary content mode: (key, value, headers)."""
        headers = [
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_specversion", self.specversion.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            ("content-type", self.datacontenttype.encode()),
        ]
        value = json.dumps(self.data, ensure_ascii=False, separators=(",", ":")).encode()
        return self.subject.encode(), value, headers

    @classmethod
    def from_kafka(
        cls, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple
    ) -> Envelope:
        """Parse a binary-mode record; raises InvalidEvent naming what is wrong."""
        attrs = {name: raw.decode("utf-8", "replace") for name, raw in headers if raw is not None}
        missing = [h for h in ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time") if h not in attrs]
        if missing:
            raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}")
        if attrs["ce_specversion"] != SPEC_VERSION:
            raise InvalidEvent(f"unsupported specversion {attrs['ce_specversion']}")
        if attrs["ce_type"] not in EventType._value2member_map_:
            raise InvalidEvent(f"unknown event type {attrs['ce_type']}")
        try:
            data = json.loads(value or b"null")
        except ValueError as error:
            raise InvalidEvent(f"body is not JSON: {error}") from error
        if not isinstance(data, dict):
            raise InvalidEvent("body is not a JSON object")
        try:
            envelope = cls(
                id=attrs["ce_id"],
                source=attrs["ce_source"],
                type=attrs["ce_type"],
                specversion=attrs["ce_specversion"],
                time=attrs["ce_time"],
                subject=attrs.get("ce_subject") or (key or b"").decode(),
                datacontenttype=attrs.get("content-type", JSON_CONTENT_TYPE),
                data=data,
            )
        except ValidationError as error:
            raise InvalidEvent(str(error)) from error
        envelope.payload()  # validate the data against its schema now, not in the handler
        return envelope

    def to_structured(self) -> dict[str, Any]:
        """Structured content mode (one JSON object), as webhooks carry it."""
        return self.model_dump(mode="json")
