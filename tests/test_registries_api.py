"""The seeds and needs APIs at the edge: validation, errors, auth, idempotency, pagination, visibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from shared.auth import Role
from shared.outbox import OutboxEvent
from tests.api_harness import ADMIN, Api, deliver_key_events, key_registry
from tests.factories import NEED_BODY, SEED_BODY

# The seeds and needs fixtures (tests/conftest.py) run each test on SQLite and on PostgreSQL.


def outbox_events(api: Api) -> list[dict]:
    with api.db.session() as session:
        return [json.loads(row.envelope) for row in session.exec(select(OutboxEvent).order_by(OutboxEvent.seq))]


def test_a_registered_seed_is_stored_with_its_created_event_in_the_outbox(seeds: Api) -> None:
    response = seeds.client.post("/v1/seeds", headers=ADMIN, json=SEED_BODY)

    assert response.status_code == 201, response.text
    seed = response.json()
    assert seed["id"].startswith("seed_") and seed["version"] == 1 and seed["status"] == "open"
    assert response.headers["location"] == f"/v1/seeds/{seed['id']}"
    assert seeds.client.get(f"/v1/seeds/{seed['id']}", headers=ADMIN).json() == seed
    [event] = outbox_events(seeds)
    assert event["type"] == "jp.matchnet.seed.created.v1"
    assert event["subject"] == seed["id"]
    assert event["data"]["seed"] == seed


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prefecture": "48"}, "prefecture"),
        ({"fields": ["alchemy"]}, "fields.0"),
        ({"owner_type": "startup"}, "owner_type"),
        ({"offers": []}, "offers"),
        ({"title": ""}, "title"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_problem_document_naming_the_field_and_nothing_is_written(
    seeds: Api, change: dict, field: str
) -> None:
    response = seeds.client.post("/v1/seeds", headers=ADMIN, json={**SEED_BODY, **change})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Validation failed"
    assert field in [error["field"] for error in problem["errors"]]
    assert outbox_events(seeds) == []


def test_malformed_json_and_oversized_bodies_are_client_errors(seeds: Api) -> None:
    broken = seeds.client.post("/v1/seeds", headers={**ADMIN, "content-type": "application/json"}, content=b"{")
    assert broken.status_code == 422 and broken.headers["content-type"] == "application/problem+json"
    huge = seeds.client.post("/v1/seeds", headers=ADMIN, json={**SEED_BODY, "description": "x" * 1_100_000})
    assert huge.status_code == 413 and huge.json()["status"] == 413


def test_unknown_ids_and_bad_cursors_are_problems_not_server_errors(seeds: Api) -> None:
    missing = seeds.client.get("/v1/seeds/seed_nope", headers=ADMIN)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert seeds.client.get("/v1/seeds?cursor=%%%", headers=ADMIN).status_code == 400
    assert seeds.client.get("/v1/seeds?limit=1000", headers=ADMIN).status_code == 422


def test_requests_without_a_valid_key_are_unauthorized(seeds: Api) -> None:
    assert seeds.client.get("/v1/seeds").status_code == 401
    forged = {"Authorization": "Bearer mnk_eyJyb2xlIjoiYWRtaW4ifQ.forged"}
    response = seeds.client.post("/v1/seeds", headers=forged, json=SEED_BODY)
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


def test_an_office_registers_seeds_of_its_own_prefecture_only(seeds: Api) -> None:
    hokkaido = seeds.key(Role.office, office_id="office-01")
    tokyo = seeds.key(Role.office, office_id="office-13")
    assert seeds.client.post("/v1/seeds", headers=hokkaido, json=SEED_BODY).status_code == 201
    assert seeds.client.post("/v1/seeds", headers=tokyo, json=SEED_BODY).status_code == 403
    partner = seeds.key(Role.partner, partner_id="tlo-1")
    assert seeds.client.post("/v1/seeds", headers=partner, json=SEED_BODY).status_code == 403


def test_a_replayed_idempotency_key_returns_the_first_answer_and_writes_once(seeds: Api) -> None:
    headers = {**ADMIN, "Idempotency-Key": "import-2026-11-26-001"}
    first = seeds.client.post("/v1/seeds", headers=headers, json=SEED_BODY)
    again = seeds.client.post("/v1/seeds", headers=headers, json=SEED_BODY)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(outbox_events(seeds)) == 1
    reused = seeds.client.post("/v1/seeds", headers=headers, json={**SEED_BODY, "title": "別の題"})
    assert reused.status_code == 422 and reused.json()["errors"][0]["field"] == "Idempotency-Key"


def test_lists_are_paginated_by_cursor_in_creation_order_and_filtered(seeds: Api) -> None:
    ids = [
        seeds.client.post("/v1/seeds", headers=ADMIN, json={**SEED_BODY, "prefecture": pref}).json()["id"]
        for pref in ("01", "13", "01", "27", "01")
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = seeds.client.get("/v1/seeds", headers=ADMIN, params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    hokkaido = seeds.client.get("/v1/seeds", headers=ADMIN, params={"prefecture": "01"}).json()["items"]
    assert [s["id"] for s in hokkaido] == [ids[0], ids[2], ids[4]]
    bad = seeds.client.get("/v1/seeds", headers=ADMIN, params={"prefecture": "99"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "prefecture"


def test_a_confidential_need_is_hidden_from_other_offices_and_partners(needs: Api) -> None:
    secret = needs.client.post("/v1/needs", headers=ADMIN, json={**NEED_BODY, "confidentiality": "confidential"})
    public = needs.client.post("/v1/needs", headers=ADMIN, json={**NEED_BODY, "confidentiality": "public"})
    secret_id, public_id = secret.json()["id"], public.json()["id"]

    own_office = needs.key(Role.office, office_id="office-13")
    other_office = needs.key(Role.office, office_id="office-27")
    partner = needs.key(Role.partner, partner_id="bank-1")
    operator = needs.key(Role.operator)

    assert needs.client.get(f"/v1/needs/{secret_id}", headers=own_office).status_code == 200
    assert needs.client.get(f"/v1/needs/{secret_id}", headers=operator).status_code == 200
    for outsider in (other_office, partner):
        assert needs.client.get(f"/v1/needs/{secret_id}", headers=outsider).status_code == 404
        listed = needs.client.get("/v1/needs", headers=outsider).json()["items"]
        assert [n["id"] for n in listed] == [public_id]
        assert "秘密" not in json.dumps(listed)


def test_partners_do_not_see_the_company_name_of_a_members_level_need(needs: Api) -> None:
    created = needs.client.post("/v1/needs", headers=ADMIN, json={**NEED_BODY, "confidentiality": "members"}).json()
    partner = needs.key(Role.partner, partner_id="bank-1")
    other_office = needs.key(Role.office, office_id="office-27")

    assert needs.client.get(f"/v1/needs/{created['id']}", headers=partner).json()["company_name"] is None
    assert needs.client.get(f"/v1/needs/{created['id']}", headers=other_office).json()["company_name"] == (
        NEED_BODY["company_name"]
    )


def test_an_admin_mints_office_keys_that_every_service_accepts(tmp_path: Path, seeds: Api, needs: Api) -> None:
    with key_registry(tmp_path) as registry:
        minted = registry.client.post("/v1/api-keys", headers=ADMIN, json={"role": "office", "office_id": "office-01"})
        assert minted.status_code == 201
        office = {"Authorization": f"Bearer {minted.json()['api_key']}"}
        deliver_key_events(registry, seeds, needs)
        assert seeds.client.post("/v1/seeds", headers=office, json=SEED_BODY).status_code == 201
        assert needs.client.get("/v1/needs", headers=office).status_code == 200
        assert registry.client.post("/v1/api-keys", headers=office, json={"role": "admin"}).status_code == 403
        unknown = registry.client.post(
            "/v1/api-keys", headers=ADMIN, json={"role": "office", "office_id": "office-99"}
        )
        assert unknown.status_code == 422


def test_the_seeds_and_needs_of_one_test_have_databases_of_their_own(seeds: Api, needs: Api) -> None:
    assert seeds.db.url != needs.db.url
    assert seeds.client.post("/v1/seeds", headers=ADMIN, json=SEED_BODY).status_code == 201
    assert needs.client.post("/v1/needs", headers=ADMIN, json=NEED_BODY).status_code == 201
