"""The delivery worker: POSTs pending deliveries as signed Standard Webhooks and retries with backoff.

The database is the queue and the truth: a delivery is recorded (pending) before it is attempted,
and every attempt is recorded with what came of it. A delivery is claimed by moving its
``next_attempt_at`` forward by a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so neither this
worker nor another replica picks it twice while it is in flight; if the process dies mid-send the
lease runs out and the delivery is sent again with the same ``webhook-id`` (at least once;
receivers dedupe on it). An attempt whose answer was recorded is never repeated.

Fast path: the consumer's handler records a new delivery already claimed and hands it over in
memory after its commit, so the first attempt starts with no database read. Retries, and anything
recorded while this worker was away, are claimed from the database.

Order: deliveries to one subscription for one need or seed (``ordering_key``) go one after the
other in the order they were recorded; the claim takes only the earliest pending one of each, and
the handler hands over only a delivery with nothing pending before it.

Concurrency is bounded overall and per subscription (the claim takes at most that many of each
subscription's due deliveries), so a slow or dead receiver holds only its own share of slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import and_, bindparam, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from shared.db import Database
from shared.telemetry import context_from_traceparent

from .domain import (
    HELD,
    AttemptVerdict,
    disable_subscription,
    judge_attempt,
    now_utc,
    parse_retry_after,
    retry_delay,
    signing_secrets,
    webhook_headers,
)
from .metrics import DeliveryMetrics
from .models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DisabledReason,
    Subscription,
    SubscriptionStatus,
)
from .settings import NotificationsSettings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
OrderingSlot = tuple[str, str]  # (subscription id, ordering key)


@dataclass(frozen=True)
class ClaimedDelivery:
    """What one attempt needs, read when the delivery was claimed."""

    id: str
    subscription_id: str
    url: str
    secrets: tuple[str, ...]
    payload: str
    traceparent: str | None
    attempt: int  # 1 for the first attempt
    ordering_key: str = ""
    followed: bool = False  # a later delivery for the same need or seed waits for this one

    @property
    def slot(self) -> OrderingSlot:
        return (self.subscription_id, self.ordering_key)


@dataclass(frozen=True)
class AttemptResult:
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    retry_after_s: float | None


class DeliveryWorker:
    """Sends due deliveries concurrently; woken after a delivery commits, polls as a safety net."""

    def __init__(
        self,
        db: Database,
        *,
        poll_interval_s: float = 0.5,
        concurrency: int = 64,
        concurrency_per_subscription: int = 4,
        timeout_s: float = 5.0,
        max_attempts: int = 17,
        backoff_base_s: float = 5.0,
        backoff_cap_s: float = 6 * 3600.0,
        lease_s: float | None = None,
        disable_after_s: float = 86_400.0,
        scan_size: int = 500,
        rng: random.Random | None = None,
        client: httpx.AsyncClient | None = None,
        metrics: DeliveryMetrics | None = None,
    ) -> None:
        self.db = db
        self.poll_interval_s = poll_interval_s
        self.concurrency = concurrency
        self.concurrency_per_subscription = concurrency_per_subscription
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        # Long enough for an attempt and its bookkeeping; a crashed attempt is retried after it.
        self.lease = timedelta(seconds=lease_s or max(30.0, timeout_s * 6))
        self.disable_after = timedelta(seconds=disable_after_s)
        self.scan_size = scan_size
        self.rng = rng or random.Random()
        self.metrics = metrics or DeliveryMetrics(db)
        # A client passed in (custom transport, proxy) is the caller's to close.
        self._given_client = client
        self._client: httpx.AsyncClient | None = client
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[str, ClaimedDelivery] = {}
        self._waiting: list[ClaimedDelivery] = []  # handed over, waiting for a free slot
        # The last claim filled every free slot: more may be due in the database.
        self._more_due = False
        # Need or seed slots with a later delivery waiting in the database behind the one held here.
        self._followed: set[OrderingSlot] = set()
        # Subscriptions with a run of failed attempts on record, to close when one succeeds.
        self._failing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # How attempts ended, by the delivery's status after them ("pending" = retry scheduled).
        self.outcomes: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, db: Database, settings: NotificationsSettings) -> DeliveryWorker:
        return cls(
            db,
            poll_interval_s=settings.delivery_poll_interval_s,
            concurrency=settings.delivery_concurrency,
            concurrency_per_subscription=settings.delivery_concurrency_per_subscription,
            timeout_s=settings.delivery_timeout_s,
            max_attempts=settings.delivery_max_attempts,
            backoff_base_s=settings.delivery_backoff_base_s,
            backoff_cap_s=settings.delivery_backoff_cap_s,
            lease_s=settings.lease_s,
            disable_after_s=settings.subscription_disable_after_s,
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def client(self) -> httpx.AsyncClient | None:
        """The HTTP client of the running worker (test pings use it too)."""
        return self._client

    # ---- what other threads call -------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: ask the worker to look for due deliveries now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def hand_over(self, claimed: list[ClaimedDelivery]) -> None:
        """Thread-safe: deliveries just committed and claimed for this worker, to send at once."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._accept, claimed)
        else:
            self._waiting.extend(claimed)  # not running yet: run() starts them

    def note_followers(self, slots: list[OrderingSlot]) -> None:
        """Thread-safe: deliveries were recorded behind earlier pending ones of these slots."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._note_followers, slots)

    # ---- the loop ----------------------------------------------------------------------------

    def _note_followers(self, slots: list[OrderingSlot]) -> None:
        held = {d.slot for d in self._in_flight.values()} | {d.slot for d in self._waiting}
        for slot in slots:
            if slot in held:
                self._followed.add(slot)  # woken when the one held here settles
            else:
                self._wakeup.set()  # the earlier one settled already, or waits in the database

    def _accept(self, claimed: list[ClaimedDelivery]) -> None:
        self._waiting.extend(claimed)
        self._start_waiting()

    def _start_waiting(self) -> None:
        if self._client is None:
            return
        busy = Counter(d.subscription_id for d in self._in_flight.values())
        still_waiting: list[ClaimedDelivery] = []
        waiting_for: Counter[str] = Counter()
        overflow: list[ClaimedDelivery] = []
        for delivery in self._waiting:
            slot_free = len(self._in_flight) < self.concurrency
            if slot_free and busy[delivery.subscription_id] < self.concurrency_per_subscription:
                busy[delivery.subscription_id] += 1
                self._start(delivery)
            elif waiting_for[delivery.subscription_id] < self.concurrency_per_subscription * 4:
                waiting_for[delivery.subscription_id] += 1
                still_waiting.append(delivery)
            else:  # a slow receiver's backlog waits in the database, not in memory
                overflow.append(delivery)
        self._waiting = still_waiting
        if overflow:
            self._spawn(self._release(overflow), "webhook-release")

    async def _release(self, deliveries: list[ClaimedDelivery]) -> None:
        try:
            await asyncio.to_thread(self._end_leases, [d.id for d in deliveries])
        except Exception as error:  # their leases run out instead
            log.warning("delivery worker: could not release %d deliveries (%s)", len(deliveries), error)
        self._more_due = True

    def _end_leases(self, delivery_ids: list[str]) -> None:
        with self.db.session() as session:
            session.connection().execute(_END_LEASES, {"ids": delivery_ids, "now": now_utc()})

    def _start(self, delivery: ClaimedDelivery) -> None:
        self._in_flight[delivery.id] = delivery
        self._spawn(self._deliver(delivery), f"webhook-{delivery.id}")

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = self._given_client or httpx.AsyncClient(
            timeout=self.timeout_s, limits=httpx.Limits(max_connections=self.concurrency * 2),
        )
        try:
            self._failing.update(await asyncio.to_thread(self._load_failing))
        except Exception as error:
            log.warning("delivery worker: could not read failing subscriptions (%s)", error)
        self._start_waiting()
        try:
            while True:
                self._wakeup.clear()
                try:
                    await self.dispatch_due()
                except Exception as error:  # the database is unavailable: try again on the next tick
                    log.warning("delivery worker: could not claim due deliveries (%s)", error)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races a wake.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval_s):
                        await self._wakeup.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._given_client is None:
                await self._client.aclose()
            self._client = self._given_client

    def _load_failing(self) -> set[str]:
        with self.db.session() as session:
            return set(session.exec(select(Subscription.id).where(col(Subscription.failing_since).is_not(None))))

    async def dispatch_due(self) -> int:
        """Claim due deliveries up to the free slots and start sending them; returns how many."""
        budget = self.concurrency - len(self._in_flight)
        if budget <= 0:
            self._more_due = True  # could not look: look again when a slot frees
            return 0
        busy = Counter(d.subscription_id for d in self._in_flight.values())
        local = frozenset(self._in_flight) | {d.id for d in self._waiting}
        claimed, left_due = await asyncio.to_thread(self._claim_due, budget, busy, local)
        self._more_due = left_due
        for delivery in claimed:
            self._start(delivery)
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            result = await self._attempt(delivery)
            outcome = judge_attempt(result.status_code)
            self.metrics.attempt_ended(outcome.value, result.latency_ms)
            status = await asyncio.to_thread(self._settle, delivery, result)
            self.outcomes[status] += 1
            self.metrics.delivery_settled(status)
            if status != DeliveryStatus.pending and (delivery.followed or delivery.slot in self._followed):
                self._followed.discard(delivery.slot)
                self._more_due = True  # the next one for this need or seed is due now
        except Exception:  # bookkeeping failed: the lease runs out and the delivery is tried again
            log.exception("delivery worker: settling %s failed", delivery.id)
        finally:
            self._in_flight.pop(delivery.id, None)
            self._start_waiting()  # a slot is free
            if self._more_due:
                self._wakeup.set()

    async def _attempt(self, delivery: ClaimedDelivery) -> AttemptResult:
        """One signed POST, inside a span that continues the trace stored with the delivery."""
        assert self._client is not None, "the worker is not running"
        body = delivery.payload.encode()
        headers = webhook_headers(delivery.secrets, delivery.id, int(time.time()), body)
        attempted_at = now_utc()
        with _tracer.start_as_current_span(
            "webhook deliver",
            context=context_from_traceparent(delivery.traceparent),
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "webhook.id": delivery.id,
                "webhook.subscription.id": delivery.subscription_id,
                "webhook.attempt": delivery.attempt,
                "server.address": urlsplit(delivery.url).hostname or "",
            },
        ) as span:
            started = time.perf_counter()
            try:
                status_code, retry_after = await post_webhook(
                    self._client, delivery.url, body, headers, self.timeout_s
                )
            except Exception as error:  # refused, reset, timed out, bad URL: all are retried
                latency_ms = (time.perf_counter() - started) * 1000
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                return AttemptResult(attempted_at, None, latency_ms, describe_error(error, self.timeout_s), None)
            latency_ms = (time.perf_counter() - started) * 1000
            span.set_attribute("http.response.status_code", status_code)
            if judge_attempt(status_code) != AttemptVerdict.delivered:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
            return AttemptResult(
                attempted_at, status_code, latency_ms, None, parse_retry_after(retry_after, now_utc())
            )

    # ---- the database ------------------------------------------------------------------------

    def _claim_due(
        self, budget: int, busy: Counter[str], local: frozenset[str] = frozenset()
    ) -> tuple[list[ClaimedDelivery], bool]:
        """Claim due deliveries (not those this worker holds) by moving their lease forward.

        Only the earliest pending delivery of each need or seed per subscription is a candidate, and
        at most ``concurrency_per_subscription`` of each subscription, so one receiver's backlog
        never hides the others'. Returns them, and whether due deliveries were left for lack of a slot.
        """
        now = now_utc()
        with self.db.session() as session:
            rows = session.exec(_due_statement(now, self.concurrency_per_subscription, self.scan_size)).all()
            claimed: list[ClaimedDelivery] = []
            left_due = len(rows) >= self.scan_size  # a full scan: there may be more behind it
            for row, subscription, followed in rows:
                if row.id in local:
                    continue
                if len(claimed) >= budget or busy[row.subscription_id] >= self.concurrency_per_subscription:
                    left_due = True
                    continue
                busy[row.subscription_id] += 1
                row.next_attempt_at = now + self.lease
                session.add(row)
                claimed.append(
                    ClaimedDelivery(
                        id=row.id, subscription_id=row.subscription_id, url=subscription.url,
                        secrets=signing_secrets(subscription, now), payload=row.payload,
                        traceparent=row.traceparent, attempt=row.attempts + 1, ordering_key=row.ordering_key,
                        followed=bool(followed),
                    )
                )
            return claimed, left_due

    def _settle(self, claimed: ClaimedDelivery, result: AttemptResult) -> str:
        """Record the attempt and decide: succeeded, failed (410), retry later, dead, or cancelled.

        Returns the delivery's status afterwards ("pending" when a retry is scheduled).
        """
        verdict = judge_attempt(result.status_code)
        now = now_utc()
        if verdict == AttemptVerdict.delivered:
            return self._settle_delivered(claimed, result, now)
        with self.db.session() as session:
            delivery = session.get(Delivery, claimed.id)
            subscription = session.get(Subscription, claimed.subscription_id)
            assert delivery is not None and subscription is not None
            attempt = DeliveryAttempt(
                delivery_id=delivery.id, attempted_at=result.attempted_at, status_code=result.status_code,
                latency_ms=round(result.latency_ms, 3), error=result.error,
            )
            session.add(attempt)
            delivery.attempts += 1
            session.add(delivery)
            if delivery.status != DeliveryStatus.pending:
                return delivery.status  # settled elsewhere while this attempt ran (a delete, a 410)
            self._failing.add(subscription.id)
            _extend_failure_run(session, subscription, result.attempted_at)
            last_error = result.error or f"HTTP {result.status_code}"
            if verdict == AttemptVerdict.gone:
                delivery.status = DeliveryStatus.failed.value
                disable_subscription(session, subscription, DisabledReason.gone, now, last_error=last_error,
                                     keep=delivery.id)
                log.warning("subscription %s disabled: its receiver answered 410 Gone", subscription.id)
            elif subscription.status == SubscriptionStatus.active and self._failing_too_long(subscription, now):
                delivery.status = DeliveryStatus.cancelled.value
                disable_subscription(session, subscription, DisabledReason.failing, now, last_error=last_error,
                                     keep=delivery.id)
                log.warning("subscription %s disabled: every attempt failed since %s",
                            subscription.id, subscription.failing_since)
            elif subscription.status not in (SubscriptionStatus.active, SubscriptionStatus.paused):
                delivery.status = DeliveryStatus.cancelled.value
            elif delivery.attempts >= self.max_attempts:
                delivery.status = DeliveryStatus.dead.value
            elif subscription.status == SubscriptionStatus.paused:
                delivery.next_attempt_at = HELD
            else:
                delay = retry_delay(
                    delivery.attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s,
                    retry_after_s=result.retry_after_s, rng=self.rng,
                )
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                attempt.next_attempt_at = delivery.next_attempt_at
            if delivery.status != DeliveryStatus.pending:
                delivery.finished_at = now
            return delivery.status

    def _failing_too_long(self, subscription: Subscription, now: datetime) -> bool:
        return subscription.failing_since is not None and now - subscription.failing_since >= self.disable_after

    def _settle_delivered(self, claimed: ClaimedDelivery, result: AttemptResult, now: datetime) -> str:
        """The common case, in two Core statements and no reads: the receiver has it, whatever
        happened to the delivery meanwhile (a cancel included), and the record says so."""
        failing = claimed.subscription_id in self._failing
        with self.db.session() as session:
            connection = session.connection()
            connection.execute(
                _INSERT_ATTEMPT,
                {"delivery_id": claimed.id, "attempted_at": result.attempted_at, "status_code": result.status_code,
                 "latency_ms": round(result.latency_ms, 3), "error": result.error, "next_attempt_at": None},
            )
            connection.execute(_MARK_SUCCEEDED, {"delivery_id": claimed.id, "finished_at": now})
            if failing:
                connection.execute(_END_FAILURE_RUN, {"subscription_id": claimed.subscription_id})
        if failing:
            self._failing.discard(claimed.subscription_id)
        return DeliveryStatus.succeeded.value


# What is read of a receiver's answer to keep its connection open; a longer answer closes it.
RESPONSE_BODY_LIMIT = 64 * 1024


async def post_webhook(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int, str | None]:
    """POST a webhook; the status code and Retry-After. The whole exchange ends within ``timeout_s``.

    The answer's body is read (up to ``RESPONSE_BODY_LIMIT``, then dropped): a connection whose
    response was left unread is closed, and the next webhook to that receiver would pay a new one.
    """
    async with asyncio.timeout(timeout_s), client.stream("POST", url, content=body, headers=headers) as response:
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > RESPONSE_BODY_LIMIT:
                break  # a receiver that talks this much gets its connection closed
        return response.status_code, response.headers.get("retry-after")


def describe_error(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout_s:g}s ({type(error).__name__})"
    message = f"{type(error).__name__}: {error}".rstrip(": ")
    return message[:2000]


def _extend_failure_run(session: Session, subscription: Subscription, failed_at: datetime) -> None:
    """Count a failed attempt into the subscription's run of failures, or start a run.

    A run ends with any success; the database says so even if this worker did not see it.
    """
    started = subscription.failing_since
    if started is not None and not _succeeded_since(session, subscription.id, started):
        subscription.consecutive_failures += 1
    else:
        subscription.failing_since = failed_at
        subscription.consecutive_failures = 1
    session.add(subscription)


def _succeeded_since(session: Session, subscription_id: str, moment: datetime) -> bool:
    statement = select(Delivery.id).where(
        col(Delivery.subscription_id) == subscription_id,
        col(Delivery.status) == DeliveryStatus.succeeded.value,
        col(Delivery.finished_at) >= moment,
    ).limit(1)
    return session.exec(statement).first() is not None


def _due_statement(now: datetime, per_subscription: int, scan_size: int) -> Any:
    """Due deliveries of active subscriptions, the first of each need or seed, at most
    ``per_subscription`` per subscription, locked (skipping locked rows), with a flag telling whether
    a later delivery for the same need or seed waits behind each."""
    pending = DeliveryStatus.pending.value
    earlier = aliased(Delivery)
    later = aliased(Delivery)
    same_slot = (
        col(earlier.subscription_id) == col(Delivery.subscription_id),
        col(earlier.ordering_key) == col(Delivery.ordering_key),
        col(earlier.status) == pending,
    )
    blocked = select(earlier.id).where(
        *same_slot,
        or_(col(earlier.created_at) < col(Delivery.created_at),
            and_(col(earlier.created_at) == col(Delivery.created_at), col(earlier.id) < col(Delivery.id))),
    ).exists()
    position = func.row_number().over(
        partition_by=col(Delivery.subscription_id), order_by=(col(Delivery.next_attempt_at), col(Delivery.created_at))
    ).label("position")
    heads = (
        select(col(Delivery.id).label("id"), position)
        .join(Subscription, col(Subscription.id) == col(Delivery.subscription_id))
        .where(col(Delivery.status) == pending, col(Delivery.next_attempt_at) <= now,
               col(Subscription.status) == SubscriptionStatus.active.value, ~blocked)
        .subquery()
    )
    chosen = select(heads.c.id).where(heads.c.position <= per_subscription).limit(scan_size)
    followed = select(later.id).where(
        col(later.subscription_id) == col(Delivery.subscription_id),
        col(later.ordering_key) == col(Delivery.ordering_key),
        col(later.status) == pending, col(later.id) != col(Delivery.id),
    ).exists().label("followed")
    return (
        select(Delivery, Subscription, followed)
        .join(Subscription, col(Subscription.id) == col(Delivery.subscription_id))
        .where(col(Delivery.id).in_(chosen), col(Delivery.status) == pending, col(Delivery.next_attempt_at) <= now)
        .order_by(col(Delivery.next_attempt_at))
        .with_for_update(skip_locked=True, of=Delivery)
    )


_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_SUBSCRIPTION = Subscription.__table__  # type: ignore[attr-defined]
_INSERT_ATTEMPT = DeliveryAttempt.__table__.insert()  # type: ignore[attr-defined]
_MARK_SUCCEEDED = (
    _DELIVERY.update()
    .where(_DELIVERY.c.id == bindparam("delivery_id"))
    .values(attempts=_DELIVERY.c.attempts + 1, status=DeliveryStatus.succeeded.value,
            finished_at=bindparam("finished_at"))
)
_END_FAILURE_RUN = (
    _SUBSCRIPTION.update()
    .where(_SUBSCRIPTION.c.id == bindparam("subscription_id"))
    .values(failing_since=None, consecutive_failures=0)
)
_END_LEASES = (
    _DELIVERY.update()
    .where(_DELIVERY.c.id.in_(bindparam("ids", expanding=True)), _DELIVERY.c.status == DeliveryStatus.pending.value)
    .values(next_attempt_at=bindparam("now"))
)
