"""A service's routes over a real, migrated database, without its lifespan (no broker, no consumers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.auth import Role, mint_api_key
from shared.db import Database
from shared.kafka import EventPublisher
from shared.migrations import upgrade
from shared.outbox import OutboxRelay
from shared.service import Runtime
from shared.settings import ServiceSettings

ADMIN_KEY = "mn_admin_test"


@dataclass
class Api:
    client: TestClient
    db: Database
    settings: Any

    def key(self, role: Role, office_id: str | None = None, partner_id: str | None = None) -> dict[str, str]:
        token = mint_api_key(self.settings.signing_secret, role, office_id, partner_id)
        return {"Authorization": f"Bearer {token}"}


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@contextmanager
def route_harness(create_app: Callable[[Any], FastAPI], settings: ServiceSettings) -> Iterator[Api]:
    app = create_app(settings)
    upgrade(settings.service_name, settings.resolved_database_url)  # as the service does at start
    database = Database(settings.resolved_database_url)
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="test")
    # No lifespan: the routes need only the database; outbox rows stay in the database unpublished.
    app.state.runtime = Runtime(settings=settings, db=database, publisher=publisher,
                                relay=OutboxRelay(database, publisher.send))
    try:
        yield Api(TestClient(app), database, settings)
    finally:
        database.dispose()
