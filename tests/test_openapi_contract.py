"""Each service's OpenAPI document is complete, and a property-based run (schemathesis) against each
service finds no server error and no response that breaks the document."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from services.matcher.app import MATCHER
from services.matcher.app import create_app as create_matcher_app
from services.matcher.events import Matcher
from services.matcher.settings import MatcherSettings
from services.needs.app import create_app as create_needs_app
from services.needs.settings import NeedsSettings
from services.notifications.app import create_app as create_notifications_app
from services.notifications.settings import NotificationsSettings
from services.seeds.app import create_app as create_seeds_app
from services.seeds.settings import SeedsSettings
from tests.api_harness import ADMIN, ADMIN_KEY, route_harness

# Bounded so the run stays a few seconds per service in CI; raise locally to dig deeper.
EXAMPLES_PER_OPERATION = 20
# How long a valid request to the event stream is read (it starts with its retry line at once).
STREAM_READ_S = 0.5

SERVICES: dict[str, tuple[Any, type]] = {
    "seeds": (create_seeds_app, SeedsSettings),
    "needs": (create_needs_app, NeedsSettings),
    "matcher": (create_matcher_app, MatcherSettings),
    "notifications": (create_notifications_app, NotificationsSettings),
}


def _service_app(name: str, data_dir: Path) -> Iterator[FastAPI]:
    create_app, settings_class = SERVICES[name]
    settings = settings_class(database_url=f"sqlite:///{data_dir / f'{name}.db'}", bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_app, settings) as api:  # migrated, as the service does at start
        app: FastAPI = api.client.app  # type: ignore[assignment]
        if name == "matcher":
            app.state.runtime.extras[MATCHER] = Matcher(settings)  # what the matcher's start hook provides
        app.router.lifespan_context = _no_lifespan  # routes over the database only: no broker, no registry
        yield app


@contextlib.asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture(scope="module", params=list(SERVICES))
def service_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    yield from _service_app(request.param, tmp_path_factory.mktemp(request.param))


CHECKS = [not_a_server_error, response_schema_conformance]


def test_a_property_based_run_finds_no_server_error_and_no_response_outside_the_schema(service_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations

    for operation, mode in itertools.product(operations, GenerationMode):
        # Each operation on its own, with valid and with invalid input: a failure names both, and one
        # slow operation cannot starve the others.
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def call(case: Any) -> None:
            # Not ready is /readyz's documented answer without a broker: there a 503 is no server error.
            checks = [response_schema_conformance] if case.path == "/readyz" else CHECKS
            # An event stream never ends by itself: what it sent within the timeout is the response.
            timeout = {"timeout": STREAM_READ_S} if case.path == "/v1/stream" else {}
            case.call_and_validate(headers=ADMIN, checks=checks, **timeout)

        try:
            call()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, f"{operation.method.upper()} {operation.path}: no valid input"
            # an operation without parameters or body has no invalid input to send
        except Exception as failure:
            raise AssertionError(f"{operation.method.upper()} {operation.path} ({mode.value}): {failure}") from failure


def test_every_operation_is_described_and_documents_its_problems_with_examples(service_app: FastAPI) -> None:
    document = TestClient(service_app).get("/openapi.json").json()

    assert document["info"]["description"]
    assert "Problem" in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary") and operation.get("description"), where
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), where
            if path.startswith("/v1/"):
                assert operation["security"] == [{"apiKey": []}], where
                assert {"401", "403"} <= set(responses), where
            for code, response in responses.items():
                if code.startswith("4") or code.startswith("5"):
                    problem = response["content"]["application/problem+json"]
                    assert problem["example"]["status"] == int(code), where
            body = operation.get("requestBody")
            if body is not None:
                assert body["content"], where
                for media_type, media in body["content"].items():  # JSON, or CSV and JSON Lines (imports)
                    schema = media["schema"]
                    if "$ref" in schema:
                        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                    assert schema.get("examples") or media.get("examples") or media.get("example"), \
                        f"{where} {media_type}: example"
