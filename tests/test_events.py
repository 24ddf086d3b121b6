from __future__ import annotations

import pytest

from shared.events import Envelope, EventType, InvalidEvent, NeedCreated, PairingsProposed, SeedCreated
from tests.factories import need_profile, seed_profile


def test_envelope_travels_in_binary_mode_with_cloudevents_headers_and_aggregate_key() -> None:
    data = NeedCreated(need=need_profile())
    envelope = Envelope.wrap(EventType.need_created, "/matchnet/needs", "need_1", data)
    key, value, headers = envelope.to_kafka()

    names = [name for name, _ in headers]
    assert names == ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject", "content-type"]
    assert key == b"need_1"
    assert dict(headers)["ce_type"] == b"jp.matchnet.need.created.v1"
    assert dict(headers)["content-type"] == b"application/json"

    parsed = Envelope.from_kafka(key, value, headers)
    assert parsed.id == envelope.id
    assert parsed.type == envelope.type
    assert parsed.time == envelope.time
    assert parsed.payload() == data


def test_every_event_type_has_a_versioned_name_a_schema_and_a_topic() -> None:
    for event_type in EventType:
        assert event_type.value.startswith("jp.matchnet.") and event_type.value.endswith(".v1")
    envelope = Envelope.wrap(EventType.seed_created, "/s", "seed_1", SeedCreated(seed=seed_profile()))
    assert envelope.topic.value == "matchnet.seeds"


def test_wrap_refuses_data_of_another_event_type() -> None:
    with pytest.raises(TypeError):
        Envelope.wrap(EventType.need_created, "/s", "seed_1", SeedCreated(seed=seed_profile()))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: [x for x in h if x[0] != "ce_id"], "ce_id"),
        (lambda h: [(n, b"jp.matchnet.unknown.v1" if n == "ce_type" else v) for n, v in h], "unknown event type"),
        (lambda h: [(n, b"0.3" if n == "ce_specversion" else v) for n, v in h], "specversion"),
    ],
)
def test_malformed_headers_are_rejected_with_the_reason(mutate, message: str) -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_1", NeedCreated(need=need_profile()))
    key, value, headers = envelope.to_kafka()
    with pytest.raises(InvalidEvent, match=message):
        Envelope.from_kafka(key, value, mutate(headers))


def test_a_body_that_does_not_match_its_schema_is_rejected() -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_1", NeedCreated(need=need_profile()))
    key, _, headers = envelope.to_kafka()
    with pytest.raises(InvalidEvent):
        Envelope.from_kafka(key, b'{"need": {"id": "x"}}', headers)
    with pytest.raises(InvalidEvent, match="JSON"):
        Envelope.from_kafka(key, b"not json", headers)


def test_structured_mode_carries_the_attributes_and_data_in_one_object() -> None:
    proposal = PairingsProposed(office_id="office-13", trigger_kind="need", trigger_id="need_1", pairings=[])
    envelope = Envelope.wrap(EventType.pairings_proposed, "/m", "office-13", proposal)
    body = envelope.to_structured()
    assert body["specversion"] == "1.0"
    assert body["type"] == "jp.matchnet.pairings.proposed.v1"
    assert body["subject"] == "office-13"
    assert body["data"]["office_id"] == "office-13"
