from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlmodel import select

from shared.db import Database
from shared.events import Envelope, EventType, NeedCreated
from shared.outbox import OutboxEvent, OutboxRelay, record_event
from tests.factories import need_profile


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'outbox.db'}", [OutboxEvent])
    database.create_tables()
    yield database
    database.dispose()


class RecordingBroker:
    """Collects what the relay sends; fails the first ``failures`` sends."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        self.sent.append((topic, key, dict(headers)))

    def subjects(self) -> list[bytes]:
        return [key for _, key, _ in self.sent]


def write_need_event(db: Database, need_id: str) -> Envelope:
    envelope = Envelope.wrap(EventType.need_created, "/n", need_id, NeedCreated(need=need_profile(need_id)))
    with db.session() as session:
        record_event(session, envelope)
    return envelope


async def test_relay_publishes_rows_in_insertion_order_and_marks_them_sent(db: Database) -> None:
    broker = RecordingBroker()
    envelopes = [write_need_event(db, f"need_{i}") for i in range(5)]

    assert await OutboxRelay(db, broker.send).publish_pending() == 5

    assert broker.subjects() == [f"need_{i}".encode() for i in range(5)]
    assert [h["ce_id"].decode() for _, _, h in broker.sent] == [e.id for e in envelopes]
    with db.session() as session:
        assert all(row.published_at is not None for row in session.exec(select(OutboxEvent)))


def test_no_event_leaves_for_a_rolled_back_write(db: Database) -> None:
    envelope = Envelope.wrap(EventType.need_created, "/n", "need_x", NeedCreated(need=need_profile("need_x")))
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, envelope)
        raise RuntimeError("the entity write failed")
    with db.session() as session:
        assert session.exec(select(OutboxEvent)).all() == []


async def test_a_failed_publish_keeps_the_row_and_every_later_one_until_the_broker_returns(db: Database) -> None:
    broker = RecordingBroker(failures=1)
    write_need_event(db, "need_a")
    write_need_event(db, "need_b")
    relay = OutboxRelay(db, broker.send)

    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert broker.sent == []
    with db.session() as session:
        rows = session.exec(select(OutboxEvent).order_by(OutboxEvent.seq)).all()
        assert [r.published_at for r in rows] == [None, None]
        assert rows[0].attempts == 1 and "broker unavailable" in (rows[0].last_error or "")

    assert await relay.publish_pending() == 2
    assert broker.subjects() == [b"need_a", b"need_b"]


async def test_running_relay_retries_with_backoff_and_wakes_on_commit(db: Database) -> None:
    broker = RecordingBroker(failures=3)
    relay = OutboxRelay(db, broker.send, poll_interval_s=30, initial_backoff_s=0.01)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.05)  # the relay is now waiting (poll interval 30 s): only a wake-up moves it
        for i in range(3):
            await asyncio.to_thread(write_need_event, db, f"need_{i}")
        async with asyncio.timeout(5):
            while len(broker.sent) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert broker.subjects() == [b"need_0", b"need_1", b"need_2"]


async def test_relay_carries_the_trace_context_of_the_write_into_kafka_headers(db: Database) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /v1/needs") as span:
        write_need_event(db, "need_t")
        trace_id = format(span.get_span_context().trace_id, "032x")
    broker = RecordingBroker()
    await OutboxRelay(db, broker.send).publish_pending()
    traceparent = broker.sent[0][2]["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id
    with db.session() as session:
        row = session.exec(select(OutboxEvent)).one()
        assert json.loads(row.envelope)["subject"] == "need_t"


async def test_rows_committed_by_another_process_are_published_by_the_safety_net_poll(db: Database) -> None:
    broker = RecordingBroker()
    relay = OutboxRelay(db, broker.send, poll_interval_s=0.05, settle_s=0.1)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.02)
        # Another replica's write: this process's relay is not told about it.
        other_replica = Database(db.url, [OutboxEvent])
        await asyncio.to_thread(write_need_event, other_replica, "need_elsewhere")
        other_replica.dispose()
        async with asyncio.timeout(5):
            while not broker.sent:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert broker.subjects() == [b"need_elsewhere"]


class SlowBroker(RecordingBroker):
    """A broker that takes a while to acknowledge."""

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await asyncio.sleep(0.3)
        await super().send(topic, key, value, headers)


async def test_a_replica_s_poll_leaves_another_replica_s_fresh_rows_to_it(db: Database) -> None:
    # Two replicas of one service on one database: A commits a row and is slow to publish it; B's
    # idle poll runs all the while. Without the settling time B publishes the row too.
    replica_a = Database(db.url, [OutboxEvent])
    broker_a, broker_b = SlowBroker(), RecordingBroker()
    relay_a = OutboxRelay(replica_a, broker_a.send, poll_interval_s=30)
    relay_b = OutboxRelay(db, broker_b.send, poll_interval_s=0.01, settle_s=2.0)
    tasks = [asyncio.create_task(relay_a.run()), asyncio.create_task(relay_b.run())]
    try:
        await asyncio.sleep(0.05)
        await asyncio.to_thread(write_need_event, replica_a, "need_on_a")
        async with asyncio.timeout(5):
            while not broker_a.sent:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # B keeps polling after A published and marked it
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        replica_a.dispose()
    assert broker_a.subjects() == [b"need_on_a"]
    assert broker_b.subjects() == []


async def test_a_committed_row_is_published_once_even_when_a_database_read_races_the_hand_over(db: Database) -> None:
    broker = RecordingBroker()
    relay = OutboxRelay(db, broker.send, poll_interval_s=0.001)  # database reads all the time
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.01)
        for i in range(20):
            await asyncio.to_thread(write_need_event, db, f"need_{i}")
        async with asyncio.timeout(5):
            while len(broker.sent) < 20:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert broker.subjects() == [f"need_{i}".encode() for i in range(20)]


async def test_rows_published_on_the_fast_path_are_marked_sent_soon_after(db: Database) -> None:
    broker = RecordingBroker()
    relay = OutboxRelay(db, broker.send, poll_interval_s=30)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.02)
        for i in range(3):
            await asyncio.to_thread(write_need_event, db, f"need_{i}")

        def all_marked() -> bool:
            with db.session() as session:
                return all(row.published_at is not None for row in session.exec(select(OutboxEvent)))

        async with asyncio.timeout(5):
            while not await asyncio.to_thread(all_marked):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert broker.subjects() == [b"need_0", b"need_1", b"need_2"]
