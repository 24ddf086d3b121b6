"""The matcher's event handling: keep the index in step with seeds and needs, publish what changes.

Every seed and need event (created, updated, status_changed, withdrawn, expired) goes the same way:
the profile is applied to the index unless an equal or newer version is already there (an older
one is dropped), the profile is ranked, the stored lists it may change are read in one statement,
and ``publication.reconcile`` says which events to publish and which pairs to store; all of it in
the event's transaction, with the inbox row. Re-applying an event finds the stored lists already
as it leaves them and publishes nothing, so a redelivery, a replay after a restart, or the same
profile change seen through the index snapshot and the stream is never published twice.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import trace
from sqlmodel import Session

from shared.db import Database, after_commit
from shared.events import (
    Envelope,
    NeedCreated,
    NeedExpired,
    NeedProfile,
    NeedStatusChanged,
    NeedUpdated,
    NeedWithdrawn,
    SeedCreated,
    SeedExpired,
    SeedProfile,
    SeedStatusChanged,
    SeedUpdated,
    SeedWithdrawn,
)
from shared.outbox import record_event
from shared.reference import ProfileStatus
from shared.telemetry import meter

from . import kernels
from .domain import Candidate, ProfileIndex
from .publication import (
    Kind,
    Trigger,
    counterparts_to_read,
    pairing_of,
    reconcile,
)
from .registry_client import NeedTextSource
from .settings import MatcherSettings
from .store import dismissed_pairs, lock_lists, read_lists, read_pairs, write_pairs

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_meter = meter(__name__)
_ranking_duration = _meter.create_histogram(
    "matchnet.ranking.duration", unit="s", description="Time to rank one seed or need against the index"
)
_pairings_published = _meter.create_counter(
    "matchnet.pairings.published", unit="{pairing}",
    description="Pairings in committed pairing events (proposed, updated, retracted), per office view",
)
EVENT_SOURCE = "/matchnet/matcher"
CONSUMER_GROUP = "matchnet-matcher"  # shared by the replicas: each ranks the events of its partitions
SEED_EVENTS = (SeedCreated, SeedUpdated, SeedStatusChanged, SeedWithdrawn, SeedExpired)
NEED_EVENTS = (NeedCreated, NeedUpdated, NeedStatusChanged, NeedWithdrawn, NeedExpired)
Profile = SeedProfile | NeedProfile


def profile_of(envelope: Envelope) -> Profile | None:
    """The seed or need a profile event carries (None for any other event)."""
    payload = envelope.payload()
    if isinstance(payload, SEED_EVENTS):
        return payload.seed
    if isinstance(payload, NEED_EVENTS):
        return payload.need
    return None


@dataclass
class Profiles:
    """The index, and the newest version seen of every profile, also of those that left it: a late
    older event never brings back what a newer one changed or removed."""

    index: ProfileIndex
    # Reads a confidential need's full text: its events carry only the redacted summary.
    texts: NeedTextSource | None = None
    _left: dict[str, int] = field(default_factory=dict)  # profile id -> version at which it stopped being open
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, profile: Profile) -> bool:
        """Apply ``profile`` unless a newer version is known; False when it is stale.

        True also when this very version was applied before (by the index snapshot, or by the other
        consumer of a replica): its publication may still be due.
        """
        if isinstance(profile, NeedProfile) and self.texts is not None:
            profile = self.texts.full(profile)  # raises if unavailable: the event is retried
        with self._lock:
            indexed = self.index.profile(profile.id)
            known = indexed.version if indexed is not None else self._left.get(profile.id)
            if known is not None and profile.version < known:
                return False
            if known is not None and profile.version == known:
                return True
            self.index.upsert(profile)
            if profile.status == ProfileStatus.open:
                self._left.pop(profile.id, None)
            else:
                self._left[profile.id] = profile.version
            return True


@dataclass
class DismissedPairs:
    """Dismissed (seed_id, need_id) pairs, passed to ``rank`` as ``exclude``: loaded at start, grown by
    feedback. The database stays the truth (the reconciliation reads a trigger's dismissed pairs),
    so a dismissal given on another replica is learnt on the way."""

    pairs: frozenset[tuple[str, str]] = frozenset()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, db: Database) -> None:
        with db.session() as session:
            found = dismissed_pairs(session.connection())
        self.add(*found)

    def add(self, *pairs: tuple[str, str]) -> None:
        with self._lock:
            if not set(pairs) <= self.pairs:
                self.pairs = self.pairs | set(pairs)  # replaced, never mutated: rank reads it unlocked


@dataclass
class Matcher:
    """What the matcher's handlers share: the index with its versions, the dismissed pairs, settings."""

    settings: MatcherSettings
    index: ProfileIndex = field(default_factory=ProfileIndex)
    dismissed: DismissedPairs = field(default_factory=DismissedPairs)
    texts: NeedTextSource | None = None

    def __post_init__(self) -> None:
        self.profiles = Profiles(self.index, texts=self.texts or NeedTextSource(self.settings))
        self.events_handled = 0  # profile events this replica ranked (not the stale ones it dropped)

    def depth(self, kind: Kind) -> int:
        """How deep a trigger is ranked: a need for its list, a seed also for the needs' lists it may enter."""
        return max(self.settings.top_k, self.settings.reach) if kind == "seed" else self.settings.top_k

    def handle(self, session: Session, envelope: Envelope) -> None:
        """Apply one seed or need event and record the pairing events it causes, in ``session``."""
        profile = profile_of(envelope)
        if profile is None or not self.profiles.apply(profile):
            return
        self.events_handled += 1
        kind: Kind = "seed" if isinstance(profile, SeedProfile) else "need"
        is_open = self.index.profile(profile.id) is not None
        trigger = Trigger(kind, profile.id, profile.office_id, is_open, profile.status.value)
        started = time.perf_counter()
        with _tracer.start_as_current_span("rank", attributes={"matchnet.trigger_id": profile.id}) as span:
            candidates = self._rank(profile.id, self.depth(kind)) if is_open else []
            span.set_attribute("matchnet.index_size", len(self.index))
            span.set_attribute("matchnet.candidates", len(candidates))
        _ranking_duration.record(time.perf_counter() - started, {"matchnet.trigger_kind": kind})
        connection = lock_lists(session)
        stored = read_lists(connection, kind, profile.id, counterparts_to_read(trigger, candidates))
        self.dismissed.add(*((p.seed_id, p.need_id) for p in stored.values() if p.dismissed))
        publication = reconcile(
            trigger, candidates, stored, top_k=self.settings.top_k,
            pairing_for=lambda candidate: pairing_of(self.index, candidate),
            rerank=self._rerank, load=lambda ids: read_pairs(connection, ids),
        )
        write_pairs(connection, publication.writes, publication.deletes)
        for event_type, event in publication.events:
            record_event(session, Envelope.wrap(event_type, EVENT_SOURCE, event.office_id, event))
        published = sum(len(event.pairings) for _, event in publication.events)
        if published:
            after_commit(session, lambda: _pairings_published.add(published, {"matchnet.trigger_kind": kind}))

    def _rank(self, profile_id: str, limit: int) -> list[Candidate]:
        return self.index.rank(profile_id, limit, self.settings.min_score, exclude=self.dismissed.pairs)

    def _rerank(self, profile_id: str) -> list[Candidate] | None:
        if self.index.profile(profile_id) is None:
            return None
        # A little deeper than the list: a pair dismissed on another replica may still be among them.
        return self._rank(profile_id, self.settings.top_k + 5)


def apply_to_index(matcher: Matcher) -> Callable[[Envelope], None]:
    """The index follower's handler (replicas): the profile change only, nothing stored or published."""

    def apply(envelope: Envelope) -> None:
        profile = profile_of(envelope)
        if profile is not None:
            matcher.profiles.apply(profile)

    return apply


# ---- the index snapshot at start -------------------------------------------------------------


async def rebuild_index(profiles: Profiles, settings: MatcherSettings) -> dict[str, int]:
    """Load every open seed and need from the registries into the index, page by page as they come
    (cursor pagination, ``status=open``), retrying with backoff until ``rebuild_timeout_s``.

    Returns how many profiles of each kind were loaded.
    """
    api_key = settings.api_key or settings.bootstrap_admin_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = asyncio.get_running_loop().time() + settings.rebuild_timeout_s
    loaded = {"seeds": 0, "needs": 0}
    async with httpx.AsyncClient(headers=headers, timeout=10.0, trust_env=False) as client:
        for base_url, resource, model in (
            (settings.seeds_url, "seeds", SeedProfile),
            (settings.needs_url, "needs", NeedProfile),
        ):
            cursor: str | None = None
            while True:
                params: dict[str, str | int] = {"status": "open", "limit": settings.rebuild_page_size}
                if cursor:
                    params["cursor"] = cursor
                page = await _get_with_retry(client, f"{base_url}/v1/{resource}", params, deadline)
                items = [model.model_validate(item) for item in page["items"]]
                await asyncio.to_thread(_apply_all, profiles, items)  # off the loop: analysis takes a while
                loaded[resource] += len(items)
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            log.info("matcher: index rebuilt with %d %s", loaded[resource], resource)
    # The fast path's compiled kernels: loaded from numba's cache (or compiled) now, not by the first event.
    await asyncio.to_thread(kernels.warm_up)
    # The rebuilt index is long-lived (millions of objects at scale): moved out of the collector's
    # generations, it is not walked again by every full collection while needs are ranked.
    gc.collect()
    gc.freeze()
    return loaded


def _apply_all(profiles: Profiles, items: list[Any]) -> None:
    for profile in items:
        profiles.apply(profile)


async def _get_with_retry(client: httpx.AsyncClient, url: str, params: dict[str, Any], deadline: float) -> Any:
    backoff = 0.1
    while True:
        try:
            response = await client.get(url, params=params)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as error:
            if asyncio.get_running_loop().time() + backoff > deadline:
                raise RuntimeError(f"index rebuild: {url} unavailable: {error}") from error
            log.warning("matcher: %s not available yet (%s), retrying in %.1fs", url, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
