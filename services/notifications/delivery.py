"""The delivery worker: POSTs pending deliveries as signed Standard Webhooks and retries with backoff.

A delivery is claimed by moving its ``next_attempt_at`` forward by a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so neither this worker nor another replica picks it twice while it is in
flight; if the process dies mid-send the lease runs out and the delivery is sent again (at least
once; receivers dedupe on ``webhook-id``). Concurrency is bounded overall and per subscription when
claiming, so a slow receiver holds at most its own share of slots and claimed rows never queue.
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
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import bindparam
from sqlmodel import Session, col, select, update

from shared.db import Database
from shared.telemetry import context_from_traceparent

from .domain import AttemptVerdict, judge_attempt, now_utc, parse_retry_after, retry_delay, webhook_headers
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Subscription, SubscriptionStatus
from .settings import NotificationsSettings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class ClaimedDelivery:
    """What one attempt needs, read when the delivery was claimed."""

    id: str
    subscription_id: str
    url: str
    secret: str
    payload: str
    traceparent: str | None
    attempt: int  # 1 for the first attempt


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
        concurrency: int = 16,
        concurrency_per_subscription: int = 4,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 86_400.0,
        scan_size: int = 500,
        rng: random.Random | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.poll_interval_s = poll_interval_s
        self.concurrency = concurrency
        self.concurrency_per_subscription = concurrency_per_subscription
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.scan_size = scan_size
        # Long enough for an attempt and its bookkeeping; a crashed attempt is retried after it.
        self.lease = timedelta(seconds=max(30.0, timeout_s * 6))
        self.rng = rng or random.Random()
        # A client passed in (custom transport, proxy) is the caller's to close.
        self._given_client = client
        self._client: httpx.AsyncClient | None = client
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[str, str] = {}  # delivery id -> subscription id
        self._waiting: list[ClaimedDelivery] = []  # handed over, waiting for a free slot
        # The last claim filled every free slot: more may be due in the database.
        self._more_due = False
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
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

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

    def _accept(self, claimed: list[ClaimedDelivery]) -> None:
        self._waiting.extend(claimed)
        self._start_waiting()

    def _start_waiting(self) -> None:
        if self._client is None:
            return
        busy = Counter(self._in_flight.values())
        still_waiting = []
        for delivery in self._waiting:
            slot_free = len(self._in_flight) < self.concurrency
            if slot_free and busy[delivery.subscription_id] < self.concurrency_per_subscription:
                busy[delivery.subscription_id] += 1
                self._start(delivery)
            else:
                still_waiting.append(delivery)
        self._waiting = still_waiting

    def _start(self, delivery: ClaimedDelivery) -> None:
        self._in_flight[delivery.id] = delivery.subscription_id
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = self._given_client or httpx.AsyncClient(timeout=self.timeout_s)
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

    async def dispatch_due(self) -> int:
        """Claim due deliveries up to the free slots and start sending them; returns how many."""
        budget = self.concurrency - len(self._in_flight)
        if budget <= 0:
            self._more_due = True  # could not look: look again when a slot frees
            return 0
        busy = Counter(self._in_flight.values())
        local = frozenset(self._in_flight) | {d.id for d in self._waiting}
        claimed, left_due = await asyncio.to_thread(self._claim_due, budget, busy, local)
        self._more_due = left_due
        for delivery in claimed:
            self._start(delivery)
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            result = await self._attempt(delivery)
            self.outcomes[await asyncio.to_thread(self._settle, delivery, result)] += 1
        except Exception:  # bookkeeping failed: the lease runs out and the delivery is tried again
            log.exception("delivery worker: settling %s failed", delivery.id)
        finally:
            self._in_flight.pop(delivery.id, None)
            self._start_waiting()  # a slot is free
            if self._more_due:
                self.wake()

    async def _attempt(self, delivery: ClaimedDelivery) -> AttemptResult:
        """One signed POST, inside a span that continues the trace stored with the delivery."""
        assert self._client is not None, "the worker is not running"
        body = delivery.payload.encode()
        headers = webhook_headers(delivery.secret, delivery.id, int(time.time()), body)
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
                async with self._client.stream("POST", delivery.url, content=body, headers=headers) as response:
                    status_code = response.status_code
                    retry_after = response.headers.get("retry-after")
            except Exception as error:  # refused, reset, timed out, bad URL: all are retried
                latency_ms = (time.perf_counter() - started) * 1000
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                message = f"{type(error).__name__}: {error}".rstrip(": ")
                return AttemptResult(attempted_at, None, latency_ms, message[:2000], None)
            latency_ms = (time.perf_counter() - started) * 1000
            span.set_attribute("http.response.status_code", status_code)
            if judge_attempt(status_code) != AttemptVerdict.delivered:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
            return AttemptResult(
                attempted_at, status_code, latency_ms, None, parse_retry_after(retry_after, now_utc())
            )

    def _claim_due(
        self, budget: int, busy: Counter[str], local: frozenset[str] = frozenset()
    ) -> tuple[list[ClaimedDelivery], bool]:
        """Claim due deliveries (not those this worker holds) by moving their lease forward.

        Returns them, and whether due deliveries were left for lack of a slot.
        """
        now = now_utc()
        with self.db.session() as session:
            rows = session.exec(
                select(Delivery)
                .where(col(Delivery.status) == DeliveryStatus.pending.value, col(Delivery.next_attempt_at) <= now)
                .order_by(col(Delivery.created_at))
                .limit(self.scan_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return [], False
            subscription_ids = {row.subscription_id for row in rows}
            subscriptions = {
                s.id: s for s in session.exec(select(Subscription).where(col(Subscription.id).in_(subscription_ids)))
            }
            claimed: list[ClaimedDelivery] = []
            left_due = len(rows) >= self.scan_size  # a full scan: there may be more behind it
            for row in rows:
                if row.id in local:
                    continue
                subscription = subscriptions[row.subscription_id]
                if subscription.status != SubscriptionStatus.active:
                    row.status = DeliveryStatus.cancelled.value
                    row.finished_at = now
                    continue
                if len(claimed) >= budget or busy[row.subscription_id] >= self.concurrency_per_subscription:
                    left_due = True
                    continue  # only cancellations of the rest, if any
                busy[row.subscription_id] += 1
                row.next_attempt_at = now + self.lease
                claimed.append(
                    ClaimedDelivery(
                        id=row.id, subscription_id=row.subscription_id, url=subscription.url,
                        secret=subscription.secret, payload=row.payload, traceparent=row.traceparent,
                        attempt=row.attempts + 1,
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
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id, attempted_at=result.attempted_at, status_code=result.status_code,
                    latency_ms=round(result.latency_ms, 3), error=result.error,
                )
            )
            delivery.attempts += 1
            if verdict == AttemptVerdict.delivered:
                # Even if cancelled meanwhile: the receiver has it, and the record should say so.
                delivery.status = DeliveryStatus.succeeded.value
                delivery.finished_at = now
            elif delivery.status != DeliveryStatus.pending:
                pass  # settled elsewhere while this attempt ran (cancelled by a delete or a 410)
            elif verdict == AttemptVerdict.gone:
                delivery.status = DeliveryStatus.failed.value
                delivery.finished_at = now
                _disable(session, subscription, now, keep=delivery.id)
            elif subscription.status != SubscriptionStatus.active:
                delivery.status = DeliveryStatus.cancelled.value
                delivery.finished_at = now
            elif delivery.attempts >= self.max_attempts:
                delivery.status = DeliveryStatus.dead.value
                delivery.finished_at = now
            else:
                delay = retry_delay(
                    delivery.attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s,
                    retry_after_s=result.retry_after_s, rng=self.rng,
                )
                delivery.next_attempt_at = now + timedelta(seconds=delay)
            return delivery.status


    def _settle_delivered(self, claimed: ClaimedDelivery, result: AttemptResult, now: datetime) -> str:
        """The common case, in two Core statements and no reads: the receiver has it, whatever
        happened to the delivery meanwhile (a cancel included), and the record says so."""
        with self.db.session() as session:
            connection = session.connection()
            connection.execute(
                _INSERT_ATTEMPT,
                {"delivery_id": claimed.id, "attempted_at": result.attempted_at, "status_code": result.status_code,
                 "latency_ms": round(result.latency_ms, 3), "error": result.error},
            )
            connection.execute(_MARK_SUCCEEDED, {"delivery_id": claimed.id, "finished_at": now})
        return DeliveryStatus.succeeded.value


_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_INSERT_ATTEMPT = DeliveryAttempt.__table__.insert()  # type: ignore[attr-defined]
_MARK_SUCCEEDED = (
    _DELIVERY.update()
    .where(_DELIVERY.c.id == bindparam("delivery_id"))
    .values(attempts=_DELIVERY.c.attempts + 1, status=DeliveryStatus.succeeded.value,
            finished_at=bindparam("finished_at"))
)


def _disable(session: Session, subscription: Subscription, now: datetime, keep: str) -> None:
    """The receiver is gone: stop the subscription and cancel what still waits for it."""
    if subscription.status == SubscriptionStatus.active:
        subscription.status = SubscriptionStatus.disabled.value
        subscription.updated_at = now
        log.warning("subscription %s disabled: its receiver answered 410 Gone", subscription.id)
    session.execute(
        update(Delivery)
        .where(
            col(Delivery.subscription_id) == subscription.id,
            col(Delivery.status) == DeliveryStatus.pending.value,
            col(Delivery.id) != keep,
        )
        .values(status=DeliveryStatus.cancelled.value, finished_at=now)
    )
