"""Kafka plumbing: topic creation, the producer, and the idempotent consumer loop.

The embedded broker (Tansu) supports no idempotent or transactional producers, so the producer is
plain ``acks=all`` and correctness comes from the outbox (at least once) and the inbox (dedupe).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from opentelemetry import trace
from sqlmodel import Session

from shared.db import Database
from shared.events import Envelope, InvalidEvent, Topic
from shared.inbox import DeadLetterEvent, claim_event
from shared.telemetry import context_from_kafka_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

EventHandler = Callable[[Session, Envelope], None]
# Awaited before each event is applied (outside its transaction), e.g. to wait for another consumer.
BeforeApply = Callable[[], Awaitable[None]]
COMMIT_INTERVAL_MS = 200


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
    valid event is stored as a dead letter and skipped.
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
        self.max_backoff_s = max_backoff_s
        self.consumer: AIOKafkaConsumer | None = None
        self.processed_total = 0
        self.duplicates_total = 0
        self.dead_letters_total = 0

    async def run(self) -> None:
        """Consume until cancelled; a consumer that fails (a lost group, a failed commit) restarts.

        Offsets not committed before a restart are redelivered, and the inbox skips what was applied.
        """
        backoff = 0.1
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed; restarting in %.1fs", self.group_id, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _consume(self) -> None:
        await self._start()
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        uncommitted = False
        last_commit = loop.time()
        try:
            while True:
                batch = await self.consumer.getmany(timeout_ms=COMMIT_INTERVAL_MS, max_records=500)
                for records in batch.values():
                    for record in records:
                        await self._process_with_retry(record)
                uncommitted = uncommitted or bool(batch)
                # Offsets are committed at most every interval, not per batch: a redelivery after
                # a crash or rebalance is absorbed by the inbox, and each commit is a broker round trip.
                if uncommitted and (not batch or loop.time() - last_commit >= COMMIT_INTERVAL_MS / 1000):
                    await self.consumer.commit()
                    uncommitted = False
                    last_commit = loop.time()
        finally:
            if uncommitted:
                with contextlib.suppress(Exception):
                    await self.consumer.commit()
            await self.consumer.stop()

    async def _start(self) -> None:
        backoff = 0.1
        while True:
            self.consumer = AIOKafkaConsumer(
                *self.topics,
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.fetch_max_wait_ms,
            )
            try:
                await self.consumer.start()
                return
            except Exception as error:
                await self.consumer.stop()
                log.warning("consumer %s: broker not ready (%s), retrying", self.group_id, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _process_with_retry(self, record: ConsumerRecord[Any, Any]) -> None:
        backoff = 0.1
        while True:
            try:
                await self.process(record)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "consumer %s: handling %s[%s]@%s failed, retrying in %.1fs",
                    self.group_id, record.topic, record.partition, record.offset, backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Apply one record (exposed for tests); returns when its effect is committed or skipped."""
        headers = list(record.headers or ())
        try:
            envelope = Envelope.from_kafka(record.key, record.value, headers)
        except InvalidEvent as error:
            log.error("consumer %s: dead-lettering %s@%s: %s", self.group_id, record.topic, record.offset, error)
            await asyncio.to_thread(self._dead_letter, record, headers, str(error))
            self.dead_letters_total += 1
            return
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
            },
        ):
            if self.before_apply is not None:
                await self.before_apply()
            applied = await asyncio.to_thread(self._apply, envelope)
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
