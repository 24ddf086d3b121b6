"""The registries' OpenAPI documents describe every route, parameter, model and field, with examples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from services.needs.app import create_app as create_needs_app
from services.needs.models import NEED_EXAMPLE, NeedCreate
from services.needs.settings import NeedsSettings
from services.seeds.app import create_app as create_seeds_app
from services.seeds.models import SEED_EXAMPLE, SeedCreate
from services.seeds.settings import SeedsSettings

REGISTRY_PATHS = ("/v1/seeds", "/v1/needs", "/v1/audit")


def registry_apps() -> list[FastAPI]:
    return [create_seeds_app(SeedsSettings()), create_needs_app(NeedsSettings())]


def referenced(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[1]
        for value in node.values():
            yield from referenced(value)
    elif isinstance(node, list):
        for value in node:
            yield from referenced(value)


def schemas_of_registry_routes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every component schema the registry routes use, directly or through another schema."""
    components = spec["components"]["schemas"]
    routes = [op for path, ops in spec["paths"].items() if path.startswith(REGISTRY_PATHS) for op in ops.values()]
    pending, seen = list(referenced(routes)), set()
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(referenced(components[name]))
    return {name: components[name] for name in seen if name not in ("HTTPValidationError", "ValidationError")}


@pytest.mark.parametrize("app", registry_apps(), ids=["seeds", "needs"])
def test_every_registry_route_and_parameter_is_described(app: FastAPI) -> None:
    spec = app.openapi()
    routes = [(method, path, op) for path, ops in spec["paths"].items() if path.startswith(REGISTRY_PATHS)
              for method, op in ops.items()]
    assert len(routes) >= 7
    for method, path, op in routes:
        assert op.get("summary") and op.get("description"), f"{method} {path}"
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), f"{method} {path} {parameter['name']}"


@pytest.mark.parametrize("app", registry_apps(), ids=["seeds", "needs"])
def test_every_model_and_field_is_described_with_examples(app: FastAPI) -> None:
    schemas = schemas_of_registry_routes(app.openapi())
    assert {"StatusChange", "AuditEntry"} <= set(schemas)
    for name, schema in schemas.items():
        assert schema.get("description"), name
        properties = schema.get("properties", {})
        for field, definition in properties.items():
            assert definition.get("description"), f"{name}.{field}"
        if properties and not name.startswith("Page_"):  # a page shows examples through its items
            assert schema.get("examples") or all(
                p.get("examples") or "$ref" in p for p in properties.values()
            ), f"{name} has no examples"


def test_create_examples_are_valid_requests() -> None:
    SeedCreate.model_validate(SEED_EXAMPLE)
    NeedCreate.model_validate(NEED_EXAMPLE)
