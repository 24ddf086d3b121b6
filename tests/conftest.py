"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from services.needs.app import create_app as create_needs_app
from services.needs.settings import NeedsSettings
from services.seeds.app import create_app as create_seeds_app
from services.seeds.settings import SeedsSettings
from tests.api_harness import ADMIN_KEY, Api, route_harness
from tests.e2e_support import postgres_admin_url, postgres_databases


@pytest.fixture(params=["sqlite", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes fresh databases by name on each backend: SQLite always, PostgreSQL when the tests have a
    server. Each service gets its own (as in production: every service owns its schema history)."""
    if request.param == "postgres" and postgres_admin_url() is None:
        pytest.skip("MATCHNET_TEST_POSTGRES_URL is not set (.ci/run sets it when PostgreSQL answers)")
    with ExitStack() as stack:

        def make(name: str) -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path / f'{name}.db'}"
            admin_url = postgres_admin_url()
            assert admin_url is not None
            return stack.enter_context(postgres_databases(admin_url, services=(name,)))[name]

        yield make


@pytest.fixture
def database_url(new_database: Callable[[str], str]) -> str:
    """A fresh database on each backend."""
    return new_database("unit")


@pytest.fixture
def seeds(new_database: Callable[[str], str]) -> Iterator[Api]:
    """The seeds service's routes over its own migrated database, on each backend."""
    settings = SeedsSettings(database_url=new_database("seeds"), bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_seeds_app, settings) as api:
        yield api


@pytest.fixture
def needs(new_database: Callable[[str], str]) -> Iterator[Api]:
    """The needs service's routes over its own migrated database, on each backend."""
    settings = NeedsSettings(database_url=new_database("needs"), bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_needs_app, settings) as api:
        yield api
