"""A service's routes over a real SQLite database, without its lifespan (no broker, no consumers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, col, select

from shared.apikeys import apply_api_key_event, store_entries
from shared.auth import Principal, Role, new_api_key
from shared.db import Database
from shared.events import ApiKeyEntry, Envelope, Topic
from shared.inbox import claim_event
from shared.kafka import EventPublisher
from shared.outbox import OutboxEvent, OutboxRelay
from shared.service import COMMON_TABLES, Runtime
from shared.settings import ServiceSettings

ADMIN_KEY = "mn_admin_test"


@dataclass
class Api:
    client: TestClient
    db: Database
    settings: Any

    def key(self, role: Role, office_id: str | None = None, partner_id: str | None = None) -> dict[str, str]:
        """Headers with a key for this role, known to this service as if the registry had issued it."""
        Principal(role=role, office_id=office_id, partner_id=partner_id, key_id="test")  # same scope rules
        issued = new_api_key()
        entry = ApiKeyEntry(
            key_id=issued.key_id, role=role, office_id=office_id, partner_id=partner_id, label="test key",
            secret_hash=issued.secret_hash, created_by="test", created_at=datetime.now(UTC),
        )
        with self.db.session() as session:
            store_entries(session, [entry])
        return {"Authorization": f"Bearer {issued.token}"}


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@contextmanager
def route_harness(
    create_app: Callable[[Any], FastAPI], settings: ServiceSettings, tables: Sequence[type[SQLModel]]
) -> Iterator[Api]:
    app = create_app(settings)
    database = Database(settings.resolved_database_url, [*COMMON_TABLES, *tables])
    database.create_tables()
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="test")
    # No lifespan: the routes need only the database; outbox rows stay in the database unpublished.
    app.state.runtime = Runtime(settings=settings, db=database, publisher=publisher,
                                relay=OutboxRelay(database, publisher.send))
    try:
        yield Api(TestClient(app), database, settings)
    finally:
        database.dispose()


@contextmanager
def key_registry(tmp_path: Path) -> Iterator[Api]:
    """The service that owns the API keys (notifications), over its routes."""
    from services.notifications.app import TABLES, create_app
    from services.notifications.settings import NotificationsSettings

    settings = NotificationsSettings(
        database_url=f"sqlite:///{tmp_path / 'key-registry.db'}", bootstrap_admin_key=ADMIN_KEY
    )
    with route_harness(create_app, settings, TABLES) as api:
        yield api


def deliver_key_events(registry: Api, *services: Api) -> int:
    """What the ``matchnet.apikeys`` topic does between processes: every key event the registry's
    outbox holds, applied by each service as its consumer would (once, through the inbox)."""
    with registry.db.session() as session:
        rows = session.exec(
            select(OutboxEvent).where(col(OutboxEvent.topic) == Topic.api_keys.value).order_by(col(OutboxEvent.seq))
        ).all()
        envelopes = [Envelope.model_validate_json(row.envelope) for row in rows]
    for service in services:
        for envelope in envelopes:
            with service.db.session() as session:
                if claim_event(session, envelope):
                    apply_api_key_event(session, envelope)
    return len(envelopes)
