"""Kafka plumbing: topic creation, the producer, and the idempotent consumer loop.

The embedded broker (Tansu) supports no idempotent or transactional producers, so the producer is
plain ``acks=all`` and correctness comes from the outbox (at least once) and the inbox (dedupe).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link
from sqlmodel import Session

from shared.db import Database
from shared.events import Envelope, InvalidEvent, Topic
from shared.inbox import DeadLetterEvent, claim_event
from shared.telemetry import context_from_kafka_headers, current_event_id, meter

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_meter = meter(__name__)
_processed = _meter.create_counter(
    "matchnet.events.processed", unit="{event}",
    description="Events a consumer handled: outcome applied, or duplicate (seen before, no effect)",
)
_failed = _meter.create_counter(
    "matchnet.events.failed", unit="{event}",
    description="Events a consumer could not apply: reason handler_error (retried) or invalid_event (dead-lettered)",
)
_processing_duration = _meter.create_histogram(
    "matchnet.events.process.duration", unit="s", description="Time to apply one event, its transaction included"
)

EventHandler = Callable[[Session, Envelope], None]
# Awaited before each event is applied (outside its transaction), e.g. to wait for another consumer.
BeforeApply = Callable[[], Awaitable[None]]
COMMIT_INTERVAL_MS = 200
LAG_REFRESH_S = 1.0  # consumer lag is recomputed at most this often (read by the metrics)
STOP_TIMEOUT_S = 2.0  # for the last commit and for leaving the group, each
# aiokafka retries a commit the broker calls retriable (an unknown partition, say) for ever; a plain
# commit takes milliseconds. See EventConsumer._commit.
COMMIT_TIMEOUT_S = 3.0
# A consumer asked to stop while still joining its group gives its stop this long (see _abandon_join).
ABANDON_JOIN_S = 0.2


async def ensure_topics(bootstrap_servers: str, partitions: int, topics: Iterable[str] | None = None) -> None:
    """Create the network's topics if they are missing (idempotent)."""
    wanted = list(topics) if topics is not None else [t.value for t in Topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in wanted if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def wait_for_broker(bootstrap_servers: str, timeout_s: float = 30.0) -> None:
    """Poll until the broker accepts a TCP connection (raises TimeoutError)."""
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"broker {bootstrap_servers} not reachable") from None
            await asyncio.sleep(0.05)


class EventPublisher:
    """A producer that (re)connects on demand; ``send`` awaits the broker's acknowledgement."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=False,  # unsupported by the embedded broker
                    linger_ms=0,
                    request_timeout_ms=10000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> object:
        producer = await self.start()
        return await producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def publish(self, envelope: Envelope) -> object:
        """Publish directly, bypassing an outbox (tools and tests)."""
        key, value, headers = envelope.to_kafka()
        return await self.send(envelope.topic.value, key, value, headers)

    async def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        async def probe() -> None:
            producer = await self.start()
            await producer.client.fetch_all_metadata()

        try:
            await asyncio.wait_for(probe(), timeout_s)
            return True
        except Exception:
            return False


class EventConsumer:
    """Consumes topics in a consumer group and applies each event once, in its own transaction.

    An event's effect and its inbox row commit together; offsets are committed only after the
    effects, so a crash redelivers and the inbox turns the redelivery into a no-op. A handler that
    fails is retried with backoff (the partition waits: nothing is skipped). A record that is not a
    valid event is stored as a dead letter and skipped. ``request_stop`` ends the loop after the
    batch in hand, with the offsets of every applied event committed.
    """

    def __init__(
        self,
        *,
        db: Database,
        topics: list[str],
        group_id: str,
        handler: EventHandler,
        bootstrap_servers: str,
        fetch_max_wait_ms: int = 5,
        session_timeout_ms: int = 10_000,
        max_backoff_s: float = 30.0,
        before_apply: BeforeApply | None = None,
    ) -> None:
        self.db = db
        self.before_apply = before_apply
        self.topics = topics
        self.group_id = group_id
        self.handler = handler
        self.bootstrap_servers = bootstrap_servers
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.max_backoff_s = max_backoff_s
        self.consumer: AIOKafkaConsumer | None = None
        self.processed_total = 0
        self.duplicates_total = 0
        self.dead_letters_total = 0
        # Next offset to commit per partition: one past the last record applied or skipped.
        self._applied: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        # Records behind the partition's end, per partition, as of the last refresh (for metrics).
        self.lag: dict[TopicPartition, int] = {}
        self._lag_refreshed = 0.0
        self._stopping = False
        self._stop_requested = asyncio.Event()
        _live_consumers.add(self)

    def request_stop(self) -> None:
        """Stop after the batch in hand: its events are applied and their offsets committed."""
        self._stopping = True
        self._stop_requested.set()

    async def run(self) -> None:
        """Consume until stopped or cancelled; a consumer that fails restarts (a refused commit is no failure).

        Offsets not committed before a restart are redelivered, and the inbox skips what was applied.
        """
        backoff = 0.1
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    return
                log.exception("consumer %s failed; restarting in %.1fs", self.group_id, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _consume(self) -> None:
        await self._start()
        if self._stopping:
            return
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        try:
            while not self._stopping:
                batch = await self.consumer.getmany(timeout_ms=COMMIT_INTERVAL_MS, max_records=500)
                for partition, records in in_production_order(batch):
                    await self._process_batch(partition, records)
                    if self._stopping:
                        break
                # Offsets are committed at most every interval, not per batch: a redelivery after
                # a crash or rebalance is absorbed by the inbox, and each commit is a broker round trip.
                if not batch or loop.time() - last_commit >= COMMIT_INTERVAL_MS / 1000:
                    await self._commit()
                    last_commit = loop.time()
                if loop.time() - self._lag_refreshed >= LAG_REFRESH_S:
                    await self._refresh_lag()
                    self._lag_refreshed = loop.time()
        finally:
            # Bounded: a broker that has gone away must not hold a shutdown; what is not committed
            # is redelivered, and the inbox absorbs it.
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self._commit()
            except (Exception, TimeoutError) as error:
                log.warning("consumer %s: offsets not committed (%s); they will be redelivered",
                            self.group_id, type(error).__name__)
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.consumer.stop()
            self.lag.clear()

    async def _commit(self) -> None:
        """Commit the offsets of what was applied (never of records fetched but not yet applied)."""
        assert self.consumer is not None
        due = {tp: offset for tp, offset in self._applied.items() if self._committed.get(tp) != offset}
        if not due:
            return
        assignment = self.consumer.assignment()
        due = {tp: offset for tp, offset in due.items() if tp in assignment}
        if not due:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in due.items()})
        except (TimeoutError, CommitFailedError) as error:
            # The group has moved on (aiokafka rejoins by itself), or the broker will not take these
            # offsets: the embedded broker, restarted, has lost the partitions and refuses them for
            # ever. Forget them and consume on; the events after the group's last committed offsets
            # are redelivered to whoever consumes those partitions next, and the inbox skips them.
            for tp in due:
                self._applied.pop(tp, None)
            log.warning("consumer %s: offsets of %d partitions not committed (%s); consuming on",
                        self.group_id, len(due), type(error).__name__)
            return
        self._committed.update(due)

    async def _refresh_lag(self) -> None:
        assert self.consumer is not None
        lag: dict[TopicPartition, int] = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            position = self._applied.get(tp)
            if position is None:  # nothing applied yet: where the group starts (known after a fetch)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(0.5):
                        position = await self.consumer.position(tp)
            if position is not None:
                lag[tp] = max(0, end - position)
        self.lag = lag

    async def _start(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self.consumer = AIOKafkaConsumer(
                *self.topics,
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.fetch_max_wait_ms,
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=self.session_timeout_ms // 3,
            )
            try:
                if not await _unless_stopped(self.consumer.start(), self._stop_requested):
                    await self._abandon_join()
                    return
                self._applied.clear()  # positions of a previous membership are stale
                self._committed.clear()
                return
            except Exception as error:
                await self.consumer.stop()
                log.warning("consumer %s: broker not ready (%s), retrying", self.group_id, error)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stop_requested.wait()
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _abandon_join(self) -> None:
        """Stop a consumer that has not joined its group yet, without waiting for the join.

        aiokafka's ``stop`` waits for the JoinGroup request in flight, and the embedded broker answers
        it only after half the session timeout (a group forming waits for its other members): a
        service stopped in its first seconds would wait that long. Nothing was fetched, so nothing is
        committed or lost; the broker forgets the member when its session expires.
        """
        assert self.consumer is not None
        try:
            async with asyncio.timeout(ABANDON_JOIN_S):
                await self.consumer.stop()
        except TimeoutError:
            log.info("consumer %s: stopped before it had joined its group", self.group_id)

    async def _process_batch(self, partition: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Apply a partition's records in order. Several records from other traces get one ``receive``
        span linking to each producer; each record's ``process`` span still continues its producer's trace."""
        if len(records) == 1:
            await self._process_with_retry(records[0])
            return
        links = [
            Link(producer, {"messaging.kafka.offset": record.offset})
            for record in records
            if (producer := trace.get_current_span(context_from_kafka_headers(list(record.headers or ())))
                .get_span_context()).is_valid
        ]
        with _tracer.start_as_current_span(
            f"receive {partition.topic}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root: it serves many traces
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "receive",
                "messaging.operation.name": "receive",
                "messaging.destination.name": partition.topic,
                "messaging.destination.partition.id": str(partition.partition),
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": len(records),
            },
        ):
            for record in records:
                await self._process_with_retry(record)
                if self._stopping:
                    return  # the rest is redelivered to whoever consumes next

    async def _process_with_retry(self, record: ConsumerRecord[Any, Any]) -> None:
        backoff = 0.1
        while True:
            try:
                await self.process(record)
                self._applied[TopicPartition(record.topic, record.partition)] = record.offset + 1
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                _failed.add(1, {"messaging.destination.name": record.topic,
                                "messaging.consumer.group.name": self.group_id, "error.type": "handler_error"})
                log.exception(
                    "consumer %s: handling %s[%s]@%s failed, retrying in %.1fs",
                    self.group_id, record.topic, record.partition, record.offset, backoff,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stop_requested.wait()
                if self._stopping:  # not applied, not committed: redelivered after the restart
                    return
                backoff = min(backoff * 2, self.max_backoff_s)

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Apply one record (exposed for tests); returns when its effect is committed or skipped."""
        headers = list(record.headers or ())
        attributes = {"messaging.destination.name": record.topic, "messaging.consumer.group.name": self.group_id}
        try:
            envelope = Envelope.from_kafka(record.key, record.value, headers)
        except InvalidEvent as error:
            log.error("consumer %s: dead-lettering %s@%s: %s", self.group_id, record.topic, record.offset, error)
            await asyncio.to_thread(self._dead_letter, record, headers, str(error))
            self.dead_letters_total += 1
            _failed.add(1, {**attributes, "error.type": "invalid_event"})
            return
        token = current_event_id.set(envelope.id)
        try:
            with _tracer.start_as_current_span(
                f"process {record.topic}",
                context=context_from_kafka_headers(headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.consumer.group.name": self.group_id,
                    "messaging.kafka.offset": record.offset,
                    "messaging.kafka.message.key": envelope.subject,
                    "messaging.message.id": envelope.id,
                    "cloudevents.event_id": envelope.id,
                    "cloudevents.event_type": envelope.type,
                    "cloudevents.event_source": envelope.source,
                },
            ):
                if self.before_apply is not None:
                    await self.before_apply()
                started = asyncio.get_running_loop().time()
                applied = await asyncio.to_thread(self._apply, envelope)
                _processing_duration.record(asyncio.get_running_loop().time() - started, attributes)
        finally:
            current_event_id.reset(token)
        outcome = "applied" if applied else "duplicate"
        _processed.add(1, {**attributes, "cloudevents.event_type": envelope.type, "matchnet.outcome": outcome})
        if applied:
            self.processed_total += 1
        else:
            self.duplicates_total += 1

    def _apply(self, envelope: Envelope) -> bool:
        """The event's effect and its inbox row in one transaction; False for an event seen before."""
        with self.db.session() as session:
            if not claim_event(session, envelope):
                return False
            self.handler(session, envelope)
            return True

    def _dead_letter(self, record: ConsumerRecord[Any, Any], headers: list[tuple[str, bytes]], reason: str) -> None:
        with self.db.session() as session:
            session.add(
                DeadLetterEvent(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key.decode("utf-8", "replace") if record.key else None,
                    headers=json.dumps({k: v.decode("utf-8", "replace") for k, v in headers}),
                    value=record.value.decode("utf-8", "replace") if record.value else None,
                    reason=reason,
                )
            )


Batch = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]


def in_production_order(batch: Batch) -> list[tuple[TopicPartition, list[ConsumerRecord[Any, Any]]]]:
    """A fetched batch's partitions, the one whose first record was produced first, first.

    A fetch returns partitions in the broker's order; without this, an event can wait behind another
    partition's events produced after it (the matcher's list for a need's office behind the notice
    it sent to a seed's office a moment later). The record timestamp has millisecond resolution; the
    CloudEvents time (microseconds, in UTC from every producer) breaks ties within a millisecond.
    """

    def first_produced(item: tuple[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> tuple[int, bytes]:
        first = item[1][0]
        event_time = next((value for key, value in first.headers or () if key == "ce_time"), b"")
        return first.timestamp, event_time

    return sorted(batch.items(), key=first_produced)


async def _unless_stopped(operation: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``operation`` to its end (True), unless ``stop`` is set first: then cancel it (False)."""
    task = asyncio.ensure_future(operation)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # raises what the operation raised
        return True
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return False


# ---- consumer lag ----------------------------------------------------------------------------

_live_consumers: weakref.WeakSet[EventConsumer] = weakref.WeakSet()
_live_lock = threading.Lock()


def _observe_lag(options: CallbackOptions) -> Iterable[Observation]:
    with _live_lock:
        consumers = list(_live_consumers)
    return [
        Observation(lag, {"messaging.consumer.group.name": consumer.group_id,
                          "messaging.destination.name": tp.topic,
                          "messaging.destination.partition.id": str(tp.partition)})
        for consumer in consumers
        for tp, lag in dict(consumer.lag).items()
    ]


_meter.create_observable_gauge(
    "matchnet.consumer.lag", [_observe_lag], unit="{message}",
    description="Records in a partition not yet applied by this consumer group (end offset minus position)",
)
