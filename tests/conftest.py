"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.needs.app import create_app as create_needs_app
from services.needs.settings import NeedsSettings
from services.seeds.app import create_app as create_seeds_app
from services.seeds.settings import SeedsSettings
from tests.api_harness import ADMIN_KEY, Api, route_harness
from tests.e2e_support import postgres_admin_url, postgres_databases


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on each backend: SQLite always, PostgreSQL when the tests have a server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'unit.db'}"
        return
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip("MATCHNET_TEST_POSTGRES_URL is not set (.ci/run sets it when PostgreSQL answers)")
    with postgres_databases(admin_url, services=("unit",)) as urls:
        yield urls["unit"]




@pytest.fixture
def seeds(database_url: str) -> Iterator[Api]:
    """The seeds service's routes over a migrated database, on each backend."""
    settings = SeedsSettings(database_url=database_url, bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_seeds_app, settings) as api:
        yield api


@pytest.fixture
def needs(database_url: str) -> Iterator[Api]:
    """The needs service's routes over a migrated database, on each backend."""
    settings = NeedsSettings(database_url=database_url, bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_needs_app, settings) as api:
        yield api
