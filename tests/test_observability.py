"""What an operator reads: Prometheus metrics at /metrics, and JSON log lines without secrets."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from services.needs.app import create_app as create_needs_app
from services.needs.settings import NeedsSettings
from shared.db import Database
from shared.events import Envelope, EventType, NeedCreated
from shared.inbox import INBOX_TABLES
from shared.kafka import EventConsumer
from shared.outbox import unwatch_outbox, watch_outbox
from shared.telemetry import (
    JsonLinesFormatter,
    RedactingFilter,
    current_event_id,
    meter,
    metrics_text,
)
from tests.api_harness import ADMIN, ADMIN_KEY, Api, route_harness
from tests.factories import NEED_BODY, need_profile


@pytest.fixture
def needs(tmp_path: Path) -> Iterator[Api]:
    settings = NeedsSettings(database_url=f"sqlite:///{tmp_path / 'needs.db'}", bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_needs_app, settings) as api:
        watch_outbox(api.db, "needs")  # what the lifespan does; the harness runs none
        try:
            yield api
        finally:
            unwatch_outbox(api.db)


def metric_values(name: str, **labels: str) -> list[float]:
    """The values of a metric's samples in this process's Prometheus text that carry ``labels``."""
    body, _ = metrics_text()
    values = []
    for line in body.decode().splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                values.append(float(match.group(2)))
    return values


def test_metrics_show_latency_per_route_and_the_unsent_outbox(needs: Api) -> None:
    assert needs.client.post("/v1/needs", headers=ADMIN, json=NEED_BODY).status_code == 201
    assert needs.client.post("/v1/needs", headers=ADMIN, json={}).status_code == 422

    response = needs.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text_body = response.text
    created = [line for line in text_body.splitlines() if line.startswith("http_server_request_duration_seconds_count")
               and 'http_route="/v1/needs"' in line and 'http_request_method="POST"' in line]
    assert any('http_response_status_code="201"' in line for line in created), created
    assert any('http_response_status_code="422"' in line for line in created), created
    assert "http_server_request_duration_seconds_bucket{" in text_body  # a histogram, not only a count
    # The harness runs no relay: the event waits in the outbox, and the gauges say so.
    assert metric_values("matchnet_outbox_backlog", matchnet_service="needs") == [1]
    [age] = metric_values("matchnet_outbox_oldest_age_seconds", matchnet_service="needs")
    assert 0 <= age < 60


def test_health_and_metrics_requests_are_not_counted_as_traffic(needs: Api) -> None:
    needs.client.get("/healthz")
    needs.client.get("/metrics")

    assert 'http_route="/metrics"' not in needs.client.get("/metrics").text
    assert 'http_route="/healthz"' not in needs.client.get("/metrics").text


async def test_consumer_metrics_count_applied_duplicate_and_invalid_events(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'consumer.db'}", INBOX_TABLES)
    db.create_tables()
    group = "metrics-test-group"
    consumer = EventConsumer(db=db, topics=["matchnet.needs"], group_id=group, handler=lambda s, e: None,
                             bootstrap_servers="127.0.0.1:1")
    need = need_profile("need_metrics")
    key, value, headers = Envelope.wrap(EventType.need_created, "/n", need.id, NeedCreated(need=need)).to_kafka()

    def record(offset: int, value: bytes = value) -> ConsumerRecord:
        return ConsumerRecord(topic="matchnet.needs", partition=0, offset=offset, timestamp=0, timestamp_type=0,
                              key=key, value=value, checksum=None, serialized_key_size=len(key),
                              serialized_value_size=len(value), headers=tuple(headers))

    await consumer.process(record(0))
    await consumer.process(record(1))  # the same event again
    await consumer.process(record(2, value=b"not json"))

    processed = "matchnet_events_processed_total"
    assert metric_values(processed, messaging_consumer_group_name=group, matchnet_outcome="applied") == [1]
    assert metric_values(processed, messaging_consumer_group_name=group, matchnet_outcome="duplicate") == [1]
    assert metric_values("matchnet_events_failed_total", messaging_consumer_group_name=group,
                         error_type="invalid_event") == [1]
    assert metric_values("matchnet_events_process_duration_seconds_count", messaging_consumer_group_name=group) == [2]
    db.dispose()


def test_an_instrument_from_the_shared_meter_shows_in_the_service_metrics(needs: Api) -> None:
    # Any module makes its instruments like this (shared.kafka and shared.outbox at import, before setup).
    counter = meter("tests.some_module").create_counter("matchnet.test.things", unit="{thing}")
    counter.add(2, {"matchnet.kind": "example"})

    assert metric_values("matchnet_test_things_total", matchnet_kind="example") == [2]


# ---- logs ------------------------------------------------------------------------------------

ADMIN_SECRET = "an-admin-key-chosen-by-the-operator-1234"


@pytest.fixture
def log_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter("matchnet-test"))
    handler.addFilter(RedactingFilter([ADMIN_SECRET]))
    logger = logging.getLogger("tests.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_is_json_with_service_level_trace_span_and_event_id(
    log_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_lines
    with trace.get_tracer("test").start_as_current_span("handling") as span:
        token = current_event_id.set("evt_0190abc")
        try:
            logger.warning("applying %s", "an event")
        finally:
            current_event_id.reset(token)

    [line] = lines_of(stream)
    assert line["service"] == "matchnet-test" and line["level"] == "WARNING"
    assert line["message"] == "applying an event"
    assert line["event_id"] == "evt_0190abc"
    context = span.get_span_context()
    if context.is_valid:  # a recording provider is set up in this process
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert line["span_id"] == format(context.span_id, "016x")


class _Need(BaseModel):
    prefecture: int


def test_no_secret_and_no_quoted_input_reaches_a_log_line(log_lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log_lines
    confidential = "社外秘: 新素材の配合比率 3:7"
    logger.info("headers %s", {"Authorization": "Bearer mnk_key_0190abc_s3cr3tPart", "Accept": "*/*"})
    logger.info("Authorization: Basic dXNlcjpwYXNzd29yZA==")
    logger.info("subscription secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw and key mnk_key_01_abcdef")
    logger.info("the operator's key is %s", ADMIN_SECRET)
    logger.info("bootstrap mn_admin_Zx9_aaaa")
    try:
        _Need.model_validate({"prefecture": confidential})
    except ValidationError:
        logger.exception("invalid need")
    try:
        with Session(create_engine("sqlite://")) as session:
            session.execute(text("SELECT * FROM missing WHERE description = :d"), {"d": confidential})
    except SQLAlchemyError:
        logger.exception("query failed")

    written = stream.getvalue()
    for secret in ("mnk_key_0190abc_s3cr3tPart", "dXNlcjpwYXNzd29yZA==", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                   "abcdef", ADMIN_SECRET, "Zx9_aaaa", confidential, "新素材"):
        assert secret not in written
    lines = lines_of(stream)
    assert len(lines) == 7
    assert "[redacted]" in lines[0]["message"] and "*/*" in lines[0]["message"]  # the rest stays readable
    assert "invalid need" in lines[5]["message"] and "ValidationError" in lines[5]["exception"]
    assert "no such table: missing" in lines[6]["exception"]
