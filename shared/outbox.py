"""Transactional outbox: the entity and its event are written in one transaction; a relay publishes.

The relay publishes unsent rows in insertion order, marks them sent, and on a broker failure keeps
the row (and every later one) and retries with exponential backoff, so order is kept and nothing is
lost. Delivery is at least once: a crash between publish and mark re-publishes, consumers dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from opentelemetry import trace
from sqlalchemy import Column, Text, update
from sqlmodel import Field, Session, SQLModel, col, select

from shared.db import OUTBOX_WRITTEN, Database
from shared.events import Envelope
from shared.telemetry import context_from_traceparent, current_traceparent, inject_kafka_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

# (topic, key, value, headers) -> awaits the broker's acknowledgement
SendFunction = Callable[[str, bytes, bytes, list[tuple[str, bytes]]], Awaitable[object]]


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=64)
    event_type: str = Field(max_length=128)
    topic: str = Field(max_length=128)
    key: str = Field(max_length=128)
    envelope: str = Field(sa_column=Column(Text, nullable=False))
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    published_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


def record_event(session: Session, envelope: Envelope) -> None:
    """Add ``envelope`` to the outbox in the caller's transaction, with the current trace context."""
    session.add(
        OutboxEvent(
            event_id=envelope.id,
            event_type=envelope.type,
            topic=envelope.topic.value,
            key=envelope.subject,
            envelope=envelope.model_dump_json(),
            traceparent=current_traceparent(),
        )
    )
    session.info[OUTBOX_WRITTEN] = True


class OutboxRelay:
    """Publishes a service's outbox rows in order; woken after each commit, polls as a safety net."""

    def __init__(
        self,
        db: Database,
        send: SendFunction,
        poll_interval_s: float = 0.5,
        batch_size: int = 200,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.db = db
        self.send = send
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published_total = 0

    def wake(self) -> None:
        """Thread-safe: ask the relay to look at the outbox now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.db.outbox_listeners.append(self.wake)
        backoff = self.initial_backoff_s
        try:
            while True:
                self._wakeup.clear()
                try:
                    published = await self.publish_pending()
                    backoff = self.initial_backoff_s
                    if published >= self.batch_size:
                        continue  # more rows are waiting
                    await self._sleep(self.poll_interval_s)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the broker is down or refused: keep the rows, retry
                    log.warning("outbox relay: publish failed (%s), retrying in %.1fs", error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            self.db.outbox_listeners.remove(self.wake)

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel racing the wake-up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows in order; returns how many were published.

        On a failure the rows published so far are marked, the failing row records the error, and
        the exception propagates; later rows wait, so per-key order holds.
        """
        rows = await asyncio.to_thread(self._load_pending)
        published: list[int] = []
        try:
            for row in rows:
                await self._publish(row)
                assert row.seq is not None
                published.append(row.seq)
        except Exception as error:
            if rows:
                failing = rows[len(published)]
                await asyncio.to_thread(self._record_failure, failing.seq, repr(error))
            raise
        finally:
            if published:
                await asyncio.to_thread(self._mark_published, published)
                self.published_total += len(published)
        return len(published)

    async def _publish(self, row: OutboxEvent) -> None:
        envelope = Envelope.model_validate_json(row.envelope)
        key, value, headers = envelope.to_kafka()
        with _tracer.start_as_current_span(
            f"send {row.topic}",
            context=context_from_traceparent(row.traceparent),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": row.topic,
                "messaging.kafka.message.key": row.key,
                "messaging.message.id": row.event_id,
                "cloudevents.event_id": row.event_id,
                "cloudevents.event_type": row.event_type,
            },
        ):
            inject_kafka_headers(headers)
            await self.send(row.topic, key, value, headers)

    def _load_pending(self) -> list[OutboxEvent]:
        with self.db.session() as session:
            statement = (
                select(OutboxEvent)
                .where(col(OutboxEvent.published_at).is_(None))
                .order_by(col(OutboxEvent.seq))
                .limit(self.batch_size)
            )
            return list(session.exec(statement).all())

    def _mark_published(self, seqs: list[int]) -> None:
        with self.db.session() as session:
            session.execute(
                update(OutboxEvent).where(col(OutboxEvent.seq).in_(seqs)).values(published_at=datetime.now(UTC))
            )

    def _record_failure(self, seq: int | None, error: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(OutboxEvent)
                .where(col(OutboxEvent.seq) == seq)
                .values(attempts=OutboxEvent.attempts + 1, last_error=error[:2000])  # type: ignore[operator]
            )

    def backlog(self) -> int:
        with self.db.session() as session:
            return len(session.exec(select(OutboxEvent.seq).where(col(OutboxEvent.published_at).is_(None))).all())
