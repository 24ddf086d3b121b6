from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from sqlmodel import Field, Session, SQLModel, select

from shared.db import Database, OnConflictStatement
from shared.events import Envelope, EventType, NeedCreated
from shared.inbox import _CLAIM, INBOX_TABLES, DeadLetterEvent, InboxEvent, claim_event
from shared.kafka import EventConsumer, in_production_order
from tests.factories import need_profile


class NoticedNeed(SQLModel, table=True):
    """The effect of the test handler: one row per handled event."""

    __tablename__ = "test_noticed_need"
    id: int | None = Field(default=None, primary_key=True)
    need_id: str


def notice_need(session: Session, envelope: Envelope) -> None:
    session.add(NoticedNeed(need_id=envelope.subject))


@pytest.fixture
def consumer(database_url: str) -> Iterator[EventConsumer]:
    db = Database(database_url, [*INBOX_TABLES, NoticedNeed])
    db.create_tables()
    yield EventConsumer(db=db, topics=["matchnet.needs"], group_id="test", handler=notice_need,
                        bootstrap_servers="127.0.0.1:1")
    db.dispose()


def record_of(envelope: Envelope, offset: int = 0, partition: int = 0, timestamp: int = 0) -> ConsumerRecord:
    key, value, headers = envelope.to_kafka()
    return ConsumerRecord(
        topic="matchnet.needs", partition=partition, offset=offset, timestamp=timestamp, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key), serialized_value_size=len(value),
        headers=tuple(headers),
    )


async def test_a_redelivered_event_has_no_second_effect(consumer: EventConsumer) -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_1", NeedCreated(need=need_profile()))

    await consumer.process(record_of(envelope, offset=0))
    await consumer.process(record_of(envelope, offset=1))  # same CloudEvents id, delivered again

    with consumer.db.session() as session:
        assert len(session.exec(select(NoticedNeed)).all()) == 1
        assert session.get(InboxEvent, envelope.id) is not None
    assert (consumer.processed_total, consumer.duplicates_total) == (1, 1)


async def test_a_failing_handler_leaves_no_inbox_row_so_the_event_is_retried(consumer: EventConsumer) -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_2", NeedCreated(need=need_profile("need_2")))
    calls = 0

    def flaky(session: Session, event: Envelope) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database hiccup")
        notice_need(session, event)

    consumer.handler = flaky
    with pytest.raises(RuntimeError):
        await consumer.process(record_of(envelope))
    await consumer.process(record_of(envelope))
    with consumer.db.session() as session:
        assert [n.need_id for n in session.exec(select(NoticedNeed))] == ["need_2"]


async def test_a_record_that_is_not_an_event_is_kept_as_a_dead_letter(consumer: EventConsumer) -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_3", NeedCreated(need=need_profile("need_3")))
    record = record_of(envelope)
    record.value = b"{broken"

    await consumer.process(record)

    with consumer.db.session() as session:
        letters = session.exec(select(DeadLetterEvent)).all()
        assert len(letters) == 1 and "JSON" in letters[0].reason
        assert session.exec(select(NoticedNeed)).all() == []


def test_a_fetched_batch_is_applied_partition_by_partition_the_earliest_produced_first() -> None:
    def produced(need_id: str, partition: int, timestamp_ms: int, microsecond: int) -> ConsumerRecord:
        envelope = Envelope.wrap(EventType.need_created, "/n", need_id, NeedCreated(need=need_profile(need_id)))
        envelope.time = envelope.time.replace(microsecond=microsecond)
        return record_of(envelope, partition=partition, timestamp=timestamp_ms)

    later_ms = produced("need_late", 0, 1_000_001, 100)
    same_ms_later = produced("need_b", 1, 1_000_000, 900)
    same_ms_earlier = produced("need_a", 2, 1_000_000, 300)
    batch = {
        TopicPartition("matchnet.needs", 0): [later_ms],
        TopicPartition("matchnet.needs", 1): [same_ms_later],
        TopicPartition("matchnet.needs", 2): [same_ms_earlier, produced("need_a2", 2, 1_000_002, 0)],
    }

    order = [records[0].key for _, records in in_production_order(batch)]

    assert order == [b"need_a", b"need_b", b"need_late"]
    # Within a partition nothing moves: Kafka's order per key holds.
    assert [r.key for r in dict(in_production_order(batch))[TopicPartition("matchnet.needs", 2)]] == [
        b"need_a", b"need_a2"]


def test_the_claim_is_compiled_once_per_dialect_and_still_tells_new_from_seen(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy gives its dialect inserts (ON CONFLICT) no cache key: without the kept compiled
    # form every consumed event would compile the statement again.
    db = Database(database_url, INBOX_TABLES)
    db.create_tables()
    claim = OnConflictStatement(_CLAIM._statements.__getitem__, column_keys=["event_id", "event_type", "processed_at"])
    compiled: list[str] = []
    original = claim._statements[db.backend]
    monkeypatch.setattr(claim, "_statements", {db.backend: _CountingStatement(original, compiled)})
    monkeypatch.setattr("shared.inbox._CLAIM", claim)
    first = Envelope.wrap(EventType.need_created, "/n", "need_4", NeedCreated(need=need_profile("need_4")))
    second = Envelope.wrap(EventType.need_created, "/n", "need_5", NeedCreated(need=need_profile("need_5")))
    try:
        answers = []
        for envelope in (first, second, first):
            with db.session() as session:
                answers.append(claim_event(session, envelope))
        assert answers == [True, True, False]
        assert compiled == [db.backend]
    finally:
        db.dispose()


class _CountingStatement:
    def __init__(self, statement: object, compiled: list[str]) -> None:
        self.statement = statement
        self.compiled = compiled

    def compile(self, **kwargs: object) -> object:
        self.compiled.append(kwargs["dialect"].name)  # type: ignore[attr-defined]
        return self.statement.compile(**kwargs)  # type: ignore[attr-defined]


async def test_offsets_the_broker_never_takes_are_dropped_and_consuming_goes_on(
    consumer: EventConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiokafka retries a retriable commit error for ever: offsets of partitions a restarted, emptied
    # broker does not have would hold the consumer (and its shutdown) for good.
    import asyncio

    from shared import kafka

    monkeypatch.setattr(kafka, "COMMIT_TIMEOUT_S", 0.05)
    lost, kept = TopicPartition("matchnet.needs", 2), TopicPartition("matchnet.needs", 1)
    committed: list[object] = []

    class RestartedBroker:
        def assignment(self) -> set[TopicPartition]:
            return {lost, kept}

        async def commit(self, offsets: dict[TopicPartition, object]) -> None:
            if lost in offsets:
                await asyncio.Event().wait()  # UnknownTopicOrPartition, retried every 100 ms
            committed.append(offsets)

    consumer.consumer = RestartedBroker()  # type: ignore[assignment]
    consumer._applied[lost] = 7
    await consumer._commit()  # returns: the offsets are dropped, not waited for
    assert consumer._applied == {}
    consumer._applied[kept] = 3  # an event applied afterwards, on a partition the broker has
    await consumer._commit()
    assert committed == [{kept: kafka.OffsetAndMetadata(3, "")}]
