"""The shape every service shares: app factory, lifespan (db, relay, consumers), health, serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlmodel import SQLModel

from shared.apikeys import ApiKeyReplica, apply_api_key_event
from shared.auth import ApiKey
from shared.db import Database
from shared.errors import BodySizeLimit, install_problem_handlers, problem_response
from shared.events import Topic
from shared.idempotency import IdempotencyRecord
from shared.inbox import INBOX_TABLES
from shared.kafka import BeforeApply, EventConsumer, EventHandler, EventPublisher, ensure_topics
from shared.migrations import upgrade
from shared.outbox import OutboxEvent, OutboxRelay
from shared.settings import ServiceSettings
from shared.telemetry import instrument_engine, instrument_fastapi, setup_telemetry, shutdown_telemetry

log = logging.getLogger(__name__)

# ApiKey: the registry in the service that owns it, a replica in every other one.
COMMON_TABLES: list[type[SQLModel]] = [OutboxEvent, IdempotencyRecord, ApiKey, *INBOX_TABLES]


@dataclass
class EventSubscription:
    """Topics a service consumes and the handler applied to each event, in one consumer group."""

    topics: list[str]
    group_id: str
    handler: EventHandler
    fetch_max_wait_ms: int | None = None  # None: the service's setting
    before_apply: BeforeApply | None = None  # awaited before each event's transaction


@dataclass
class Runtime:
    """What a running service holds: reachable from routes as ``request.app.state.runtime``."""

    settings: ServiceSettings
    db: Database
    publisher: EventPublisher
    relay: OutboxRelay
    consumers: list[EventConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[Runtime], Coroutine[Any, Any, None]]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    subscriptions: Callable[[Runtime], list[EventSubscription]] = lambda _: [],
    on_startup: Sequence[Hook] = (),
    background: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    """Build a service: its routes, health checks, problem errors, telemetry and event plumbing.

    Start order: database migrations (to the newest revision), ``on_startup`` hooks (e.g. rebuild
    an index), outbox relay, consumers, ``background`` tasks. Shutdown cancels them in reverse and
    flushes telemetry.

    Every service but the key registry also keeps its replica of the API keys: loaded from the
    registry first thing at start, then fed by the key events and reloaded periodically.
    """
    name = settings.service_name
    configure_logging(settings.log_level)
    setup_telemetry(name, settings.otlp_endpoint, settings.trace_file)
    if not settings.owns_api_keys:
        on_startup, subscriptions, background = _with_key_replica(settings, on_startup, subscriptions, background)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        instrument_engine(db.engine)
        revision = await asyncio.to_thread(upgrade, name, settings.resolved_database_url)
        log.info("%s: database at revision %s", name, revision)
        publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=f"matchnet-{name}")
        relay = OutboxRelay(db, publisher.send, poll_interval_s=settings.outbox_poll_interval_s)
        runtime = Runtime(settings=settings, db=db, publisher=publisher, relay=relay)
        app.state.runtime = runtime
        try:
            await ensure_topics(settings.kafka_bootstrap_servers, settings.kafka_topic_partitions)
        except Exception as error:  # the relay and consumers retry; the API serves meanwhile
            log.warning("%s: could not ensure topics at start (%s)", name, error)
        for hook in on_startup:
            await hook(runtime)
        runtime.tasks.append(asyncio.create_task(relay.run(), name=f"{name}-outbox-relay"))
        for sub in subscriptions(runtime):
            consumer = EventConsumer(
                db=db, topics=sub.topics, group_id=sub.group_id, handler=sub.handler,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                fetch_max_wait_ms=sub.fetch_max_wait_ms or settings.kafka_fetch_max_wait_ms,
                before_apply=sub.before_apply,
            )
            runtime.consumers.append(consumer)
            runtime.tasks.append(asyncio.create_task(consumer.run(), name=f"{name}-consume-{sub.group_id}"))
        for task_factory in background:
            runtime.tasks.append(asyncio.create_task(task_factory(runtime), name=f"{name}-{task_factory.__name__}"))
        log.info("%s ready on %s:%s (%s)", name, settings.host, settings.port, db.backend)
        try:
            yield
        finally:
            for task in reversed(runtime.tasks):
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            for hook in on_shutdown:
                await hook(runtime)
            await publisher.stop()
            db.dispose()
            shutdown_telemetry()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)
    instrument_fastapi(app)
    return app


def _with_key_replica(
    settings: ServiceSettings,
    on_startup: Sequence[Hook],
    subscriptions: Callable[[Runtime], list[EventSubscription]],
    background: Sequence[Hook],
) -> tuple[list[Hook], Callable[[Runtime], list[EventSubscription]], list[Hook]]:
    replica = ApiKeyReplica(settings)

    async def load_api_keys(runtime: Runtime) -> None:
        await replica.load_at_start(runtime.db)

    async def reload_api_keys(runtime: Runtime) -> None:
        await replica.reload_periodically(runtime.db)

    def with_key_events(runtime: Runtime) -> list[EventSubscription]:
        key_events = EventSubscription(
            [Topic.api_keys.value], f"matchnet-{settings.service_name}-apikeys", apply_api_key_event,
            fetch_max_wait_ms=settings.key_events_fetch_max_wait_ms,
        )
        return [*subscriptions(runtime), key_events]

    return [load_api_keys, *on_startup], with_key_events, [*background, reload_api_keys]


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz", summary="Database and broker reachable")
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(runtime.db.ping)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unreachable: {type(error).__name__}"
        checks["broker"] = "ok" if await runtime.publisher.broker_reachable() else "unreachable"
        stopped = [task.get_name() for task in runtime.tasks if task.done()]
        checks["workers"] = "ok" if not stopped else f"stopped: {', '.join(stopped)}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        response = problem_response(503, "Not ready", "; ".join(f"{k}: {v}" for k, v in checks.items()))
        return response

    return router


def serve(app_path: str, settings: ServiceSettings) -> None:
    """Run one service with uvicorn on its configured host and port."""
    import uvicorn

    uvicorn.run(app_path, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=False)
