"""The matcher service: ``uvicorn services.matcher.app:app`` or ``python -m services.matcher``."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from shared.events import Topic
from shared.service import EventSubscription, Runtime, create_service_app

from .api import router
from .events import CONSUMER_GROUP, Matcher, apply_to_index, rebuild_index
from .follower import IndexFollower
from .settings import MatcherSettings

MATCHER = "matcher"  # key in Runtime.extras


def create_app(settings: MatcherSettings | None = None) -> FastAPI:
    settings = settings or MatcherSettings()
    matcher = Matcher(settings)
    # Only with replicas: a single matcher's ranking consumer sees every profile change itself.
    follower = IndexFollower(settings, apply_to_index(matcher)) if settings.replica_id else None

    async def rebuild(runtime: Runtime) -> None:
        """Before consuming: the follower's positions, the dismissed pairs, then the index snapshot.

        The ranking consumer resumes from its group's committed offsets, all of them older than the
        snapshot, so an event published during the snapshot is applied after it, never lost.
        """
        runtime.extras[MATCHER] = matcher
        if follower is not None:
            await follower.pin()
        await asyncio.to_thread(matcher.dismissed.load, runtime.db)
        await rebuild_index(matcher.profiles, settings)

    async def follow(_: Runtime) -> None:
        assert follower is not None
        await follower.run()

    def subscriptions(_: Runtime) -> list[EventSubscription]:
        return [EventSubscription(
            [Topic.seeds.value, Topic.needs.value], CONSUMER_GROUP, matcher.handle,
            before_apply=follower.caught_up if follower is not None else None,
        )]

    return create_service_app(
        settings=settings,
        title="matchnet matcher",
        description="Ranks open seeds against open needs, keeps each one's top list, and publishes to each "
        "regional office what changes in its lists: proposed, updated and retracted pairings. Takes "
        "coordinators' feedback; a dismissed pairing is never proposed again.",
        routers=[router],
        subscriptions=subscriptions,
        on_startup=[rebuild],
        background=[follow] if follower is not None else [],
    )


app = create_app()
