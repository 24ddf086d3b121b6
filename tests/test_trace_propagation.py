"""One trace across Kafka: the consumer's span continues the span that wrote the outbox row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlmodel import Session

from shared.db import Database
from shared.events import Envelope, EventType, NeedCreated
from shared.inbox import INBOX_TABLES
from shared.kafka import EventConsumer
from shared.outbox import OutboxEvent, OutboxRelay, record_event
from shared.telemetry import inject_kafka_headers, setup_telemetry
from tests.factories import need_profile


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    setup_telemetry("test", exporter=exporter)
    yield exporter


async def test_the_consumer_span_continues_the_trace_of_the_write_through_outbox_and_kafka_headers(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    producer_db = Database(f"sqlite:///{tmp_path / 'needs.db'}", [OutboxEvent])
    consumer_db = Database(f"sqlite:///{tmp_path / 'matcher.db'}", INBOX_TABLES)
    producer_db.create_tables()
    consumer_db.create_tables()
    sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def broker(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        sent.append((topic, key, value, headers))

    tracer = trace.get_tracer("test")
    need = need_profile("need_traced")
    with tracer.start_as_current_span("POST /v1/needs", kind=trace.SpanKind.SERVER) as request, \
            producer_db.session() as session:
        record_event(session, Envelope.wrap(EventType.need_created, "/n", need.id, NeedCreated(need=need)))
    await OutboxRelay(producer_db, broker).publish_pending()
    topic, key, value, headers = sent[0]
    handled: list[str] = []

    def handler(session: Session, envelope: Envelope) -> None:
        handled.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))

    consumer = EventConsumer(db=consumer_db, topics=[topic], group_id="test-group", handler=handler,
                             bootstrap_servers="127.0.0.1:1")
    await consumer.process(ConsumerRecord(
        topic=topic, partition=0, offset=7, timestamp=0, timestamp_type=0, key=key, value=value, checksum=None,
        serialized_key_size=len(key), serialized_value_size=len(value), headers=tuple(headers),
    ))

    trace_id = request.get_span_context().trace_id
    by_name = {s.name: s for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
    producer, consumer_span = by_name["send matchnet.needs"], by_name["process matchnet.needs"]
    assert producer.parent is not None and producer.parent.span_id == request.get_span_context().span_id
    assert consumer_span.parent is not None and consumer_span.parent.span_id == producer.context.span_id
    assert consumer_span.kind == trace.SpanKind.CONSUMER and producer.kind == trace.SpanKind.PRODUCER
    assert consumer_span.attributes["messaging.system"] == "kafka"
    assert consumer_span.attributes["messaging.consumer.group.name"] == "test-group"
    assert consumer_span.attributes["messaging.kafka.message.key"] == "need_traced"
    assert consumer_span.attributes["cloudevents.event_type"] == "jp.matchnet.need.created.v1"
    assert handled == [format(trace_id, "032x")]
    producer_db.dispose()
    consumer_db.dispose()


async def test_one_consumer_batch_serving_several_producers_is_a_receive_span_linking_to_each(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    consumer_db = Database(f"sqlite:///{tmp_path / 'matcher.db'}", INBOX_TABLES)
    consumer_db.create_tables()
    tracer = trace.get_tracer("test")
    records, producers = [], []
    for offset, need_id in enumerate(["need_batch_a", "need_batch_b"]):
        need = need_profile(need_id)
        key, value, headers = Envelope.wrap(EventType.need_created, "/n", need.id, NeedCreated(need=need)).to_kafka()
        with tracer.start_as_current_span(f"send for {need_id}", kind=trace.SpanKind.PRODUCER) as producer:
            inject_kafka_headers(headers)
        producers.append(producer.get_span_context())
        records.append(ConsumerRecord(
            topic="matchnet.needs", partition=1, offset=offset, timestamp=0, timestamp_type=0, key=key, value=value,
            checksum=None, serialized_key_size=len(key), serialized_value_size=len(value), headers=tuple(headers),
        ))
    consumer = EventConsumer(db=consumer_db, topics=["matchnet.needs"], group_id="batch-group",
                             handler=lambda session, envelope: None, bootstrap_servers="127.0.0.1:1")

    await consumer._process_batch(TopicPartition("matchnet.needs", 1), records)

    finished = spans.get_finished_spans()
    [receive] = [s for s in finished if s.name == "receive matchnet.needs"]
    assert receive.kind == trace.SpanKind.CONSUMER and receive.parent is None
    assert {link.context.trace_id for link in receive.links} == {p.trace_id for p in producers}
    assert receive.attributes["messaging.batch.message_count"] == 2
    assert receive.attributes["messaging.operation.type"] == "receive"
    assert receive.attributes["messaging.consumer.group.name"] == "batch-group"
    for producer in producers:  # each event's own processing still continues its producer's trace
        [process] = [s for s in finished
                     if s.name == "process matchnet.needs" and s.context.trace_id == producer.trace_id]
        assert process.parent is not None and process.parent.span_id == producer.span_id
    assert consumer._applied == {TopicPartition("matchnet.needs", 1): 2}  # both offsets are ready to commit
    consumer_db.dispose()


async def test_a_relay_batch_of_rows_from_several_requests_links_to_each_and_each_send_keeps_its_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    producer_db = Database(f"sqlite:///{tmp_path / 'needs.db'}", [OutboxEvent])
    producer_db.create_tables()
    tracer = trace.get_tracer("test")
    requests = []
    for need_id in ("need_relay_a", "need_relay_b", "need_relay_c"):
        need = need_profile(need_id)
        with tracer.start_as_current_span(f"POST for {need_id}", kind=trace.SpanKind.SERVER) as request, \
                producer_db.session() as session:
            record_event(session, Envelope.wrap(EventType.need_created, "/n", need.id, NeedCreated(need=need)))
        requests.append(request.get_span_context())

    async def broker(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        return None

    assert await OutboxRelay(producer_db, broker).publish_pending() == 3  # one read, one batch

    finished = spans.get_finished_spans()
    [batch] = [s for s in finished if s.name == "outbox relay batch"
               and {link.context.trace_id for link in s.links} == {r.trace_id for r in requests}]
    assert batch.parent is None and batch.attributes["messaging.batch.message_count"] == 3
    for request in requests:
        [send] = [s for s in finished if s.name == "send matchnet.needs" and s.context.trace_id == request.trace_id]
        assert send.parent is not None and send.parent.span_id == request.span_id
    producer_db.dispose()


def test_each_sql_statement_is_a_client_span_of_the_span_that_runs_it(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from shared.telemetry import instrument_engine, suppress_tracing

    db = Database(f"sqlite:///{tmp_path / 'spans.db'}")
    instrument_engine(db.engine)
    spans.clear()
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span("handler") as handler, db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO t (body) VALUES (:body)"), {"body": "confidential"})
        with pytest.raises(OperationalError):
            connection.execute(text("SELECT body FROM missing_table WHERE body = 'confidential'"))
    with suppress_tracing(), db.engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM t"))
    db.dispose()

    by_name = {span.name: span for span in spans.get_finished_spans() if span.name != "handler"}
    database = str(tmp_path / "spans.db")
    assert set(by_name) == {f"BEGIN {database}", f"CREATE {database}", f"INSERT {database}", f"SELECT {database}"}
    insert = by_name[f"INSERT {database}"]
    assert insert.kind == trace.SpanKind.CLIENT
    assert insert.parent is not None and insert.parent.span_id == handler.get_span_context().span_id
    assert insert.attributes is not None
    assert insert.attributes["db.system"] == "sqlite" and insert.attributes["db.name"] == database
    assert insert.attributes["db.statement"] == "INSERT INTO t (body) VALUES (?)"  # values never recorded
    failed = by_name[f"SELECT {database}"]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.status.description == "OperationalError"  # not its message, which quotes the statement
    assert failed.end_time is not None
