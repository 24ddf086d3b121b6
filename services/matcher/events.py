"""The matcher's event handling: keep the index in step with seeds and needs, publish pairings."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import trace
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from shared.db import after_commit
from shared.events import (
    Envelope,
    EventType,
    NeedCreated,
    NeedExpired,
    NeedProfile,
    NeedStatusChanged,
    NeedUpdated,
    NeedWithdrawn,
    PairingsProposed,
    SeedCreated,
    SeedExpired,
    SeedProfile,
    SeedStatusChanged,
    SeedUpdated,
    SeedWithdrawn,
)
from shared.kafka import EventHandler
from shared.outbox import record_event
from shared.telemetry import meter

from .domain import ProfileIndex, proposals_for_need, proposals_for_seed
from .models import PairingRecord
from .registry_client import NeedTextSource
from .settings import MatcherSettings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_meter = meter(__name__)
_ranking_duration = _meter.create_histogram(
    "matchnet.ranking.duration", unit="s", description="Time to rank one new seed or need against the index"
)
_pairings_published = _meter.create_counter(
    "matchnet.pairings.published", unit="{pairing}",
    description="Ranked pairings committed for publication (pairings.proposed events, one per office)",
)
EVENT_SOURCE = "/matchnet/matcher"
# A profile changed after its creation: re-index it (the index drops one that is no longer open).
SEED_CHANGES = (SeedUpdated, SeedStatusChanged, SeedWithdrawn, SeedExpired)
NEED_CHANGES = (NeedUpdated, NeedStatusChanged, NeedWithdrawn, NeedExpired)


def make_handler(
    index: ProfileIndex, settings: MatcherSettings, texts: NeedTextSource | None = None
) -> EventHandler:
    """Apply a seed or need event to the index and publish the pairings it causes, in one transaction.

    A confidential need's event carries only its redacted summary: ``texts`` reads its full text.
    """
    texts = texts or NeedTextSource(settings)

    def handle(session: Session, envelope: Envelope) -> None:
        payload = envelope.payload()
        if isinstance(payload, SEED_CHANGES):
            index.upsert(payload.seed)
            return
        if isinstance(payload, NEED_CHANGES):
            index.upsert(texts.full(payload.need))
            return
        started = time.perf_counter()
        with _tracer.start_as_current_span("rank", attributes={"matchnet.trigger_id": envelope.subject}) as span:
            trigger = "seed" if isinstance(payload, SeedCreated) else "need"
            if isinstance(payload, SeedCreated):
                index.upsert(payload.seed)
                proposals = proposals_for_seed(index, payload.seed.id, settings.top_k, settings.min_score)
            elif isinstance(payload, NeedCreated):
                index.upsert(texts.full(payload.need))
                proposals = proposals_for_need(index, payload.need.id, settings.top_k, settings.min_score)
            else:
                return
            span.set_attribute("matchnet.index_size", len(index))
            span.set_attribute("matchnet.offices", len(proposals))
        _ranking_duration.record(time.perf_counter() - started, {"matchnet.trigger_kind": trigger})
        published = sum(len(proposal.pairings) for proposal in proposals)
        if published:
            after_commit(session, lambda: _pairings_published.add(published, {"matchnet.trigger_kind": trigger}))
        for proposal in proposals:
            store_pairings(session, proposal)
            record_event(
                session,
                Envelope.wrap(EventType.pairings_proposed, EVENT_SOURCE, proposal.office_id, proposal),
            )

    return handle


_PAIRING = PairingRecord.__table__  # type: ignore[attr-defined]


def _upsert_pairing(dialect: str) -> Any:
    statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_PAIRING)
    return statement.on_conflict_do_update(
        index_elements=["pairing_id"],
        set_={"score": statement.excluded.score, "pairing": statement.excluded.pairing,
              "updated_at": statement.excluded.updated_at},
    )


# Core upserts compiled once per dialect: the hot path of every ranking.
_UPSERT_PAIRING = {dialect: _upsert_pairing(dialect) for dialect in ("sqlite", "postgresql")}


def store_pairings(session: Session, proposal: PairingsProposed) -> None:
    """Insert or refresh the proposal's pairings (one statement, many rows)."""
    now = datetime.now(UTC)
    rows = [
        {
            "pairing_id": p.pairing_id, "seed_id": p.seed.id, "need_id": p.need.id, "office_id": p.need.office_id,
            "score": p.score, "pairing": p.model_dump(mode="json"), "updated_at": now,
        }
        for p in proposal.pairings
    ]
    if rows:
        connection = session.connection()
        connection.execute(_UPSERT_PAIRING[connection.dialect.name], rows)


async def rebuild_index(index: ProfileIndex, settings: MatcherSettings) -> None:
    """Load every open seed and need from the registries (paginated, retried) into the index."""
    api_key = settings.api_key or settings.bootstrap_admin_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = asyncio.get_running_loop().time() + settings.rebuild_timeout_s
    async with httpx.AsyncClient(headers=headers, timeout=10.0) as client:
        for base_url, resource, model in (
            (settings.seeds_url, "seeds", SeedProfile),
            (settings.needs_url, "needs", NeedProfile),
        ):
            cursor: str | None = None
            loaded = 0
            while True:
                params: dict[str, str | int] = {"status": "open", "limit": 200}
                if cursor:
                    params["cursor"] = cursor
                page = await _get_with_retry(client, f"{base_url}/v1/{resource}", params, deadline)
                for item in page["items"]:
                    index.upsert(model.model_validate(item))
                    loaded += 1
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            log.info("matcher: index rebuilt with %d %s", loaded, resource)


async def _get_with_retry(client: httpx.AsyncClient, url: str, params: dict, deadline: float) -> dict:
    backoff = 0.1
    while True:
        try:
            response = await client.get(url, params=params)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as error:
            if asyncio.get_running_loop().time() + backoff > deadline:
                raise RuntimeError(f"index rebuild: {url} unavailable: {error}") from error
            log.warning("matcher: %s not available yet (%s), retrying", url, error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
