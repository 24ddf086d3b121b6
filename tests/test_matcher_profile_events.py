"""The matcher follows every seed and need event: a changed profile is re-indexed, one that is no longer
open (paused, closed, withdrawn, expired) leaves the index; no profile event is dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from services.matcher.events import Matcher
from services.matcher.publication import need_summary
from services.matcher.registry_client import NeedTextSource, NeedTextUnavailable
from services.matcher.settings import MatcherSettings
from shared.db import Database
from shared.events import (
    PROFILE_EVENTS,
    Envelope,
    NeedCreated,
    NeedExpired,
    NeedProfile,
    NeedStatusChanged,
    NeedUpdated,
    NeedWithdrawn,
    ProfileAction,
    SeedCreated,
    SeedExpired,
    SeedStatusChanged,
    SeedUpdated,
    SeedWithdrawn,
)
from shared.kafka import EventHandler
from shared.migrations import upgrade
from tests.factories import need_profile, seed_profile


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'matcher.db'}"
    upgrade("matcher", url)  # the matcher's tables, as at its start
    database = Database(url)
    yield database
    database.dispose()


def apply(handler: EventHandler, db: Database, kind: str, action: ProfileAction, payload: BaseModel) -> None:
    """Wrap the payload as the registry would, send it through Kafka's encoding, and handle it."""
    envelope = Envelope.wrap(PROFILE_EVENTS[(kind, action)], f"/matchnet/{kind}s", "x", payload)
    received = Envelope.from_kafka(*envelope.to_kafka())  # raises if it would be dead-lettered
    with db.session() as session:
        handler(session, received)


def test_changes_re_index_a_seed_and_a_closed_or_expired_one_leaves_the_index(db: Database) -> None:
    matcher = Matcher(MatcherSettings())
    index, handle = matcher.index, matcher.handle
    apply(handle, db, "seed", ProfileAction.created, SeedCreated(seed=seed_profile("seed_1")))

    apply(handle, db, "seed", ProfileAction.updated,
          SeedUpdated(seed=seed_profile("seed_1", version=2, title="超音波洗浄"), changed_fields=["title"]))
    assert "超音" in index.documents["seed_1"].counts

    apply(handle, db, "seed", ProfileAction.status_changed,
          SeedStatusChanged(seed=seed_profile("seed_1", version=3, status="paused"), previous_status="open"))
    assert "seed_1" not in index.documents

    apply(handle, db, "seed", ProfileAction.status_changed,
          SeedStatusChanged(seed=seed_profile("seed_1", version=4), previous_status="paused"))
    assert "seed_1" in index.documents

    apply(handle, db, "seed", ProfileAction.expired,
          SeedExpired(seed=seed_profile("seed_1", version=5, status="expired"), previous_status="open"))
    assert "seed_1" not in index.documents

    apply(handle, db, "seed", ProfileAction.created, SeedCreated(seed=seed_profile("seed_2")))
    apply(handle, db, "seed", ProfileAction.withdrawn,
          SeedWithdrawn(seed=seed_profile("seed_2", version=2, status="withdrawn"), previous_status="open"))
    assert index.counts() == {"seeds": 0, "needs": 0}


def test_needs_follow_the_same_rules_and_a_late_older_update_is_ignored(db: Database) -> None:
    matcher = Matcher(MatcherSettings())
    index, handle = matcher.index, matcher.handle
    apply(handle, db, "need", ProfileAction.created, NeedCreated(need=need_profile("need_1")))
    apply(handle, db, "need", ProfileAction.updated,
          NeedUpdated(need=need_profile("need_1", version=3, title="鮮度を保ちたい"), changed_fields=["title"]))
    apply(handle, db, "need", ProfileAction.updated,
          NeedUpdated(need=need_profile("need_1", version=2, title="古い題"), changed_fields=["title"]))
    assert "鮮度" in index.documents["need_1"].counts and "古い" not in index.documents["need_1"].counts

    apply(handle, db, "need", ProfileAction.status_changed,
          NeedStatusChanged(need=need_profile("need_1", version=4, status="closed"), previous_status="open"))
    assert index.counts()["needs"] == 0
    apply(handle, db, "need", ProfileAction.created, NeedCreated(need=need_profile("need_2")))
    apply(handle, db, "need", ProfileAction.expired,
          NeedExpired(need=need_profile("need_2", version=2, status="expired"), previous_status="open"))
    apply(handle, db, "need", ProfileAction.created, NeedCreated(need=need_profile("need_3")))
    apply(handle, db, "need", ProfileAction.withdrawn,
          NeedWithdrawn(need=need_profile("need_3", version=2, status="withdrawn"), previous_status="open"))
    assert index.counts()["needs"] == 0


def test_only_the_redacted_summary_of_a_confidential_need_leaves_the_matcher() -> None:
    need = need_profile(confidentiality="confidential", title="極秘の新製品", description="極秘の工程",
                        redacted_summary="関東の製造業者が排熱の活用技術を探している。")
    summary = need_summary(need)
    assert summary.title == "関東の製造業者が排熱の活用技術を探している。"
    assert "極秘" not in summary.model_dump_json()


def redacted_event_of(need: NeedProfile) -> NeedProfile:
    summary = need.redacted_summary or ""
    return need.model_copy(update={"title": summary, "summary": summary, "description": summary, "keywords": [],
                                   "text_redacted": True})


def test_a_confidential_need_is_ranked_on_its_full_text_read_from_the_needs_service(db: Database) -> None:
    full = need_profile("need_9", confidentiality="confidential", title="極秘の熱電変換の用途開発",
                        description="鋳造の排熱を熱電変換で電気にしたい",
                        redacted_summary="製造業者が排熱の活用を探している。")
    asked: list[str] = []

    def needs_service(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path} {request.headers['authorization']}")
        return httpx.Response(200, json=full.model_dump(mode="json"))

    settings = MatcherSettings(bootstrap_admin_key="mn_admin_test")
    matcher = Matcher(settings, texts=NeedTextSource(settings, transport=httpx.MockTransport(needs_service)))
    index, handle = matcher.index, matcher.handle
    apply(handle, db, "seed", ProfileAction.created, SeedCreated(seed=seed_profile("seed_1")))
    apply(handle, db, "need", ProfileAction.created, NeedCreated(need=redacted_event_of(full)))

    assert asked == ["/v1/needs/need_9 Bearer mn_admin_test"]
    assert "熱電" in index.documents["need_9"].counts  # the full text, not the redacted summary
    assert [c.seed_id for c in index.rank("need_9", 10, 0.0)] == ["seed_1"]


def test_a_need_whose_text_cannot_be_read_is_not_ranked_on_its_summary_the_event_is_retried(db: Database) -> None:
    need = need_profile("need_9", confidentiality="confidential", redacted_summary="製造業者が排熱の活用を探している。")
    settings = MatcherSettings()
    refusing = NeedTextSource(settings, transport=httpx.MockTransport(lambda _: httpx.Response(503)))
    matcher = Matcher(settings, texts=refusing)
    index = matcher.index
    with pytest.raises(NeedTextUnavailable):
        apply(matcher.handle, db, "need", ProfileAction.created, NeedCreated(need=redacted_event_of(need)))
    assert "need_9" not in index.documents
