"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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


