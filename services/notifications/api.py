from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session, col, select

from shared.apikeys import EXPORT_PATH, entry_of
from shared.auth import ApiKey, CurrentPrincipal, Principal, Role, require_role
from shared.errors import Problem
from shared.events import ApiKeyEntry
from shared.ids import new_id
from shared.pagination import Cursor, Page, PageSize, decode_cursor, page_of
from shared.reference import BlockCode, FieldCode, PrefectureCode
from shared.registry import create_idempotently, list_rows
from shared.service import Runtime, runtime_of

from .delivery import describe_error, post_webhook
from .domain import (
    PING_EVENT_TYPE,
    Audience,
    api_key_view,
    audience_of,
    check_may_manage,
    check_may_requeue,
    check_may_subscribe,
    check_webhook_url,
    delete_subscription,
    delivery_stats,
    delivery_view,
    issue_api_key,
    issued_key_view,
    issued_view,
    judge_attempt,
    may_read,
    new_subscription,
    now_utc,
    ordered_now,
    ping_payload,
    public_view,
    replay_since,
    requeue,
    resolve_target,
    revoke_api_key,
    rotate_secret,
    signing_secrets,
    update_subscription,
    visible_subscriptions,
    webhook_headers,
)
from .models import (
    ApiKeyCreate,
    ApiKeyPublic,
    ApiKeyWithSecret,
    Delivery,
    DeliveryAttempt,
    DeliveryPublic,
    DeliveryStats,
    DeliveryStatus,
    PairingEventType,
    ReplayResult,
    SecretRotation,
    Subscription,
    SubscriptionCreate,
    SubscriptionFilters,
    SubscriptionPublic,
    SubscriptionStatus,
    SubscriptionUpdate,
    SubscriptionWithSecret,
)
from .settings import NotificationsSettings
from .stream import EventLogFeed, event_stream, log_position

SUBSCRIPTIONS = "/v1/subscriptions"
DELIVERIES = "/v1/deliveries"
subscriptions_router = APIRouter(prefix=SUBSCRIPTIONS, tags=["subscriptions"])
deliveries_router = APIRouter(tags=["deliveries"])
stream_router = APIRouter(tags=["stream"])
API_KEYS = "/v1/api-keys"
api_keys_router = APIRouter(tags=["api keys"])
# Keys in Runtime.extras: the delivery worker and the feed that wakes stream readers.
WORKER = "delivery_worker"
FEED = "event_log_feed"
NO_STORE = {"Cache-Control": "no-store"}


def _settings(runtime: Runtime) -> NotificationsSettings:
    settings = runtime.settings
    assert isinstance(settings, NotificationsSettings)
    return settings


def _wake_worker(runtime: Runtime) -> None:
    worker = runtime.extras.get(WORKER)
    if worker is not None:
        worker.wake()


def event_log_feed(runtime: Runtime) -> EventLogFeed:
    feed: EventLogFeed = runtime.extras.setdefault(FEED, EventLogFeed())
    return feed


@subscriptions_router.post(
    "", status_code=201, response_model=SubscriptionWithSecret,
    summary="Subscribe a webhook (the signing secret is shown only in this response)",
)
def create_subscription(
    body: SubscriptionCreate,
    principal: CurrentPrincipal,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    target = resolve_target(body, principal)
    check_may_subscribe(principal, target)
    check_webhook_url(str(body.url), development_mode=_settings(runtime).development_mode)

    def write(session: Session) -> tuple[dict[str, Any], str]:
        subscription = new_subscription(body, target)
        session.add(subscription)
        # The secret is in this answer only (and in its idempotent replay).
        return issued_view(subscription).model_dump(mode="json"), f"{SUBSCRIPTIONS}/{subscription.id}"

    return create_idempotently(
        runtime.db, principal=principal, route=SUBSCRIPTIONS, idempotency_key=idempotency_key,
        request_body=body, write=write,
    )


def _readable(principal: Principal, subscription: Subscription | None, subscription_id: str) -> Subscription:
    if subscription is None or not may_read(principal, subscription):  # others' look like missing ones
        raise Problem(404, "Not found", f"no subscription {subscription_id}")
    return subscription


def _manageable(session: Session, principal: Principal, subscription_id: str) -> Subscription:
    subscription = _readable(principal, session.get(Subscription, subscription_id, with_for_update=True),
                             subscription_id)
    check_may_manage(principal, subscription)
    return subscription


@subscriptions_router.get("/{subscription_id}", response_model=SubscriptionPublic, summary="Read a subscription")
def get_subscription(subscription_id: str, principal: CurrentPrincipal, request: Request) -> SubscriptionPublic:
    with runtime_of(request).db.session() as session:
        subscription = _readable(principal, session.get(Subscription, subscription_id), subscription_id)
        return public_view(subscription)


@subscriptions_router.get(
    "", response_model=Page[SubscriptionPublic], summary="List the caller's subscriptions (cursor pagination)"
)
def list_subscriptions(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    status: Annotated[SubscriptionStatus | None, Query()] = None,
) -> Page[SubscriptionPublic]:
    filters = visible_subscriptions(principal)
    if status is not None:
        filters.append(col(Subscription.status) == status.value)
    with runtime_of(request).db.session() as session:
        rows = list_rows(session, Subscription, after_id=decode_cursor(cursor), limit=limit, filters=filters)
        return page_of(rows, limit, lambda shown: [public_view(r) for r in shown])


@subscriptions_router.patch(
    "/{subscription_id}", response_model=SubscriptionPublic,
    summary="Change a subscription: its URL, description, filters, mode, or pause/resume it",
    description="`status: paused` stops sending: deliveries wait (new events included) and are sent, in "
    "order, once `status: active` resumes it. `status: active` also enables again a subscription the "
    "service disabled (410 Gone, or failing for over a day); what was cancelled then can be sent with "
    f"`POST {SUBSCRIPTIONS}/{{id}}:replay`.",
)
def change_subscription(
    subscription_id: str, body: SubscriptionUpdate, principal: CurrentPrincipal, request: Request
) -> SubscriptionPublic:
    runtime = runtime_of(request)
    with runtime.db.session() as session:
        subscription = _manageable(session, principal, subscription_id)
        resumed = update_subscription(
            session, subscription, body, development_mode=_settings(runtime).development_mode
        )
        view = public_view(subscription)
    if resumed:
        _wake_worker(runtime)
    return view


@subscriptions_router.delete(
    "/{subscription_id}", response_model=SubscriptionPublic,
    summary="Delete a subscription (kept as 'deleted'; its pending deliveries are cancelled)",
)
def remove_subscription(subscription_id: str, principal: CurrentPrincipal, request: Request) -> SubscriptionPublic:
    with runtime_of(request).db.session() as session:
        subscription = _manageable(session, principal, subscription_id)
        delete_subscription(session, subscription)
        return public_view(subscription)


@subscriptions_router.post(
    "/{subscription_id}:rotate-secret", response_model=SubscriptionWithSecret,
    summary="Rotate the signing secret (the new one is shown only in this response)",
    description="Every delivery is then signed with the new secret and, during the overlap (default a day, "
    "at most seven), also with the old one: `webhook-signature` carries two space-separated `v1,` "
    "signatures, so a receiver still verifying with the old secret keeps working until it switches.",
)
def rotate_subscription_secret(
    subscription_id: str,
    principal: CurrentPrincipal,
    request: Request,
    body: Annotated[SecretRotation | None, Body(examples=[{"overlap_s": 86400}])] = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    overlap_s = body.overlap_s if body is not None and body.overlap_s is not None else None
    overlap = timedelta(seconds=overlap_s if overlap_s is not None else _settings(runtime).secret_rotation_overlap_s)
    with runtime.db.session() as session:
        subscription = _manageable(session, principal, subscription_id)
        rotate_secret(subscription, overlap)
        session.add(subscription)
        view = issued_view(subscription)
    return JSONResponse(view.model_dump(mode="json"), headers=NO_STORE)


@subscriptions_router.get(
    "/{subscription_id}/test", response_model=DeliveryPublic,
    summary="Send a signed test ping to the subscription's URL now, and answer with how it went",
    description=f"One attempt, signed like every delivery, body a CloudEvent of type `{PING_EVENT_TYPE}`; "
    "not retried. It is listed with the deliveries (status `succeeded` or `failed`).",
)
async def ping_subscription(subscription_id: str, principal: CurrentPrincipal, request: Request) -> DeliveryPublic:
    runtime = runtime_of(request)
    settings = _settings(runtime)

    def read() -> Subscription:
        with runtime.db.session() as session:
            subscription = _readable(principal, session.get(Subscription, subscription_id), subscription_id)
            check_may_manage(principal, subscription)
            if subscription.status == SubscriptionStatus.deleted:
                raise Problem(409, "Conflict", "the subscription is deleted")
            return subscription

    subscription = await asyncio.to_thread(read)
    payload = ping_payload(subscription)
    webhook_id = new_id("msg")
    body = payload.encode()
    headers = webhook_headers(signing_secrets(subscription), webhook_id, int(time.time()), body)
    attempted_at = now_utc()
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:  # a client of its own: a ping is rare, and this runs on the server's event loop
        async with httpx.AsyncClient() as client:
            status_code, _ = await post_webhook(client, subscription.url, body, headers, settings.delivery_timeout_s)
    except Exception as failure:  # the receiver's problem, reported in the answer
        error = describe_error(failure, settings.delivery_timeout_s)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)

    def record() -> DeliveryPublic:
        delivered = judge_attempt(status_code).value == "delivered"
        now = ordered_now()
        delivery = Delivery(
            id=webhook_id, subscription_id=subscription.id, event_id=new_id("ping"), event_type=PING_EVENT_TYPE,
            ordering_key="ping", payload=payload, attempts=1, next_attempt_at=now, created_at=now, finished_at=now,
            status=(DeliveryStatus.succeeded if delivered else DeliveryStatus.failed).value,
        )
        attempt = DeliveryAttempt(delivery_id=webhook_id, attempted_at=attempted_at, status_code=status_code,
                                  latency_ms=latency_ms, error=error)
        with runtime.db.session() as session:
            session.add(delivery)
            session.flush()
            session.add(attempt)
        return delivery_view(delivery, [attempt])

    return await asyncio.to_thread(record)


@subscriptions_router.post(
    "/{subscription_id}:replay", status_code=202, response_model=ReplayResult,
    summary="Send again every event since a moment (same webhook-id for those sent before)",
    description="Events this subscription got since `since` are queued again with their original "
    "`webhook-id` (receivers dedupe on it); events from the log it would get but never had (from before "
    "it subscribed, say) are queued as new deliveries. Pending deliveries are left as they are. The log "
    "keeps events for at least seven days.",
)
def replay_subscription(
    subscription_id: str,
    principal: CurrentPrincipal,
    request: Request,
    since: Annotated[datetime, Query(description="an RFC 3339 time with its offset")],
) -> ReplayResult:
    runtime = runtime_of(request)
    now = now_utc()
    if since.tzinfo is None:
        raise Problem(422, "Validation failed", "since: give a time zone offset", kind="validation",
                      errors=[{"field": "since", "message": "give a time zone offset, e.g. 2025-04-01T09:00:00+09:00"}])
    retention = timedelta(seconds=_settings(runtime).event_log_retention_s)
    if since < now - retention:
        message = f"the event log keeps {retention.total_seconds() / 86400:g} days; give a later time"
        raise Problem(422, "Validation failed", f"since: {message}", kind="validation",
                      errors=[{"field": "since", "message": message}])
    with runtime.db.session() as session:
        subscription = _manageable(session, principal, subscription_id)
        result = replay_since(session, subscription, since, now)
    if result.queued:
        _wake_worker(runtime)
    return result


# ---- deliveries ------------------------------------------------------------------------------


def _views(session: Session, deliveries: Sequence[Delivery]) -> list[DeliveryPublic]:
    attempts: dict[str, list[DeliveryAttempt]] = defaultdict(list)
    if deliveries:
        rows = session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id).in_([d.id for d in deliveries]))
            .order_by(col(DeliveryAttempt.id))
        ).all()
        for attempt in rows:
            attempts[attempt.delivery_id].append(attempt)
    return [delivery_view(d, attempts[d.id]) for d in deliveries]


def _delivery_scope(principal: Principal) -> list[Any]:
    scope = visible_subscriptions(principal)
    return [col(Delivery.subscription_id).in_(select(Subscription.id).where(*scope))] if scope else []


@deliveries_router.get(
    DELIVERIES, response_model=Page[DeliveryPublic],
    summary="List webhook deliveries with their attempts (cursor pagination, oldest first)",
    description="Operators and admins see every delivery; an office or a partner those of its own subscriptions.",
)
def list_deliveries(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    subscription_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    event_id: Annotated[str | None, Query(max_length=64)] = None,
    event_type: Annotated[str | None, Query(max_length=128)] = None,
    created_after: Annotated[datetime | None, Query(description="recorded at or after this time")] = None,
    created_before: Annotated[datetime | None, Query(description="recorded before this time")] = None,
) -> Page[DeliveryPublic]:
    filters = _delivery_scope(principal)
    if subscription_id is not None:
        filters.append(col(Delivery.subscription_id) == subscription_id)
    if status is not None:
        filters.append(col(Delivery.status) == status.value)
    if event_id is not None:
        filters.append(col(Delivery.event_id) == event_id)
    if event_type is not None:
        filters.append(col(Delivery.event_type) == event_type)
    if created_after is not None:
        filters.append(col(Delivery.created_at) >= created_after)
    if created_before is not None:
        filters.append(col(Delivery.created_at) < created_before)
    with runtime_of(request).db.session() as session:
        rows = list_rows(session, Delivery, after_id=decode_cursor(cursor), limit=limit, filters=filters)
        return page_of(rows, limit, lambda shown: _views(session, shown))


@deliveries_router.get(
    f"{DELIVERIES}:stats", response_model=DeliveryStats,
    summary="Delivery health: counts by status, the oldest pending delivery's age, the last hour's attempts",
)
def delivery_statistics(principal: CurrentPrincipal, request: Request) -> DeliveryStats:
    with runtime_of(request).db.session() as session:
        return delivery_stats(session, _delivery_scope(principal), now_utc())


def _readable_delivery(session: Session, principal: Principal, delivery_id: str) -> tuple[Delivery, Subscription]:
    delivery = session.get(Delivery, delivery_id)
    subscription = session.get(Subscription, delivery.subscription_id) if delivery else None
    if delivery is None or subscription is None or not may_read(principal, subscription):
        raise Problem(404, "Not found", f"no delivery {delivery_id}")
    return delivery, subscription


@deliveries_router.get(
    f"{DELIVERIES}/{{delivery_id}}", response_model=DeliveryPublic, summary="Read a delivery with its attempts"
)
def get_delivery(delivery_id: str, principal: CurrentPrincipal, request: Request) -> DeliveryPublic:
    with runtime_of(request).db.session() as session:
        delivery, _ = _readable_delivery(session, principal, delivery_id)
        return _views(session, [delivery])[0]


@deliveries_router.post(
    f"{DELIVERIES}/{{delivery_id}}:redeliver", status_code=202, response_model=DeliveryPublic,
    summary="Send a settled delivery again, as it was (same webhook-id), with a fresh retry schedule",
)
def redeliver(delivery_id: str, principal: CurrentPrincipal, request: Request) -> DeliveryPublic:
    runtime = runtime_of(request)
    with runtime.db.session() as session:
        delivery, subscription = _readable_delivery(session, principal, delivery_id)
        check_may_manage(principal, subscription)
        check_may_requeue(subscription)
        if delivery.event_type == PING_EVENT_TYPE:
            raise Problem(409, "Conflict", f"a test ping is not redelivered; send another with "
                          f"GET {SUBSCRIPTIONS}/{subscription.id}/test")
        if delivery.status == DeliveryStatus.pending:
            raise Problem(409, "Conflict", "the delivery is pending: it is sent at its next attempt")
        requeue(delivery, subscription, now_utc())
        session.add(delivery)
        view = _views(session, [delivery])[0]
    _wake_worker(runtime)
    return view


# ---- stream ----------------------------------------------------------------------------------


def _no_filters_with(what: str, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise Problem(422, "Validation failed", f"{name}: not allowed {what}", kind="validation",
                          errors=[{"field": name, "message": f"not allowed {what}"}])


def stream_audience(
    session: Session, principal: Principal, subscription_id: str | None, office_id: str | None,
    filters: SubscriptionFilters,
) -> Audience:
    """Who reads the stream, as the same audience as a subscription: the subscription named, or the
    caller's own scope (an office its office, a partner through its filters, operators everything)."""
    given = filters.model_dump(exclude_none=True)
    if subscription_id is not None:
        _no_filters_with("with subscription_id", office_id=office_id, **given)
        subscription = _readable(principal, session.get(Subscription, subscription_id), subscription_id)
        return audience_of(subscription)
    if principal.role == Role.office:
        _no_filters_with("for an office key", office_id=office_id,
                         **{name: value for name, value in given.items() if name != "event_types"})
        return Audience("office", office_id=principal.office_id,
                        filters=SubscriptionFilters(event_types=filters.event_types))
    if principal.role == Role.partner:
        _no_filters_with("for a partner key", office_id=office_id)
        return Audience("partner", filters=filters)
    return Audience("operator", office_id=office_id, filters=filters)


def _resume_point(header: str | None, query: int | None) -> int | None:
    if header is None:
        return query
    if not header.strip().isdigit():
        raise Problem(400, "Invalid Last-Event-ID", "Last-Event-ID is the id of an event this stream sent",
                      kind="validation", errors=[{"field": "Last-Event-ID", "message": "not an event id"}])
    return int(header.strip())


@stream_router.get(
    "/v1/stream", response_class=StreamingResponse,
    summary="Pairing events as Server-Sent Events, filtered and redacted as webhooks are",
    description="`text/event-stream`: each event is `id: <n>`, `event: <CloudEvents type>`, `data: <the "
    "CloudEvent JSON>`, exactly the body a webhook of the same audience would carry. Resume after a dropped "
    "connection with `Last-Event-ID: <n>` (EventSource does it by itself): every later event follows, none "
    "twice, for at least seven days of history. Without it the stream starts now, or at `since`. An office "
    "key reads its office's events; a partner key what passes the filters given (never a confidential "
    "need); operators everything. `subscription_id` reads as that subscription would receive.",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    principal: CurrentPrincipal,
    request: Request,
    subscription_id: Annotated[str | None, Query(max_length=64)] = None,
    office_id: Annotated[str | None, Query(max_length=64, description="operators: one office's events")] = None,
    prefecture: Annotated[list[PrefectureCode] | None, Query(max_length=47)] = None,
    block: Annotated[list[BlockCode] | None, Query(max_length=9)] = None,
    field: Annotated[list[FieldCode] | None, Query(max_length=30)] = None,
    min_score: Annotated[float | None, Query(ge=0)] = None,
    event_type: Annotated[list[PairingEventType] | None, Query(max_length=20)] = None,
    since: Annotated[datetime | None, Query(description="start with the events logged from then on")] = None,
    last_event_id: Annotated[int | None, Query(ge=0, description="as the Last-Event-ID header")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    runtime = runtime_of(request)
    filters = SubscriptionFilters(prefectures=prefecture, blocks=block, fields=field, min_score=min_score,
                                  event_types=event_type)
    resume_after = _resume_point(last_event_id_header, last_event_id)

    def open_stream() -> tuple[Audience, int]:
        with runtime.db.session() as session:
            audience = stream_audience(session, principal, subscription_id, office_id, filters)
        if resume_after is not None:
            return audience, resume_after
        return audience, log_position(runtime.db, before=since)

    audience, after_seq = await asyncio.to_thread(open_stream)
    feed = event_log_feed(runtime)
    feed.bind(asyncio.get_running_loop())
    return StreamingResponse(
        event_stream(runtime.db, feed, audience, after_seq, keepalive_s=_settings(runtime).stream_keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ---- API keys (admin only) -------------------------------------------------------------------


def _api_key(session: Session, key_id: str, *, for_update: bool = False) -> ApiKey:
    record = session.get(ApiKey, key_id, with_for_update=for_update)
    if record is None:
        raise Problem(404, "Not found", f"no API key {key_id}")
    return record


@api_keys_router.post(
    API_KEYS, status_code=201, response_model=ApiKeyWithSecret,
    summary="Issue an API key (admin; the key is shown only in this response)",
    description="The key is stored only as a hash, so it cannot be shown again, and this route takes no "
    "Idempotency-Key (a replay would have to store it). Every service accepts it once the "
    "`apikey.issued` event reaches it (well under a second).",
)
def create_api_key(body: ApiKeyCreate, principal: CurrentPrincipal, request: Request) -> JSONResponse:
    require_role(principal, Role.admin)
    with runtime_of(request).db.session() as session:
        record, token = issue_api_key(session, body, principal)
    return JSONResponse(
        issued_key_view(record, token).model_dump(mode="json"), status_code=201,
        headers={"Location": f"{API_KEYS}/{record.key_id}", "Cache-Control": "no-store"},
    )


@api_keys_router.get(
    API_KEYS, response_model=Page[ApiKeyPublic], summary="List API keys (admin; cursor pagination, oldest first)"
)
def list_api_keys(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    role: Annotated[Role | None, Query()] = None,
    revoked: Annotated[bool | None, Query(description="true: revoked keys only; false: usable keys only")] = None,
) -> Page[ApiKeyPublic]:
    require_role(principal, Role.admin)
    filters: list[Any] = []
    if role is not None:
        filters.append(col(ApiKey.role) == role.value)
    if revoked is not None:
        filters.append(col(ApiKey.revoked_at).is_not(None) if revoked else col(ApiKey.revoked_at).is_(None))
    with runtime_of(request).db.session() as session:
        rows = _api_key_rows(session, decode_cursor(cursor), limit, filters)
        return page_of(rows, limit, lambda shown: [api_key_view(r) for r in shown])


@api_keys_router.get(
    EXPORT_PATH, response_model=Page[ApiKeyEntry],
    summary="Every API key with its secret's hash (admin): what the other services load at start",
)
def export_api_keys(
    principal: CurrentPrincipal, request: Request, limit: PageSize = 50, cursor: Cursor = None
) -> Page[ApiKeyEntry]:
    require_role(principal, Role.admin)
    with runtime_of(request).db.session() as session:
        rows = _api_key_rows(session, decode_cursor(cursor), limit, [])
        return page_of(rows, limit, lambda shown: [entry_of(r) for r in shown])


def _api_key_rows(session: Session, after_id: str | None, limit: int, filters: list[Any]) -> list[ApiKey]:
    statement = select(ApiKey).where(*filters).order_by(col(ApiKey.key_id)).limit(limit + 1)
    if after_id:
        statement = statement.where(col(ApiKey.key_id) > after_id)
    return list(session.exec(statement).all())


@api_keys_router.get(f"{API_KEYS}/{{key_id}}", response_model=ApiKeyPublic, summary="Read an API key (admin)")
def get_api_key(key_id: str, principal: CurrentPrincipal, request: Request) -> ApiKeyPublic:
    require_role(principal, Role.admin)
    with runtime_of(request).db.session() as session:
        return api_key_view(_api_key(session, key_id))


@api_keys_router.delete(
    f"{API_KEYS}/{{key_id}}", response_model=ApiKeyPublic,
    summary="Revoke an API key (admin; kept in the list as revoked)",
    description="This service refuses the key at once; every other service once the `apikey.revoked` "
    "event reaches it (typically within half a second). Revoking a revoked key changes nothing.",
)
def revoke_key(key_id: str, principal: CurrentPrincipal, request: Request) -> ApiKeyPublic:
    require_role(principal, Role.admin)
    with runtime_of(request).db.session() as session:
        record = _api_key(session, key_id, for_update=True)
        revoke_api_key(session, record, principal)
        return api_key_view(record)
