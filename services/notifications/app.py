"""The notifications service: ``uvicorn services.notifications.app:app`` or ``python -m services.notifications``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.events import Topic
from shared.service import EventSubscription, Runtime, create_service_app

from .api import api_keys_router, deliveries_router, subscriptions_router
from .delivery import DeliveryWorker
from .events import CONSUMER_GROUP, pairings_handler
from .settings import NotificationsSettings

WORKER = "delivery_worker"  # key in Runtime.extras


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()

    async def install_worker(runtime: Runtime) -> None:
        # Made before the consumers start, so their handler can hand deliveries to it.
        runtime.extras[WORKER] = DeliveryWorker.from_settings(runtime.db, settings)

    async def run_worker(runtime: Runtime) -> None:
        await runtime.extras[WORKER].run()

    def consumers(runtime: Runtime) -> list[EventSubscription]:
        worker: DeliveryWorker = runtime.extras[WORKER]
        return [
            EventSubscription(
                topics=[Topic.pairings.value], group_id=CONSUMER_GROUP, handler=pairings_handler(worker)
            )
        ]

    return create_service_app(
        settings=settings,
        title="matchnet notifications",
        description="Signed webhooks (Standard Webhooks, CloudEvents JSON) of proposed pairings "
        "to regional offices and partner portals, with retries and a delivery log; and the network's "
        "API-key registry (issue, list, revoke), which every other service replicates.",
        routers=[subscriptions_router, deliveries_router, api_keys_router],
        subscriptions=consumers,
        on_startup=[install_worker],
        background=[run_worker],
    )


app = create_app()
