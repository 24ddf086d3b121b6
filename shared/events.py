"""The event contract: CloudEvents 1.0 envelope, every event type and its pydantic schema, topic names.

On Kafka an event travels in binary content mode: ``ce_*`` headers carry the attributes, the value is
the JSON ``data``, and the key is the aggregate id (a seed, a need, or an office for pairings).

Profile events (``jp.matchnet.{seed,need}.{created,updated,status_changed,withdrawn,expired}.v1``)
carry the whole current profile with its ``version``, so a consumer never calls back for the common
case and can drop an event older than what it holds. What "the whole profile" means:

- a seed has nothing confidential: the event carries the profile as every reader sees it;
- a need's event is public-safe: the company name only of a ``public`` need (a members-level name
  is hidden from partners), and for a ``confidential`` need the office's redacted summary in place
  of its title, summary and description (``text_redacted``). That is the uncommon case in which a
  consumer calls back: the matcher, which must rank a confidential need on its full text, fetches
  it from the needs service with its own key, and lets only the redacted summary leave it.

Schemas evolve by adding optional fields within a version (``.v1`` consumers ignore what they do
not know); a field that changes meaning is a new version.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, computed_field

from shared.auth import Role
from shared.ids import new_id
from shared.reference import (
    CollaborationForm,
    CompanySize,
    Confidentiality,
    IndustryCode,
    IpStatus,
    Language,
    OwnerType,
    ProfileStatus,
    office_id_for,
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
    seed_updated = "jp.matchnet.seed.updated.v1"
    seed_status_changed = "jp.matchnet.seed.status_changed.v1"
    seed_withdrawn = "jp.matchnet.seed.withdrawn.v1"
    seed_expired = "jp.matchnet.seed.expired.v1"
    need_created = "jp.matchnet.need.created.v1"
    need_updated = "jp.matchnet.need.updated.v1"
    need_status_changed = "jp.matchnet.need.status_changed.v1"
    need_withdrawn = "jp.matchnet.need.withdrawn.v1"
    need_expired = "jp.matchnet.need.expired.v1"
    pairings_proposed = "jp.matchnet.pairings.proposed.v1"
    pairings_updated = "jp.matchnet.pairings.updated.v1"
    pairings_retracted = "jp.matchnet.pairings.retracted.v1"
    pairing_feedback = "jp.matchnet.pairing.feedback.v1"
    api_key_issued = "jp.matchnet.apikey.issued.v1"
    api_key_revoked = "jp.matchnet.apikey.revoked.v1"
    subscription_disabled = "jp.matchnet.subscription.disabled.v1"


# The event types of the pairings topic, each with a PairingsEvent payload: notifications delivers
# every one of them to webhooks and streams, so a new type needs an entry here and nothing there.
PAIRING_EVENT_TYPES: tuple[EventType, ...] = (
    EventType.pairings_proposed, EventType.pairings_updated, EventType.pairings_retracted,
)


class ProfileAction(StrEnum):
    """What happened to a seed or need: names its event and its audit record."""

    created = "created"
    updated = "updated"
    status_changed = "status_changed"
    withdrawn = "withdrawn"
    expired = "expired"


# ---- payload schemas -------------------------------------------------------------------------


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Fields added after a schema's first version default to None or [] (events written before lack
# them); the registries' APIs always fill them for profiles registered through them.

_PROFILE_EXAMPLE: dict[str, Any] = {
    "version": 3, "external_id": None, "language": "ja", "summary_translated": None, "classification_codes": [],
    "prefecture": "01", "office_id": "office-01", "status": "open", "expires_on": "2027-03-31",
    "created_at": "2026-11-20T01:02:03Z", "updated_at": "2026-11-26T04:05:06Z",
}
SEED_PROFILE_EXAMPLE: dict[str, Any] = {
    **_PROFILE_EXAMPLE, "id": "seed_0193a1b2c3d4e5f60718293a4b5c", "external_id": "HIT-2024-017",
    "title": "排熱を電気に変える柔軟な熱電変換シート",
    "summary": "80〜150℃の低温排熱から発電できる有機熱電シート。工場の配管に巻き付けて使える。",
    "title_translated": "Flexible thermoelectric sheet that turns low-temperature waste heat into power",
    "description": "導電性高分子と無機ナノ粒子を複合化した熱電材料を印刷でシート状に成形した。",
    "keywords": ["熱電変換", "排熱回収"], "fields": ["energy", "materials"], "classification_codes": ["H10N 10/856"],
    "owner_org": "北海道工業大学", "owner_type": "university", "ip_status": "patent_application",
    "patent_numbers": ["特願2024-012345"], "offers": ["license", "joint_research"], "trl": 4,
    "contact_name": "産学連携推進本部 山田 花子", "contact_email": "sangaku@example.ac.jp",
}
NEED_PROFILE_EXAMPLE: dict[str, Any] = {
    **_PROFILE_EXAMPLE, "id": "need_0193a1b2c3d4e5f60718293a4b5d", "title": "工場の排熱を有効活用したい",
    "summary": "鋳造工程で出る100℃前後の排熱を捨てている。設備を大きく変えずに電気や暖房に回したい。",
    "title_translated": "Put our factory's waste heat to use",
    "description": "鋳物工場の溶解炉や冷却工程から出る熱を、いまはそのまま外に捨てている。",
    "keywords": ["排熱", "省エネ"], "fields": ["energy"], "company_name": None, "company_size": "sme",
    "industry": "E", "wanted_forms": ["license", "joint_research"], "budget_min_jpy": 1_000_000,
    "budget_max_jpy": 5_000_000, "timeline_months": 12, "confidentiality": "members", "redacted_summary": None,
}


class _Profile(_Contract):
    """What a seed and a need share."""

    id: str = Field(description="The profile's id (time-ordered).", examples=["seed_0193a1b2c3d4e5f60718293a4b5c"])
    version: int = Field(
        description="Increases by one with every change; the ETag of the profile. An event with a lower "
        "version than one already applied is stale.", examples=[3],
    )
    external_id: str | None = Field(None, description="The id in the owner's own catalogue, if any.",
                                    examples=["HU-2024-017"])
    language: Language = Field(description="The language title and summary are written in.")
    title: str = Field(description="Title in ``language``.", examples=["排熱を電気に変える柔軟な熱電変換シート"])
    summary: str | None = Field(None, description="Two to four sentences in ``language``.",
                                examples=["工場配管に巻き付けて低温排熱から発電できる有機熱電シート。"])
    title_translated: str | None = Field(None, description="The title in the other language.",
                                         examples=["Flexible thermoelectric sheet that turns waste heat into power"])
    summary_translated: str | None = Field(None, description="The summary in the other language.")
    description: str = Field(description="The full text.")
    keywords: list[str] = Field(description="Free keywords, in any language.", examples=[["熱電変換", "排熱回収"]])
    fields: list[str] = Field(description="Technology field codes (shared.reference TECHNOLOGY_FIELDS).",
                              examples=[["energy", "materials"]])
    classification_codes: list[str] = Field(
        default_factory=list, description="IPC/CPC codes, normalised ('H10N 10/856', 'G06N').",
        examples=[["H10N 10/856"]],
    )
    prefecture: str = Field(description="JIS X 0401 code of the prefecture whose office owns the profile.",
                            examples=["01"])
    status: ProfileStatus = Field(description="Only open profiles are matched.")
    expires_on: date | None = Field(
        None, description="Last day (Japan time) the profile is matched; the next day it becomes expired.",
        examples=["2027-03-31"],
    )
    created_at: datetime = Field(description="When the profile was registered (UTC).")
    updated_at: datetime = Field(description="When the profile last changed (UTC).")

    @computed_field(  # type: ignore[prop-decorator]
        description="The regional support office that owns the profile (from its prefecture).", examples=["office-01"]
    )
    @property
    def office_id(self) -> str:
        return office_id_for(self.prefecture)


class SeedProfile(_Profile):
    """A technology seed as readers and events see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [SEED_PROFILE_EXAMPLE]})

    owner_org: str = Field(description="The organisation offering the technology.", examples=["北海道工業大学"])
    owner_type: OwnerType = Field(description="university, kosen, national_lab, public_research_institute, "
                                  "company or tlo.")
    ip_status: IpStatus | None = Field(None, description="The kind of IP behind the seed.")
    patent_numbers: list[str] = Field(default_factory=list, description="Patent and application numbers.",
                                      examples=[["特許第7123456号", "特願2023-123456"]])
    offers: list[CollaborationForm] = Field(description="Collaboration forms on offer.")
    trl: int | None = Field(None, ge=1, le=9, description="Technology readiness level 1..9.", examples=[4])
    contact_name: str | None = Field(None, description="The responsible coordinator or office.",
                                     examples=["産学連携本部 山田 花子"])
    contact_email: str | None = Field(None, description="Where a company writes about the seed.",
                                      examples=["sangaku@example.ac.jp"])


class NeedProfile(_Profile):
    """A company need as its reader may see it (see view rules in services/needs/domain.py)."""

    model_config = ConfigDict(json_schema_extra={"examples": [NEED_PROFILE_EXAMPLE]})

    company_name: str | None = Field(
        description="None where the reader may not see it (a members-level need read by a partner; "
        "events of non-public needs).", examples=["札幌鋳造株式会社"],
    )
    company_size: CompanySize = Field(description="sme, large or venture.")
    industry: IndustryCode | None = Field(None, description="JSIC major group letter A..T.", examples=["E"])
    wanted_forms: list[CollaborationForm] = Field(description="Collaboration forms the company wants.")
    budget_min_jpy: int | None = Field(None, description="Budget range, yen.", examples=[1_000_000])
    budget_max_jpy: int | None = Field(None, description="Upper end of the budget range, yen.", examples=[5_000_000])
    timeline_months: int | None = Field(None, description="Months the company gives the collaboration.",
                                        examples=[12])
    confidentiality: Confidentiality = Field(
        description="public: anyone; members: offices and partners, company name hidden from partners; "
        "confidential: only the owning office, admins and operators."
    )
    redacted_summary: str | None = Field(
        None, description="For a confidential need: the office's summary revealing neither company nor "
        "specifics; the only text of it that leaves the matcher.",
    )
    text_redacted: bool = Field(
        False, description="True in events of a confidential need: title, summary and description carry "
        "the redacted summary, keywords and translations are empty. A reader allowed the text (the "
        "matcher) fetches it from the needs service.",
    )


class SeedCreated(_Contract):
    seed: SeedProfile


class SeedUpdated(_Contract):
    seed: SeedProfile
    changed_fields: list[str] = Field(description="The profile fields this update changed.")


class SeedStatusChanged(_Contract):
    seed: SeedProfile
    previous_status: ProfileStatus
    reason: str | None = None


class SeedWithdrawn(_Contract):
    seed: SeedProfile
    previous_status: ProfileStatus
    reason: str | None = None


class SeedExpired(_Contract):
    """The seed's ``expires_on`` has passed: it is no longer matched; its office is reminded to renew it."""

    seed: SeedProfile
    previous_status: ProfileStatus


class NeedCreated(_Contract):
    need: NeedProfile


class NeedUpdated(_Contract):
    need: NeedProfile
    changed_fields: list[str] = Field(description="The profile fields this update changed.")


class NeedStatusChanged(_Contract):
    need: NeedProfile
    previous_status: ProfileStatus
    reason: str | None = None


class NeedWithdrawn(_Contract):
    need: NeedProfile
    previous_status: ProfileStatus
    reason: str | None = None


class NeedExpired(_Contract):
    """The need's ``expires_on`` has passed: it is no longer matched; its office is reminded to renew it."""

    need: NeedProfile
    previous_status: ProfileStatus


class SeedSummary(_Contract):
    id: str
    title: str
    owner_org: str
    owner_type: OwnerType
    prefecture: str
    offers: list[CollaborationForm]
    fields: list[str] = Field(default_factory=list)
    office_id: str | None = Field(None, description="The seed's office (from its prefecture).")


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


class ScoreComponents(_Contract):
    """The parts of a pairing's score, each in [0, 1] (weights: services/matcher/scoring.py).

    score = relevance × form × stage × region factor × freshness factor, where relevance mixes text,
    classification and fields; ``region`` and ``freshness`` here are the relations, not the factors.
    """

    text: float = Field(description="Cosine of the two profiles' term vectors (words and lexicon concepts).")
    classification: float = Field(description="1 for a shared IPC/CPC main group, 0.5 for a shared subclass.")
    fields: float = Field(description="Overlap (Dice) of the technology fields.")
    relevance: float = Field(description="The weighted sum of text, classification and fields.")
    form: float = Field(description="What the seed offers against what the need wants (1: a wanted form).")
    stage: float = Field(description="The seed's TRL against the TRL the need's timeline asks for (1: enough).")
    region: float = Field(description="1 same prefecture, 0.5 same regional block, 0 elsewhere.")
    freshness: float = Field(description="How recently the two profiles changed (1: today).")


class Explanation(_Contract):
    """Why a pair was proposed, for a coordinator. Every field after the first two was added in v1
    (older events lack them)."""

    shared_terms: list[str] = Field(
        default_factory=list,
        description="Matched terms in the original script (quoted from the need; for a confidential need only "
        "from the seed's text, so none of the need's words leave the matcher).",
        examples=[["排熱", "熱電変換"]],
    )
    shared_fields: list[str] = Field(default_factory=list, description="Technology fields both carry.")
    shared_classification_codes: list[str] = Field(
        default_factory=list, description="The seed's IPC/CPC codes sharing a main group or subclass with the need's."
    )
    collaboration_form: CollaborationForm | None = Field(
        None, description="The form on offer that fits what the need wants best (None: nothing close)."
    )
    region: Literal["same_prefecture", "same_block", "other"] | None = Field(
        None, description="Where the seed is, seen from the need."
    )
    trl: int | None = Field(None, description="The seed's technology readiness level.")
    required_trl: int | None = Field(None, description="The TRL the need's timeline asks for (None: no timeline).")
    components: ScoreComponents | None = Field(None, description="The parts of the score.")


class Pairing(_Contract):
    pairing_id: str
    rank: int
    score: float
    seed: SeedSummary
    need: NeedSummary
    explanation: Explanation


ProfileKind = Literal["seed", "need"]


class PairingsEvent(_Contract):
    """What every pairing event (``PAIRING_EVENT_TYPES``) tells: for one regional office, the pairings
    concerned and the seed or need whose change caused the event (its aggregate)."""

    office_id: str = Field(description="The regional office this event is for (also the Kafka key).")
    trigger_kind: ProfileKind = Field(
        description="proposed/updated: whose ranked list this is; retracted: the profile that left."
    )
    trigger_id: str
    pairings: list[Pairing] = Field(
        description="proposed/updated: the office's view of the list, ranked 1..n (may be empty in an "
        "update: the office's last pairings left the list); retracted: the pairings withdrawn."
    )


class PairingsProposed(PairingsEvent):
    """The first time an office sees a list: a new (or reopened) seed's or need's ranked pairings.

    A need's list goes whole to the need's office and in part to each other office whose seeds are in
    it (their seeds were proposed); a seed's list goes whole to the seed's office and in part to each
    office whose needs are in it. A confidential need is only ever in its own office's lists.
    """


class PairingsUpdated(PairingsEvent):
    """An office's view of a list changed (members or order): the whole new view.

    Published only when the ranked members really change, never for a candidate that does not enter
    the top list. ``cause_*`` names the profile whose arrival or change moved the list (the trigger
    itself when it was re-ranked after its own update).
    """

    cause_kind: ProfileKind
    cause_id: str


class PairingsRetracted(PairingsEvent):
    """A seed or need stopped being open (``reason``: its new status): its pairings are withdrawn.

    Sent to every office that had them: the need's office and the seed's office (a confidential
    need's only to its own office).
    """

    reason: str = Field(description="The profile's status now: withdrawn, closed, paused, expired or draft.")


class PairingFeedbackGiven(_Contract):
    """A coordinator's verdict on a pairing (``POST /v1/pairings/{id}/feedback``). A dismissed pair is
    never proposed again. Keyed by pairing id; not delivered to webhooks."""

    pairing_id: str
    seed_id: str
    need_id: str
    office_id: str = Field(description="The need's office: whose pairing it is.")
    seed_office_id: str
    verdict: Literal["accepted", "dismissed"]
    reason: str | None = None
    given_by_key_id: str
    given_by_office_id: str | None = Field(None, description="The office that gave it; None for an admin.")
    given_at: datetime


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
    EventType.seed_updated: SeedUpdated,
    EventType.seed_status_changed: SeedStatusChanged,
    EventType.seed_withdrawn: SeedWithdrawn,
    EventType.seed_expired: SeedExpired,
    EventType.need_created: NeedCreated,
    EventType.need_updated: NeedUpdated,
    EventType.need_status_changed: NeedStatusChanged,
    EventType.need_withdrawn: NeedWithdrawn,
    EventType.need_expired: NeedExpired,
    EventType.pairings_proposed: PairingsProposed,
    EventType.pairings_updated: PairingsUpdated,
    EventType.pairings_retracted: PairingsRetracted,
    EventType.pairing_feedback: PairingFeedbackGiven,
    EventType.api_key_issued: ApiKeyIssued,
    EventType.api_key_revoked: ApiKeyRevoked,
    EventType.subscription_disabled: SubscriptionDisabled,
}

EVENT_TOPICS: dict[EventType, Topic] = {
    **{t: Topic.seeds for t in EventType if t.value.startswith("jp.matchnet.seed.")},
    **{t: Topic.needs for t in EventType if t.value.startswith("jp.matchnet.need.")},
    **{t: Topic.pairings for t in (*PAIRING_EVENT_TYPES, EventType.pairing_feedback)},
    EventType.api_key_issued: Topic.api_keys,
    EventType.api_key_revoked: Topic.api_keys,
    EventType.subscription_disabled: Topic.subscriptions,
}

# (profile kind, action) -> its event type: "seed" / "need" is also the payload's field name.
PROFILE_EVENTS: dict[tuple[str, ProfileAction], EventType] = {
    (kind, action): EventType(f"jp.matchnet.{kind}.{action.value}.v1")
    for kind in ("seed", "need")
    for action in ProfileAction
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
