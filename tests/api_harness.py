"""A service's routes over a real SQLite database, without its lifespan (no broker, no consumers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import SQLModel

from shared.auth import Role, mint_api_key
from shared.db import Database
from shared.kafka import EventPublisher
from shared.outbox import OutboxRelay
from shared.service import COMMON_TABLES, Runtime
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
