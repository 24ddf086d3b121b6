"""The matcher service: ``uvicorn services.matcher.app:app`` or ``python -m services.matcher``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.events import Topic
from shared.service import EventSubscription, Runtime, create_service_app

from .api import router
from .domain import ProfileIndex
from .events import make_handler, rebuild_index
from .settings import MatcherSettings

CONSUMER_GROUP = "matchnet-matcher"


def create_app(settings: MatcherSettings | None = None) -> FastAPI:
    settings = settings or MatcherSettings()
    index = ProfileIndex()

    async def rebuild(runtime: Runtime) -> None:
        runtime.extras["index"] = index
        await rebuild_index(index, settings)

    def subscriptions(_: Runtime) -> list[EventSubscription]:
        topics = [Topic.seeds.value, Topic.needs.value]
        return [EventSubscription(topics, CONSUMER_GROUP, make_handler(index, settings))]

    return create_service_app(
        settings=settings,
        title="matchnet matcher",
        description="Ranks open seeds against open needs and publishes each regional office's pairings.",
        routers=[router],
        subscriptions=subscriptions,
        on_startup=[rebuild],
    )


app = create_app()
