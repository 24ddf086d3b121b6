"""The shape every service shares: app factory, lifespan (db, relay, consumers), health, metrics, serving.

Shutting down (SIGTERM from an orchestrator, Ctrl-C): ``/readyz`` answers 503 and the consumers
stop after the batch they hold, committing the offsets of what they applied, at once; after
``MATCHNET_SHUTDOWN_DELAY_S`` (time for load balancers to notice) the server stops accepting
requests and finishes those in flight; then background tasks stop, the outbox relay publishes
every committed row still unsent, and telemetry is flushed — within ``MATCHNET_DRAIN_TIMEOUT_S``,
after which what is left is cancelled (at least once: it is redelivered or republished after the
restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from sqlmodel import SQLModel

from shared.apikeys import ApiKeyReplica, apply_api_key_event
from shared.auth import ApiKey
from shared.db import Database
from shared.errors import (
    PROBLEM_SCHEMA,
    BodySizeLimit,
    install_problem_handlers,
    problem_openapi_response,
    problem_response,
)
from shared.events import Topic
from shared.housekeeping import keep_tables_trim
from shared.idempotency import IdempotencyRecord
from shared.inbox import INBOX_TABLES
from shared.kafka import BeforeApply, EventConsumer, EventHandler, EventPublisher, ensure_topics
from shared.migrations import upgrade
from shared.outbox import OutboxEvent, OutboxRelay, unwatch_outbox, watch_outbox
from shared.settings import ServiceSettings
from shared.telemetry import (
    configure_logging,
    instrument_engine,
    instrument_fastapi,
    metrics_text,
    setup_telemetry,
    shutdown_telemetry,
)

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3  # requests still open after a SIGTERM get this long to finish
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
    draining: bool = False  # shutting down: /readyz answers 503


Hook = Callable[[Runtime], Coroutine[Any, Any, None]]

_RELAY_TASK_SUFFIX = "-outbox-relay"
_CONSUMER_TASK_PREFIX = "consume-"

# Set by the signal handler of ``serve``: this process is shutting down (one service per process).
SHUTTING_DOWN = threading.Event()
# Called (from the signal handler's thread) when shutting down starts: the consumers stop taking work.
_shutdown_listeners: list[Callable[[], None]] = []


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


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
    configure_logging(name, settings.log_level, secrets=settings.secret_values())
    setup_telemetry(name, settings.otlp_endpoint, settings.trace_file, otlp_metrics=settings.otlp_metrics)
    if not settings.owns_api_keys:
        on_startup, subscriptions, background = _with_key_replica(settings, on_startup, subscriptions, background)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        instrument_engine(db.engine)
        revision = await asyncio.to_thread(upgrade, name, settings.resolved_database_url)
        log.info("%s: database at revision %s", name, revision)
        publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=f"matchnet-{name}")
        relay = OutboxRelay(db, publisher.send, poll_interval_s=settings.outbox_poll_interval_s,
                            settle_s=settings.outbox_settle_s)
        runtime = Runtime(settings=settings, db=db, publisher=publisher, relay=relay)
        app.state.runtime = runtime
        if settings.kafka_create_topics:
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
                session_timeout_ms=settings.kafka_session_timeout_ms,
                before_apply=sub.before_apply,
            )
            runtime.consumers.append(consumer)
            runtime.tasks.append(asyncio.create_task(consumer.run(), name=f"{_CONSUMER_TASK_PREFIX}{sub.group_id}"))
        for task_factory in background:
            runtime.tasks.append(asyncio.create_task(task_factory(runtime), name=f"{name}-{task_factory.__name__}"))
        runtime.tasks.append(asyncio.create_task(keep_tables_trim(
            db, name, timedelta(seconds=settings.outbox_retention_s), timedelta(seconds=settings.inbox_retention_s),
        ), name=f"{name}-housekeeping"))
        watch_outbox(db, name)
        loop = asyncio.get_running_loop()

        def stop_consuming() -> None:  # HTTP still serves during the shutdown delay; events wait
            for consumer in runtime.consumers:
                loop.call_soon_threadsafe(consumer.request_stop)

        _shutdown_listeners.append(stop_consuming)
        log.info("%s ready on %s:%s (%s)", name, settings.host, settings.port, db.backend)
        try:
            yield
        finally:
            runtime.draining = True
            _shutdown_listeners.remove(stop_consuming)
            await drain(runtime, settings.drain_timeout_s)
            for hook in on_shutdown:
                await hook(runtime)
            await publisher.stop()
            unwatch_outbox(db)
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
    document_conventions(app)
    return app


API_KEY_SCHEME = "apiKey"


def document_conventions(app: FastAPI) -> None:
    """Complete ``/openapi.json`` with what every service shares: the bearer API key, the problem
    responses (401, 403, 404, 413, 422 as ``application/problem+json``, with examples), and a
    description on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        components["securitySchemes"] = {API_KEY_SCHEME: {
            "type": "http", "scheme": "bearer",
            "description": "An API key, `Authorization: Bearer <key>` (admin, operator, office or partner).",
        }}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                operation.setdefault("description", operation.get("summary", ""))
                statuses: list[int] = [422] if "422" in responses else []
                if path.startswith("/v1/"):
                    operation["security"] = [{API_KEY_SCHEME: []}]
                    statuses += [401, 403]
                    if "{" in path:
                        statuses.append(404)
                    if method in ("post", "put", "patch"):
                        statuses += [413, 422]
                if path == "/readyz":
                    statuses.append(503)
                for status in statuses:
                    responses[str(status)] = problem_openapi_response(status)
                for code, response in responses.items():  # a route's own error answers (409, 412, 415, ...)
                    if code[0] in "45" and "content" not in response:
                        response["content"] = problem_openapi_response(int(code))["content"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def drain(runtime: Runtime, timeout_s: float) -> None:
    """Stop in the order that loses nothing: consumers (after their batch, offsets committed), then
    the other tasks, then the outbox relay once it has published every committed row.

    Whatever has not finished within ``timeout_s`` is cancelled.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    consumer_tasks = [task for task in runtime.tasks if task.get_name().startswith(_CONSUMER_TASK_PREFIX)]
    relay_tasks = [task for task in runtime.tasks if task.get_name().endswith(_RELAY_TASK_SUFFIX)]
    others = [task for task in runtime.tasks if task not in consumer_tasks and task not in relay_tasks]
    for consumer in runtime.consumers:
        consumer.request_stop()
    await _finish(consumer_tasks, deadline)
    consumers_done = time.monotonic()
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    runtime.relay.request_stop()
    await _finish(relay_tasks, deadline)
    log.info(
        "%s drained in %.2fs: consumers stopped in %.2fs (%d events applied), outbox flushed "
        "(%d events published, %d unsent)",
        runtime.settings.service_name, time.monotonic() - started, consumers_done - started,
        sum(consumer.processed_total for consumer in runtime.consumers), runtime.relay.published_total,
        await asyncio.to_thread(_unsent_count, runtime),
    )


async def _finish(tasks: list[asyncio.Task[Any]], deadline: float) -> None:
    """Wait for ``tasks`` to end by themselves until ``deadline``; cancel those still running."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        log.warning("drain: %s did not finish in time, cancelled", task.get_name())
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _unsent_count(runtime: Runtime) -> int:
    try:
        return runtime.relay.backlog()[0]
    except Exception:  # the database is away: the relay republishes after the restart
        return -1


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
        """200 when the database and the broker answer and every worker runs; 503 otherwise, and from
        the moment the process is asked to shut down."""
        runtime = runtime_of(request)
        if runtime.draining or SHUTTING_DOWN.is_set():
            return problem_response(503, "Not ready", "shutting down: draining")
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

    @router.get("/metrics", summary="Metrics in the Prometheus text format", response_class=Response,
                responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus_metrics() -> Response:
        """Request rate, errors and latency per route, outbox backlog and age, consumer lag, events
        processed and failed, and each service's own instruments (OpenTelemetry, Prometheus text)."""
        body, content_type = await asyncio.to_thread(metrics_text)
        return Response(body, media_type=content_type)

    return router


def tune_collector(young_threshold: int) -> None:
    """Set the garbage collector's young-generation threshold (``MATCHNET_GC_YOUNG_THRESHOLD``); the
    older generations keep their ratios. Process-wide: a service calls it once, at start."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def serve(app_path: str, settings: ServiceSettings) -> None:
    """Run one service with uvicorn on its configured host and port, draining on SIGTERM (see above)."""
    tune_collector(settings.gc_young_threshold)
    config = uvicorn.Config(
        app_path, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
        access_log=False, log_config=None,  # our JSON lines (shared.telemetry.configure_logging)
        # A long-lived response (an event stream) would otherwise hold the shutdown for the whole drain.
        timeout_graceful_shutdown=max(1, min(GRACEFUL_SHUTDOWN_S, int(settings.drain_timeout_s))),
    )
    config.load_app()
    _DrainingServer(config, settings.shutdown_delay_s).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, but the first SIGTERM/SIGINT makes ``/readyz`` fail at once and stops the
    server only after ``delay_s``; a second signal stops it at once."""

    def __init__(self, config: uvicorn.Config, delay_s: float) -> None:
        super().__init__(config)
        self.delay_s = delay_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not SHUTTING_DOWN.is_set()
        SHUTTING_DOWN.set()
        if first:
            for listener in list(_shutdown_listeners):
                listener()
        if not first or self.delay_s <= 0:
            super().handle_exit(sig, frame)
            return
        log.info("shutdown requested: not ready; stopping in %.1fs", self.delay_s)
        timer = threading.Timer(self.delay_s, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
