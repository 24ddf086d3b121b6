"""The matcher's routes over its real, migrated database (SQLite and PostgreSQL), fed events directly:
the lists it serves, and who may give feedback on which pairing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlmodel import col, select

from services.matcher.app import MATCHER, create_app
from services.matcher.events import Matcher
from services.matcher.publication import pairing_id
from services.matcher.settings import MatcherSettings
from shared.auth import Role
from shared.events import Envelope, EventType, NeedCreated, SeedCreated
from shared.outbox import OutboxEvent
from tests.api_harness import ADMIN, ADMIN_KEY, Api, route_harness
from tests.factories import need_profile, seed_profile


@pytest.fixture
def matcher(new_database: Callable[[str], str]) -> Iterator[tuple[Api, Matcher]]:
    settings = MatcherSettings(database_url=new_database("matcher"), bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_app, settings) as api:
        engine = Matcher(settings)
        api.client.app.state.runtime.extras[MATCHER] = engine  # type: ignore[attr-defined]
        for envelope in (
            Envelope.wrap(EventType.seed_created, "/matchnet/seeds", "seed_hokkaido",
                          SeedCreated(seed=seed_profile("seed_hokkaido", prefecture="01"))),
            Envelope.wrap(EventType.need_created, "/matchnet/needs", "need_tokyo",
                          NeedCreated(need=need_profile("need_tokyo", prefecture="13"))),
            Envelope.wrap(EventType.need_created, "/matchnet/needs", "need_secret", NeedCreated(need=need_profile(
                "need_secret", prefecture="27", confidentiality="confidential",
                redacted_summary="近畿の製造業者が排熱の活用技術を探している。"))),
        ):
            with api.db.session() as session:
                engine.handle(session, envelope)
        yield api, engine


def feedback_url(seed_id: str, need_id: str) -> str:
    return f"/v1/pairings/{pairing_id(seed_id, need_id)}/feedback"


def test_a_needs_list_and_where_a_seed_is_proposed(matcher: tuple[Api, Matcher]) -> None:
    api, _ = matcher
    [pairing] = api.client.get("/v1/needs/need_tokyo/pairings", headers=ADMIN).json()
    assert (pairing["rank"], pairing["seed"]["id"], pairing["verdict"]) == (1, "seed_hokkaido", None)
    proposed_for = [p["need"]["id"] for p in api.client.get("/v1/seeds/seed_hokkaido/pairings", headers=ADMIN).json()]
    assert sorted(proposed_for) == ["need_secret", "need_tokyo"]
    index = api.client.get("/v1/index", headers=ADMIN).json()
    assert (index["seeds"], index["needs"], index["events_handled"], index["replica_id"]) == (1, 2, 3, None)


def test_the_office_of_the_need_or_of_the_seed_gives_feedback_others_may_not(matcher: tuple[Api, Matcher]) -> None:
    api, engine = matcher
    url = feedback_url("seed_hokkaido", "need_tokyo")
    assert api.client.post(url, json={"verdict": "accepted"}, headers=api.key(Role.office, "office-27")).status_code \
        == 404
    assert api.client.post(url, json={"verdict": "accepted"}, headers=api.key(Role.operator)).status_code == 403
    assert api.client.post(url, json={"verdict": "accepted"}, headers=api.key(Role.partner, partner_id="p")
                           ).status_code == 403
    assert api.client.post(url, json={"verdict": "accepted"}).status_code == 401
    assert api.client.get(url, headers=api.key(Role.office, "office-27")).status_code == 404

    seed_office = api.client.post(url, json={"verdict": "accepted", "reason": "紹介します"},
                                  headers=api.key(Role.office, "office-01"))
    assert seed_office.status_code == 201, seed_office.text
    assert seed_office.json()["given_by_office_id"] == "office-01"
    need_office = api.client.post(url, json={"verdict": "dismissed"}, headers=api.key(Role.office, "office-13"))
    assert need_office.status_code == 201
    assert [f["verdict"] for f in api.client.get(url, headers=ADMIN).json()] == ["accepted", "dismissed"]
    assert api.client.get("/v1/needs/need_tokyo/pairings", headers=ADMIN).json() == []
    assert ("seed_hokkaido", "need_tokyo") in engine.dismissed.pairs

    with api.db.session() as session:
        types = session.exec(select(OutboxEvent.event_type).where(col(OutboxEvent.key) == pairing_id(
            "seed_hokkaido", "need_tokyo"))).all()
    assert types == [EventType.pairing_feedback.value] * 2


def test_a_confidential_needs_pairing_does_not_exist_for_another_offices_seed_office(
    matcher: tuple[Api, Matcher],
) -> None:
    api, _ = matcher
    url = feedback_url("seed_hokkaido", "need_secret")
    hokkaido = api.key(Role.office, "office-01")
    assert api.client.post(url, json={"verdict": "dismissed"}, headers=hokkaido).status_code == 404
    osaka = api.client.post(url, json={"verdict": "dismissed"}, headers=api.key(Role.office, "office-27"))
    assert osaka.status_code == 201


def test_feedback_problems_name_the_field(matcher: tuple[Api, Matcher]) -> None:
    api, _ = matcher
    url = feedback_url("seed_hokkaido", "need_tokyo")
    for body, field in (({"verdict": "maybe"}, "verdict"), ({}, "verdict"), ({"verdict": "accepted", "x": 1}, "x"),
                        ({"verdict": "accepted", "reason": "あ" * 1001}, "reason")):
        response = api.client.post(url, json=body, headers=ADMIN)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == field
    missing = api.client.post("/v1/pairings/pair_missing/feedback", json={"verdict": "accepted"}, headers=ADMIN)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert api.client.post(url, json={"verdict": "dismissed"}, headers=ADMIN).status_code == 201
    final = api.client.post(url, json={"verdict": "accepted"}, headers=ADMIN)
    assert final.status_code == 409 and final.json()["errors"] == [{"field": "verdict", "message": "already dismissed"}]
