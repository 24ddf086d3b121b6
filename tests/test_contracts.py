"""The event contract: docs/asyncapi.yaml is a valid AsyncAPI 3.0 document that covers every event
type in shared/events.py, with payload and header schemas that the real events satisfy."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from matchnet.contracts import DOCUMENT, TOPICS, render
from services.matcher.app import CONSUMER_GROUP as MATCHER_GROUP
from services.notifications.events import CONSUMER_GROUP as NOTIFICATIONS_GROUP
from shared.auth import Role
from shared.events import (
    EVENT_SCHEMAS,
    EVENT_TOPICS,
    ApiKeyEntry,
    ApiKeyIssued,
    ApiKeyRevoked,
    Envelope,
    EventType,
    Explanation,
    NeedCreated,
    NeedSummary,
    Pairing,
    PairingsProposed,
    SeedCreated,
    SeedSummary,
    Topic,
)
from tests.factories import need_profile, seed_profile


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def resolve(reference: dict[str, Any]) -> Any:
    """Follow a local ``$ref`` (``#/a/b``) in the document, repeatedly."""
    node: Any = reference
    while isinstance(node, dict) and "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), f"only local references: {pointer}"
        node = document()
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if isinstance(node.get("$ref"), str) else []),
                *(ref for value in node.values() for ref in all_refs(value))]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def message_for(event_type: EventType) -> dict[str, Any]:
    matches = [m for m in document()["components"]["messages"].values() if m["name"] == event_type.value]
    assert len(matches) == 1, f"{event_type.value}: {len(matches)} messages in {DOCUMENT.name}"
    return matches[0]


DOCUMENT_URI = "urn:matchnet:asyncapi"


def validator(reference: dict[str, str]) -> jsonschema.Draft7Validator:
    """A validator for the schema a ``$ref`` of the document names, resolving further refs in the document."""
    registry: Registry = Registry().with_resource(DOCUMENT_URI, Resource(document(), DRAFT7))
    return jsonschema.Draft7Validator({"$ref": DOCUMENT_URI + reference["$ref"]}, registry=registry,
                                      format_checker=jsonschema.FormatChecker())


def test_the_document_is_what_the_generator_makes_from_shared_events() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(), "run: python -m matchnet.contracts"


def test_an_independent_asyncapi_3_parser_accepts_the_document_and_refuses_a_broken_one() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the parser's own pydantic field-name warnings
        from asyncapi3.models.asyncapi import AsyncAPI3

    parsed = AsyncAPI3.model_validate(document())

    assert parsed.asyncapi == "3.0.0"
    assert set(parsed.channels or {}) == {topic.name for topic in Topic}
    broken = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording, not 3
    with pytest.raises(ValueError):
        AsyncAPI3.model_validate(broken)


def test_every_reference_resolves_and_every_schema_is_a_valid_json_schema() -> None:
    for reference in all_refs(document()):
        resolve({"$ref": reference})
    for schema in document()["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_every_event_type_is_a_message_on_its_topic_with_the_schema_of_its_model(event_type: EventType) -> None:
    message = message_for(event_type)
    topic = EVENT_TOPICS[event_type]
    [channel] = [c for c in document()["channels"].values() if c["address"] == topic.value]
    assert any(resolve(ref) is message for ref in channel["messages"].values())
    senders = [op for op in document()["operations"].values()
               if op["action"] == "send" and resolve(op["channel"]) is channel]
    assert senders and all(any(resolve(ref) is message for ref in op["messages"]) for op in senders)

    assert_schema_matches_model(resolve(message["payload"]), EVENT_SCHEMAS[event_type])
    headers = resolve(message["headers"])
    assert headers["properties"]["ce_type"]["const"] == event_type.value


def assert_schema_matches_model(schema: dict[str, Any], model: type[BaseModel], path: str = "") -> None:
    """Same fields, same required ones, recursively through nested models."""
    schema = resolve(schema)
    where = path or model.__name__
    assert set(schema["properties"]) == {f.alias or name for name, f in model.model_fields.items()}, where
    assert set(schema.get("required", [])) == {
        f.alias or name for name, f in model.model_fields.items() if f.is_required()
    }, where
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is not None:
            property_schema = schema["properties"][field.alias or name]
            item = property_schema.get("items", property_schema)
            if "anyOf" in item:
                item = next(option for option in item["anyOf"] if option.get("type") != "null")
            assert_schema_matches_model(item, nested, f"{where}.{name}")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None


# ---- real events against the document -------------------------------------------------------

def _api_key_entry(revoked: bool) -> ApiKeyEntry:
    now = datetime.now(UTC)
    return ApiKeyEntry(key_id="key_01", role=Role.office, office_id="office-13", label="東京都", secret_hash="a" * 64,
                       created_by="bootstrap-admin", created_at=now, revoked_at=now if revoked else None)


def _pairings() -> PairingsProposed:
    seed, need = seed_profile(), need_profile()
    return PairingsProposed(office_id="office-13", trigger_kind="need", trigger_id=need.id, pairings=[Pairing(
        pairing_id="pair_1", rank=1, score=0.42,
        seed=SeedSummary(id=seed.id, title=seed.title, owner_org=seed.owner_org, owner_type=seed.owner_type,
                         prefecture=seed.prefecture, offers=seed.offers, fields=seed.fields),
        need=NeedSummary(id=need.id, title=need.title, prefecture=need.prefecture, office_id="office-13",
                         company_size=need.company_size, confidentiality=need.confidentiality, fields=need.fields),
        explanation=Explanation(shared_terms=["排熱"], shared_fields=["energy"]),
    )])


EXAMPLES: dict[EventType, tuple[str, BaseModel]] = {
    EventType.seed_created: ("seed_1", SeedCreated(seed=seed_profile())),
    EventType.need_created: ("need_1", NeedCreated(need=need_profile(confidentiality="confidential"))),
    EventType.pairings_proposed: ("office-13", _pairings()),
    EventType.api_key_issued: ("key_01", ApiKeyIssued(key=_api_key_entry(revoked=False))),
    EventType.api_key_revoked: ("key_01", ApiKeyRevoked(key=_api_key_entry(revoked=True), revoked_by="key_admin")),
}


@pytest.mark.parametrize("event_type", list(EXAMPLES), ids=lambda t: t.value)
def test_a_real_kafka_record_satisfies_the_documented_headers_and_payload(event_type: EventType) -> None:
    subject, data = EXAMPLES[event_type]
    envelope = Envelope.wrap(event_type, "/matchnet/test", subject, data)
    key, value, headers = envelope.to_kafka()
    assert key.decode() == subject and message_for(event_type)["bindings"]["kafka"]["key"]["type"] == "string"
    headers.append(("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
    message = message_for(event_type)

    validator(message["headers"]).validate({name: raw.decode() for name, raw in headers})
    validator(message["payload"]).validate(yaml.safe_load(value))
    broken = yaml.safe_load(value)
    broken.pop(next(iter(broken)))
    assert not validator(message["payload"]).is_valid(broken)  # the schema is not a blank cheque


def test_consumer_groups_and_producers_in_the_document_are_those_the_services_use() -> None:
    groups = {op["x-matchnet-service"]: op["bindings"]["kafka"]["groupId"]["const"]
              for op in document()["operations"].values()
              if op["action"] == "receive" and resolve(op["channel"])["address"] != Topic.api_keys.value}
    assert groups == {"matcher": MATCHER_GROUP, "notifications": NOTIFICATIONS_GROUP}
    assert set(TOPICS) == set(Topic)
