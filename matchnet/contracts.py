"""The event contract as an AsyncAPI 3.0 document, generated from ``shared/events.py``.

    python -m matchnet.contracts            # rewrites docs/asyncapi.yaml
    python -m matchnet.contracts --check    # exits 1 when docs/asyncapi.yaml is out of date

Every event type (``EventType``), its topic (``EVENT_TOPICS``) and its payload schema
(``EVENT_SCHEMAS``, as pydantic writes its JSON schema) come from the code, so a new event type
needs no edit here unless a new topic comes with it (then add its ``TOPICS`` entry: who sends and
who consumes it, how long it is kept). ``tests/test_contracts.py`` fails while the committed
document differs from what this module generates.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from shared.events import EVENT_SCHEMAS, EVENT_TOPICS, JSON_CONTENT_TYPE, SPEC_VERSION, EventType, Topic

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
SCHEMA_REF = "#/components/schemas/{model}"
KAFKA_BINDING_VERSION = "0.5.0"
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicPolicy:
    """Who writes and reads a topic, what its key is, and how production Kafka keeps it."""

    description: str
    key: str
    producer: str
    consumers: tuple[tuple[str, str], ...]  # (service, consumer group)
    partitions: int = 6
    replicas: int = 3
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"


API_KEY_CONSUMERS = tuple((service, f"matchnet-{service}-apikeys") for service in ("seeds", "needs", "matcher"))

TOPICS: dict[Topic, TopicPolicy] = {
    Topic.seeds: TopicPolicy(
        "Technology seeds as their owners register them.", "the seed id", "seeds",
        (("matcher", "matchnet-matcher"),),
    ),
    Topic.needs: TopicPolicy(
        "Companies' needs as registered, public-safe: a confidential need's text is replaced by its office's "
        "redacted summary (the matcher reads the full text from the needs service).",
        "the need id", "needs", (("matcher", "matchnet-matcher"),),
    ),
    Topic.pairings: TopicPolicy(
        "Ranked pairings, one event per regional office concerned; notifications turns each into webhooks.",
        "the regional office id (office-<prefecture code>)", "matcher", (("notifications", "matchnet-notifications"),),
        retention_ms=30 * DAY_MS,
    ),
    Topic.api_keys: TopicPolicy(
        "API keys issued and revoked by the key registry; every other service keeps a replica. Compacted: "
        "the last event of each key (its whole entry) is enough to rebuild a replica.",
        "the key id", "notifications", API_KEY_CONSUMERS,
        partitions=1, retention_ms=-1, cleanup_policy="compact",
    ),
    Topic.subscriptions: TopicPolicy(
        "Webhook subscription health for operators (a subscription disabled after failing for a day or "
        "answering 410); read by operators' tooling, no service of the network consumes it.",
        "the subscription id", "notifications", (), partitions=1, retention_ms=30 * DAY_MS,
    ),
}

HEADER_DESCRIPTIONS = {
    "ce_id": "CloudEvents id: unique per event; consumers deduplicate on it (inbox).",
    "ce_source": "CloudEvents source: the emitting service, e.g. /matchnet/needs.",
    "ce_type": "CloudEvents type: the event type and its major version.",
    "ce_specversion": "CloudEvents specification version.",
    "ce_time": "When the event happened (RFC 3339).",
    "ce_subject": "The aggregate id; also the Kafka key.",
    "content-type": "The value's media type (CloudEvents datacontenttype).",
    "traceparent": "W3C trace context of the write that caused the event: one trace spans every hop.",
    "tracestate": "W3C trace state, when the trace carries one.",
}


def _message_id(event_type: EventType) -> str:
    return event_type.name


def _headers_schema(event_type: EventType) -> dict[str, Any]:
    string = {"type": "string"}
    properties: dict[str, Any] = {
        "ce_id": {**string, "minLength": 1},
        "ce_source": {**string, "minLength": 1},
        "ce_type": {**string, "const": event_type.value},
        "ce_specversion": {**string, "const": SPEC_VERSION},
        "ce_time": {**string, "format": "date-time"},
        "ce_subject": {**string, "minLength": 1},
        "content-type": {**string, "const": JSON_CONTENT_TYPE},
        "traceparent": {**string, "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
        "tracestate": string,
    }
    for name, schema in properties.items():
        schema["description"] = HEADER_DESCRIPTIONS[name]
    return {
        "type": "object",
        "description": "Kafka record headers (CloudEvents binary content mode, plus W3C trace context).",
        "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject", "content-type"],
        "properties": properties,
    }


def payload_schemas() -> dict[str, Any]:
    """The JSON schema of every event payload model and what they refer to, keyed by model name."""
    models = sorted({model for model in EVENT_SCHEMAS.values()}, key=lambda model: model.__name__)
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=SCHEMA_REF)
    return dict(sorted(top.get("$defs", {}).items()))


def asyncapi_document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document, as a plain mapping."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas = payload_schemas()
    for topic, policy in TOPICS.items():
        types = [event_type for event_type in EventType if EVENT_TOPICS[event_type] == topic]
        channel_ref = {"$ref": f"#/channels/{topic.name}"}
        message_refs = [{"$ref": f"#/channels/{topic.name}/messages/{_message_id(t)}"} for t in types]
        channels[topic.name] = {
            "address": topic.value,
            "title": topic.value,
            "description": policy.description,
            "messages": {_message_id(t): {"$ref": f"#/components/messages/{_message_id(t)}"} for t in types},
            "bindings": {"kafka": {
                "topic": topic.value,
                "partitions": policy.partitions,
                "replicas": policy.replicas,
                "topicConfiguration": {"cleanup.policy": [policy.cleanup_policy], "retention.ms": policy.retention_ms},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }},
        }
        operations[f"{policy.producer}_sends_{topic.name}"] = {
            "action": "send",
            "channel": channel_ref,
            "title": f"{policy.producer} publishes to {topic.value}",
            "description": "Written in the transaction of the change (outbox) and relayed in order per key; "
                           "at least once.",
            "messages": message_refs,
            "x-matchnet-service": policy.producer,
        }
        for service, group in policy.consumers:
            operations[f"{service}_receives_{topic.name}"] = {
                "action": "receive",
                "channel": channel_ref,
                "title": f"{service} consumes {topic.value}",
                "description": "Applied once per CloudEvents id (inbox) in the transaction of its effect; "
                               "offsets committed after.",
                "messages": message_refs,
                "bindings": {"kafka": {"groupId": {"type": "string", "const": group},
                                       "bindingVersion": KAFKA_BINDING_VERSION}},
                "x-matchnet-service": service,
            }
        for event_type in types:
            model = EVENT_SCHEMAS[event_type]
            schemas[f"{_message_id(event_type)}_headers"] = _headers_schema(event_type)
            messages[_message_id(event_type)] = {
                "name": event_type.value,
                "title": event_type.value,
                "summary": (model.__doc__ or model.__name__).strip().splitlines()[0],
                "contentType": JSON_CONTENT_TYPE,
                "headers": {"$ref": f"#/components/schemas/{_message_id(event_type)}_headers"},
                "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
                "correlationId": {"description": "The CloudEvents id.", "location": "$message.header#/ce_id"},
                "bindings": {"kafka": {"key": {"type": "string", "description": policy.key},
                                       "bindingVersion": KAFKA_BINDING_VERSION}},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "matchnet events",
            "version": "1.0.0",
            "description": (
                "The events the matchnet services exchange over Kafka. CloudEvents 1.0 in binary content mode: "
                "the ce_* headers carry the attributes, the value is the JSON data, the key is the aggregate id. "
                "Generated from shared/events.py by `python -m matchnet.contracts`; do not edit by hand.\n\n"
                "Evolution: an additive change (a new optional field, a new event type) keeps the type's version; "
                "a breaking change publishes a new type (…v2) beside the old one for a migration window."
            ),
        },
        "defaultContentType": JSON_CONTENT_TYPE,
        "servers": {
            "production": {"host": "matchnet-kafka-kafka-bootstrap:9092", "protocol": "kafka",
                           "description": "Apache Kafka (Strimzi) in the Kubernetes deployment (deploy/k8s)."},
            "compose": {"host": "kafka:9092", "protocol": "kafka",
                        "description": "Apache Kafka in KRaft mode in docker-compose.yml."},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    header = "# Generated from shared/events.py by `python -m matchnet.contracts`. Do not edit by hand.\n"
    return header + yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matchnet.contracts", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the document is up to date")
    args = parser.parse_args(argv)
    text = render()
    current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
    if args.check:
        if current != text:
            print(f"{DOCUMENT} is out of date: run python -m matchnet.contracts", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
