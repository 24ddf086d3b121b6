"""Transactional outbox: the entity and its event are written in one transaction; a relay publishes.

The relay publishes unsent rows in insertion order, marks them sent, and on a broker failure keeps
the row (and every later one) and retries with exponential backoff, so order is kept and nothing is
lost. Delivery is at least once: a crash between publish and mark re-publishes, consumers dedupe.

Fast path: a committing transaction hands its rows to the relay in memory, so an event leaves
without the relay re-reading it. The database stays the truth: the relay reads it at start, after
any failure, and every poll interval, so a row missed in memory is still published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link
from sqlalchemy import Column, Text, bindparam, func, update
from sqlmodel import Field, Session, SQLModel, col, select

from shared.db import OUTBOX_ROWS, Database
from shared.events import Envelope
from shared.telemetry import context_from_traceparent, current_traceparent, inject_kafka_headers, meter

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_meter = meter(__name__)
_published = _meter.create_counter(
    "matchnet.outbox.published", unit="{event}", description="Events the outbox relay published to Kafka"
)
_publish_failures = _meter.create_counter(
    "matchnet.outbox.publish_failures", unit="{attempt}", description="Publish attempts the broker refused or missed"
)

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


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row with its envelope, as the relay publishes it."""

    seq: int
    event_id: str
    event_type: str
    topic: str
    key: str
    traceparent: str | None
    envelope: Envelope

    @classmethod
    def of_row(cls, row: OutboxEvent) -> PendingEvent:
        assert row.seq is not None
        return cls(row.seq, row.event_id, row.event_type, row.topic, row.key, row.traceparent,
                   Envelope.model_validate_json(row.envelope))


_OUTBOX = OutboxEvent.__table__  # type: ignore[attr-defined]
# One compiled statement, reused: Core, not an ORM unit of work, on every write's hot path.
_INSERT_OUTBOX = _OUTBOX.insert().returning(_OUTBOX.c.seq)
_MARK_PUBLISHED = (
    _OUTBOX.update()
    .where(_OUTBOX.c.seq.in_(bindparam("seqs", expanding=True)))
    .values(published_at=bindparam("published_at"))
)


def record_event(session: Session, envelope: Envelope) -> None:
    """Add ``envelope`` to the outbox in the caller's transaction, with the current trace context."""
    traceparent = current_traceparent()
    topic = envelope.topic.value
    values = {
        "event_id": envelope.id, "event_type": envelope.type, "topic": topic, "key": envelope.subject,
        "envelope": envelope.model_dump_json(), "traceparent": traceparent,
        "created_at": datetime.now(UTC), "attempts": 0,
    }
    seq = session.connection().execute(_INSERT_OUTBOX, values).scalar_one()
    pending = PendingEvent(seq, envelope.id, envelope.type, topic, envelope.subject, traceparent, envelope)
    session.info.setdefault(OUTBOX_ROWS, []).append(pending)


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
        settle_s: float = 2.0,
        mark_delay_s: float = 0.2,
    ) -> None:
        self.db = db
        # Fast-path rows are marked sent this long after their publication, several in one
        # transaction: off the moment the next service works on the event (they share the cores),
        # and one UPDATE for the events of a busy moment. Well under settle_s, which it must stay.
        self.mark_delay_s = min(mark_delay_s, settle_s / 2)
        # The idle safety-net poll leaves rows younger than this to the process that committed them
        # (it was handed them and publishes them in a moment): with two replicas of a service on one
        # database, their polls would otherwise publish each other's fresh rows a second time.
        self.settle_s = settle_s
        self.send = send
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handed: list[PendingEvent] = []
        self._read_database = True  # at start the outbox may hold rows from before
        self._settled_only = False  # the next database read skips rows younger than settle_s
        # Highest seq published: a handed row at or below it was published by a database read
        # (or, committed out of seq order on PostgreSQL, is left for the next one).
        self._high_water = 0
        # Published by the fast path, not yet marked: marked in the background, batched, off the
        # path of the next event; a crash before the mark re-publishes (consumers dedupe).
        self._unmarked: set[int] = set()
        self._marker: asyncio.Task[None] | None = None
        self._stopping = False
        self.published_total = 0

    def request_stop(self) -> None:
        """Publish what is committed and unsent, then end ``run`` (shutdown; the drain waits for it)."""
        self._stopping = True
        self._wakeup.set()

    def backlog(self) -> tuple[int, float]:
        """How many rows are unsent, and the age in seconds of the oldest (0 when none)."""
        return outbox_backlog(self.db)

    def hand_over(self, committed: list[PendingEvent]) -> None:
        """Thread-safe: rows a transaction has just committed, to publish without reading them back."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._accept, committed)

    def _accept(self, committed: list[PendingEvent]) -> None:
        self._handed.extend(committed)
        self._wakeup.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.db.outbox_listeners.append(self.hand_over)
        backoff = self.initial_backoff_s
        try:
            while True:
                self._wakeup.clear()
                try:
                    if self._stopping:
                        await self._flush()
                        return
                    if self._read_database:
                        self._read_database = False
                        if await self.publish_pending(settled_only=self._settled_only) >= self.batch_size:
                            self._read_database = True  # more rows are waiting
                            continue
                        self._settled_only = False
                    if self._handed:
                        await self._publish_handed()
                        continue
                    backoff = self.initial_backoff_s
                    await self._sleep(self.poll_interval_s)
                    if not self._wakeup.is_set():
                        self._read_database = self._settled_only = True  # the safety-net poll
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the broker is down or refused: keep the rows, retry
                    _publish_failures.add(1)
                    if self._stopping:
                        log.warning("outbox relay: could not flush at shutdown (%s); the rows wait for the restart",
                                    error)
                        return
                    log.warning("outbox relay: publish failed (%s), retrying in %.1fs", error, backoff)
                    self._handed.clear()  # they are in the database, unpublished: read them from there
                    self._read_database, self._settled_only = True, False
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            self.db.outbox_listeners.remove(self.hand_over)
            if self._marker is not None:
                self._marker.cancel()
            if self._unmarked:  # shutting down: record what was published, blocking briefly
                try:
                    self._mark_published(sorted(self._unmarked))
                except Exception as error:  # they will be published again: at least once
                    log.warning("outbox relay: could not mark %d rows at shutdown (%s)", len(self._unmarked), error)

    async def _flush(self) -> None:
        """Everything committed so far: what was handed over, then every unsent row in the database."""
        if self._handed:
            await self._publish_handed()
        while await self.publish_pending() >= self.batch_size:
            pass

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel racing the wake-up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    async def _publish_handed(self) -> None:
        batch = sorted((p for p in self._handed if p.seq > self._high_water), key=lambda p: p.seq)
        if len(batch) < len(self._handed):
            # Committed after a higher number was published (PostgreSQL numbers rows at insert, not
            # at commit): read them from the database at once, in order, fresh or not.
            self._read_database, self._settled_only = True, False
        self._handed = []
        await self._publish_in_order(batch, mark_later=True)

    def _mark_in_background(self, seqs: list[int]) -> None:
        self._unmarked.update(seqs)
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_unmarked())

    async def _mark_unmarked(self) -> None:
        while self._unmarked:
            await asyncio.sleep(self.mark_delay_s)
            seqs = sorted(self._unmarked)
            try:
                await asyncio.to_thread(self._mark_published, seqs)
            except Exception as error:  # the database is busy or away: the seqs stay, try again
                log.warning("outbox relay: marking %d rows failed (%s)", len(seqs), error)
                await asyncio.sleep(0.5)
                continue
            self._unmarked.difference_update(seqs)

    async def publish_pending(self, settled_only: bool = False) -> int:
        """Publish one batch of unsent rows read from the database, in order; returns how many.

        ``settled_only`` skips rows created less than ``settle_s`` ago (the idle poll's read). On a
        failure the rows published so far are marked, the failing row records the error, and the
        exception propagates; later rows wait, so per-key order holds.
        """
        created_before = datetime.now(UTC) - timedelta(seconds=self.settle_s) if settled_only else None
        rows = [row for row in await asyncio.to_thread(self._load_pending, created_before)
                if row.seq not in self._unmarked]
        published = await self._publish_in_order([PendingEvent.of_row(row) for row in rows])
        return len(published)

    async def _publish_in_order(self, batch: list[PendingEvent], mark_later: bool = False) -> list[int]:
        published: list[int] = []
        try:
            with _batch_span(batch):
                for pending in batch:
                    await self._publish(pending)
                    published.append(pending.seq)
                    self._high_water = max(self._high_water, pending.seq)
        except Exception as error:
            if batch:
                failing = batch[len(published)]
                await asyncio.to_thread(self._record_failure, failing.seq, repr(error))
            raise
        finally:
            if published:
                self.published_total += len(published)
                if mark_later:
                    self._mark_in_background(published)
                else:
                    await asyncio.to_thread(self._mark_published, published)
        return published

    async def _publish(self, pending: PendingEvent) -> None:
        key, value, headers = pending.envelope.to_kafka()
        with _tracer.start_as_current_span(
            f"send {pending.topic}",
            context=context_from_traceparent(pending.traceparent),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": pending.topic,
                "messaging.kafka.message.key": pending.key,
                "messaging.message.id": pending.event_id,
                "cloudevents.event_id": pending.event_id,
                "cloudevents.event_type": pending.event_type,
            },
        ):
            inject_kafka_headers(headers)
            await self.send(pending.topic, key, value, headers)
        _published.add(1, {"messaging.destination.name": pending.topic, "cloudevents.event_type": pending.event_type})

    def _load_pending(self, created_before: datetime | None = None) -> list[OutboxEvent]:
        with self.db.session() as session:
            statement = select(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
            if created_before is not None:
                statement = statement.where(col(OutboxEvent.created_at) < created_before)
            statement = statement.order_by(col(OutboxEvent.seq)).limit(self.batch_size)
            return list(session.exec(statement).all())

    def _mark_published(self, seqs: list[int]) -> None:
        with self.db.session() as session:
            session.connection().execute(_MARK_PUBLISHED, {"seqs": seqs, "published_at": datetime.now(UTC)})

    def _record_failure(self, seq: int | None, error: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(OutboxEvent)
                .where(col(OutboxEvent.seq) == seq)
                .values(attempts=OutboxEvent.attempts + 1, last_error=error[:2000])
            )


@contextlib.contextmanager
def _batch_span(batch: list[PendingEvent]) -> Iterator[None]:
    """Several rows published in one go (rows of many requests): one span linking to each row's
    trace. Each row's ``send`` span still continues its own trace; one row needs no batch span."""
    if len(batch) < 2:
        yield
        return
    links = [Link(producer, {"messaging.message.id": pending.event_id}) for pending in batch
             if (producer := trace.get_current_span(context_from_traceparent(pending.traceparent))
                 .get_span_context()).is_valid]
    with _tracer.start_as_current_span(
        "outbox relay batch", context=trace.set_span_in_context(trace.INVALID_SPAN), links=links,
        attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                    "messaging.batch.message_count": len(batch)},
    ):
        yield


# ---- backlog metrics -------------------------------------------------------------------------

_BACKLOG = (
    _OUTBOX.select()
    .with_only_columns(func.count(), func.min(_OUTBOX.c.created_at))
    .where(_OUTBOX.c.published_at.is_(None))
)


def outbox_backlog(db: Database) -> tuple[int, float]:
    """(unsent rows, age in seconds of the oldest unsent row or 0) of ``db``'s outbox."""
    with db.engine.connect() as connection:
        count, oldest = connection.execute(_BACKLOG).one()
    if not count or oldest is None:
        return 0, 0.0
    if oldest.tzinfo is None:  # SQLite keeps no zone: the column stores UTC
        oldest = oldest.replace(tzinfo=UTC)
    return int(count), max(0.0, (datetime.now(UTC) - oldest).total_seconds())


class _WatchedOutboxes:
    """The outboxes this process reports on; one read serves both gauges of a collection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._databases: dict[str, Database] = {}
        self._cache: dict[str, tuple[float, tuple[int, float]]] = {}

    def add(self, db: Database, service: str) -> None:
        with self._lock:
            self._databases[service] = db

    def remove(self, db: Database) -> None:
        with self._lock:
            for service in [name for name, watched in self._databases.items() if watched is db]:
                del self._databases[service]
                self._cache.pop(service, None)

    def states(self) -> list[tuple[str, tuple[int, float]]]:
        with self._lock:
            databases = list(self._databases.items())
        states = []
        for service, db in databases:
            cached = self._cache.get(service)
            if cached is None or time.monotonic() - cached[0] > 1.0:
                try:
                    cached = (time.monotonic(), outbox_backlog(db))
                except Exception:  # the database is away: report nothing rather than fail the scrape
                    continue
                self._cache[service] = cached
            states.append((service, cached[1]))
        return states


_watched = _WatchedOutboxes()


def watch_outbox(db: Database, service: str) -> None:
    """Report ``db``'s outbox backlog and age in this process's metrics (until ``unwatch_outbox``)."""
    _watched.add(db, service)


def unwatch_outbox(db: Database) -> None:
    _watched.remove(db)


def _observe_backlog(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(count, {"matchnet.service": service}) for service, (count, _) in _watched.states()]


def _observe_age(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(age, {"matchnet.service": service}) for service, (_, age) in _watched.states()]


_meter.create_observable_gauge(
    "matchnet.outbox.backlog", [_observe_backlog], unit="{event}", description="Outbox rows not yet published"
)
_meter.create_observable_gauge(
    "matchnet.outbox.oldest_age", [_observe_age], unit="s", description="Age of the oldest unpublished outbox row"
)
