"""The bilingual demo set (304 seeds, 185 needs in ``data/*.jsonl``) and its loader.

The loader sends the set through the registries' bulk import (``POST /v1/seeds:import``, then
``/v1/needs:import``) in batches. Every row has an ``external_id``, so loading twice into the same
databases creates nothing new: the second load finds every profile unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx

DemoItem = dict[str, Any]
BATCH_ROWS = 100


class DemoLoadError(RuntimeError):
    """The service refused a batch or a demo row."""


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
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def demo_seeds() -> list[DemoItem]:
    """The demo seeds, as import rows (the fields of ``POST /v1/seeds``)."""
    return _read("seeds.jsonl")


def demo_needs() -> list[DemoItem]:
    """The demo needs, as import rows (the fields of ``POST /v1/needs``)."""
    return _read("needs.jsonl")


async def _import_all(client: httpx.AsyncClient, url: str, items: list[DemoItem], api_key: str) -> tuple[int, int]:
    created = existing = 0
    for start in range(0, len(items), BATCH_ROWS):
        batch = items[start:start + BATCH_ROWS]
        body = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in batch).encode()
        response = await client.post(url, content=body, headers={
            "Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson",
        })
        if response.status_code != 200:
            raise DemoLoadError(f"POST {url}: {response.status_code} {response.text[:500]}")
        report = response.json()
        if report["errors"]:
            first = report["errors"][0]
            raise DemoLoadError(f"POST {url}: row {start + first['row']} refused: {first['field']}: {first['message']}")
        created += report["created"]
        existing += report["updated"] + report["unchanged"]
    return created, existing


async def load_demo(
    seeds_url: str, needs_url: str, api_key: str, *, client: httpx.AsyncClient | None = None
) -> DemoLoadResult:
    """Import the demo seeds, then the demo needs (so each need finds its seeds already there)."""
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=120.0)
    try:
        result = DemoLoadResult()
        result.seeds_created, result.seeds_existing = await _import_all(
            http, seeds_url.rstrip("/") + "/v1/seeds:import", demo_seeds(), api_key
        )
        result.needs_created, result.needs_existing = await _import_all(
            http, needs_url.rstrip("/") + "/v1/needs:import", demo_needs(), api_key
        )
        return result
    finally:
        if own_client:
            await http.aclose()
