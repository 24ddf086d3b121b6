from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select

from shared.apikeys import EXPORT_PATH, entry_of
from shared.auth import ApiKey, CurrentPrincipal, Principal, Role, require_role
from shared.errors import Problem
from shared.events import ApiKeyEntry
from shared.pagination import Cursor, Page, PageSize, decode_cursor, page_of
from shared.registry import create_idempotently, list_rows
from shared.service import runtime_of

from .domain import (
    api_key_view,
    check_may_manage,
    check_may_subscribe,
    check_webhook_url,
    delete_subscription,
    delivery_view,
    issue_api_key,
    issued_key_view,
    issued_view,
    may_read,
    new_subscription,
    public_view,
    resolve_target,
    revoke_api_key,
    visible_subscriptions,
)
from .models import (
    ApiKeyCreate,
    ApiKeyPublic,
    ApiKeyWithSecret,
    Delivery,
    DeliveryAttempt,
    DeliveryPublic,
    DeliveryStatus,
    Subscription,
    SubscriptionCreate,
    SubscriptionPublic,
    SubscriptionStatus,
    SubscriptionWithSecret,
)

SUBSCRIPTIONS = "/v1/subscriptions"
subscriptions_router = APIRouter(prefix=SUBSCRIPTIONS, tags=["subscriptions"])
deliveries_router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
API_KEYS = "/v1/api-keys"
api_keys_router = APIRouter(tags=["api keys"])


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
    target = resolve_target(body)
    check_may_subscribe(principal, target)
    check_webhook_url(str(body.url), dev_mode=runtime.settings.dev_mode)

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


@subscriptions_router.delete(
    "/{subscription_id}", response_model=SubscriptionPublic,
    summary="Delete a subscription (kept as 'deleted'; its pending deliveries are cancelled)",
)
def remove_subscription(subscription_id: str, principal: CurrentPrincipal, request: Request) -> SubscriptionPublic:
    with runtime_of(request).db.session() as session:
        subscription = _readable(principal, session.get(Subscription, subscription_id), subscription_id)
        check_may_manage(principal, subscription)
        delete_subscription(session, subscription)
        return public_view(subscription)


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


@deliveries_router.get(
    "", response_model=Page[DeliveryPublic], summary="List webhook deliveries with their attempts (cursor pagination)"
)
def list_deliveries(
    principal: CurrentPrincipal,
    request: Request,
    limit: PageSize = 50,
    cursor: Cursor = None,
    subscription_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> Page[DeliveryPublic]:
    filters: list[Any] = []
    scope = visible_subscriptions(principal)
    if scope:
        filters.append(col(Delivery.subscription_id).in_(select(Subscription.id).where(*scope)))
    if subscription_id is not None:
        filters.append(col(Delivery.subscription_id) == subscription_id)
    if status is not None:
        filters.append(col(Delivery.status) == status.value)
    with runtime_of(request).db.session() as session:
        rows = list_rows(session, Delivery, after_id=decode_cursor(cursor), limit=limit, filters=filters)
        return page_of(rows, limit, lambda shown: _views(session, shown))


@deliveries_router.get("/{delivery_id}", response_model=DeliveryPublic, summary="Read a delivery with its attempts")
def get_delivery(delivery_id: str, principal: CurrentPrincipal, request: Request) -> DeliveryPublic:
    with runtime_of(request).db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        subscription = session.get(Subscription, delivery.subscription_id) if delivery else None
        if delivery is None or subscription is None or not may_read(principal, subscription):
            raise Problem(404, "Not found", f"no delivery {delivery_id}")
        return _views(session, [delivery])[0]


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
