"""A small bilingual demo set (seeds and needs) and its loader, which posts it over HTTP.

Each item is sent with an ``Idempotency-Key`` derived from its content, so loading twice into the
same databases creates nothing new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx

DemoItem = dict[str, Any]


class DemoLoadError(RuntimeError):
    """A demo item was refused by the service."""


@dataclass
class DemoLoadResult:
    seeds_created: int = 0
    seeds_existing: int = 0
    needs_created: int = 0
    needs_existing: int = 0

    def summary(self) -> str:
        return (
            f"{self.seeds_created + self.seeds_existing} seeds ({self.seeds_created} new), "
            f"{self.needs_created + self.needs_existing} needs ({self.needs_created} new)"
        )


def _read(name: str) -> list[DemoItem]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    items: list[DemoItem] = json.loads(text)
    return items


def demo_seeds() -> list[DemoItem]:
    """The demo seeds, as ``POST /v1/seeds`` bodies."""
    return _read("seeds.json")


def demo_needs() -> list[DemoItem]:
    """The demo needs, as ``POST /v1/needs`` bodies."""
    return _read("needs.json")


def idempotency_key_for(item: DemoItem) -> str:
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"demo-{digest[:32]}"


async def _post_all(client: httpx.AsyncClient, url: str, items: list[DemoItem], api_key: str) -> tuple[int, int]:
    created = existing = 0
    for item in items:
        response = await client.post(
            url, json=item,
            headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": idempotency_key_for(item)},
        )
        if response.status_code not in (200, 201):
            raise DemoLoadError(f"POST {url} {item['title']!r}: {response.status_code} {response.text[:500]}")
        if response.headers.get("Idempotent-Replayed") == "true":
            existing += 1
        else:
            created += 1
    return created, existing


async def load_demo(
    seeds_url: str, needs_url: str, api_key: str, *, client: httpx.AsyncClient | None = None
) -> DemoLoadResult:
    """Post the demo seeds, then the demo needs (so each need finds its seeds already there)."""
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=30.0)
    try:
        result = DemoLoadResult()
        result.seeds_created, result.seeds_existing = await _post_all(
            http, seeds_url.rstrip("/") + "/v1/seeds", demo_seeds(), api_key
        )
        result.needs_created, result.needs_existing = await _post_all(
            http, needs_url.rstrip("/") + "/v1/needs", demo_needs(), api_key
        )
        return result
    finally:
        if own_client:
            await http.aclose()
