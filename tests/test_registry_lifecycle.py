"""A profile's life through the API: create, read, PATCH, status transitions, withdrawal; ETag and
If-Match, idempotent creates, an event and an audit record for every change. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from httpx import Response

from tests.api_harness import ADMIN, Api
from tests.factories import NEED_BODY, SEED_BODY
from tests.registry_support import audit_records, if_match, office, operator, outbox_events, register

# ---- create and read ---------------------------------------------------------------------------------


def test_a_created_seed_carries_every_field_of_the_agreed_schema_and_its_etag(seeds: Api) -> None:
    body = {**SEED_BODY, "external_id": "HIT-2024-017", "title_translated": "Thermoelectric sheet",
            "summary_translated": "Turns waste heat into power.", "classification_codes": ["h10n10/856", "G06N"],
            "expires_on": "2030-03-31", "status": "draft"}
    response = seeds.client.post("/v1/seeds", headers=ADMIN, json=body)

    assert response.status_code == 201, response.text
    seed = response.json()
    assert response.headers["etag"] == '"1"'
    for name, value in body.items():
        if name != "classification_codes":
            assert seed[name] == value, name
    assert seed["classification_codes"] == ["H10N 10/856", "G06N"]  # stored normalised
    assert seed["office_id"] == "office-01"
    read = seeds.client.get(f"/v1/seeds/{seed['id']}", headers=ADMIN)
    assert read.json() == seed and read.headers["etag"] == '"1"'


def test_a_created_need_carries_every_field_of_the_agreed_schema(needs: Api) -> None:
    body = {**NEED_BODY, "external_id": "N-42", "title_translated": "Use our waste heat",
            "budget_min_jpy": 1_000_000, "budget_max_jpy": 3_000_000_000, "timeline_months": 18,
            "expires_on": "2030-01-31"}
    need = needs.client.post("/v1/needs", headers=ADMIN, json=body).json()

    for name, value in body.items():
        assert need[name] == value, name
    assert need["industry"] == "E" and need["status"] == "open" and need["version"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"summary": ""}, "summary"),
        ({"trl": 10}, "trl"),
        ({"ip_status": "trade_secret"}, "ip_status"),
        ({"classification_codes": ["not a code"]}, "classification_codes.0"),
        ({"contact_email": "no-at-sign"}, "contact_email"),
        ({"keywords": ["x" * 61]}, "keywords.0"),
        ({"status": "expired"}, "status"),
        ({"fields": []}, "fields"),
    ],
)
def test_a_seed_that_breaks_the_schema_is_refused_naming_the_field(seeds: Api, change: dict, field: str) -> None:
    response = seeds.client.post("/v1/seeds", headers=ADMIN, json={**SEED_BODY, **change})

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert outbox_events(seeds) == [] and audit_records(seeds) == []


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"confidentiality": "confidential", "redacted_summary": None}, "redacted_summary", "required"),
        ({"redacted_summary": "東京精密鋳造株式会社が排熱技術を探す"}, "redacted_summary", "must not name the company"),
        ({"budget_min_jpy": 5_000_000, "budget_max_jpy": 1_000_000}, "budget_max_jpy", "below"),
        ({"industry": "Z"}, "industry", ""),
        ({"timeline_months": 121}, "timeline_months", ""),
        ({"fields": []}, "fields", ""),
    ],
)
def test_a_need_that_breaks_the_schema_is_refused_naming_the_field(
    needs: Api, change: dict, field: str, message: str
) -> None:
    response = needs.client.post("/v1/needs", headers=ADMIN, json={**NEED_BODY, **change})

    assert response.status_code == 422, response.text
    errors = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert field in errors and message in errors[field]


def test_an_idempotent_replay_returns_the_first_answer_with_its_etag(needs: Api) -> None:
    headers = {**ADMIN, "Idempotency-Key": "catalogue-2026-001"}
    first = needs.client.post("/v1/needs", headers=headers, json=NEED_BODY)
    replay = needs.client.post("/v1/needs", headers=headers, json=NEED_BODY)

    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true" and replay.headers["etag"] == '"1"'
    assert len(outbox_events(needs)) == 1 and len(audit_records(needs)) == 1


# ---- PATCH ------------------------------------------------------------------------------------------------


def test_a_patch_changes_the_fields_sent_bumps_the_version_and_emits_updated(seeds: Api) -> None:
    seed = register(seeds, "seeds")

    response = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1),
                                  json={"trl": 6, "keywords": ["熱電", "熱電"], "expires_on": "2031-03-31"})

    assert response.status_code == 200, response.text
    updated = response.json()
    assert response.headers["etag"] == '"2"' and updated["version"] == 2
    assert updated["trl"] == 6 and updated["keywords"] == ["熱電"] and updated["expires_on"] == "2031-03-31"
    assert updated["title"] == seed["title"] and updated["updated_at"] > seed["updated_at"]
    event = outbox_events(seeds)[-1]
    assert event["type"] == "jp.matchnet.seed.updated.v1" and event["subject"] == seed["id"]
    assert event["data"]["seed"] == updated
    assert sorted(event["data"]["changed_fields"]) == ["expires_on", "keywords", "trl"]


def test_a_patch_accepts_the_merge_patch_media_type_and_null_clears_an_optional_field(seeds: Api) -> None:
    seed = register(seeds, "seeds", title_translated="Thermoelectric sheet")

    response = seeds.client.patch(
        f"/v1/seeds/{seed['id']}", content=b'{"title_translated": null}',
        headers={**if_match(1), "Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["title_translated"] is None


def test_a_patch_is_validated_as_a_whole_profile(needs: Api) -> None:
    need = register(needs, "needs", redacted_summary=None)

    made_confidential = needs.client.patch(f"/v1/needs/{need['id']}", headers=if_match(1),
                                           json={"confidentiality": "confidential"})
    cleared_title = needs.client.patch(f"/v1/needs/{need['id']}", headers=if_match(1), json={"title": None})

    assert made_confidential.status_code == 422
    assert made_confidential.json()["errors"][0]["field"] == "redacted_summary"
    assert cleared_title.status_code == 422 and cleared_title.json()["errors"][0]["field"] == "title"
    assert needs.client.get(f"/v1/needs/{need['id']}", headers=ADMIN).json()["version"] == 1


def test_a_patch_that_changes_nothing_writes_nothing(seeds: Api) -> None:
    seed = register(seeds, "seeds")

    response = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"trl": seed["trl"]})

    assert response.status_code == 200 and response.headers["etag"] == '"1"'
    assert [e["type"] for e in outbox_events(seeds)] == ["jp.matchnet.seed.created.v1"]


def test_the_status_is_not_patched_but_changed_through_its_endpoint(seeds: Api) -> None:
    seed = register(seeds, "seeds")

    response = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"status": "closed"})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "status" and "/status" in error["message"]


def test_unknown_fields_in_a_patch_are_refused(seeds: Api) -> None:
    seed = register(seeds, "seeds")
    response = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"colour": "blue"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "colour"


# ---- optimistic concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["patch", "status", "delete"])
def test_a_change_without_if_match_is_428_and_with_a_stale_one_412(seeds: Api, method: str) -> None:
    seed = register(seeds, "seeds")
    seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"trl": 7})  # now version 2

    def send(headers: dict[str, str]) -> Response:
        url = f"/v1/seeds/{seed['id']}"
        if method == "patch":
            return seeds.client.patch(url, headers=headers, json={"trl": 8})
        if method == "status":
            return seeds.client.post(f"{url}/status", headers=headers, json={"status": "paused"})
        return seeds.client.delete(url, headers=headers)

    missing = send(ADMIN)
    stale = send(if_match(1))

    assert missing.status_code == 428 and missing.json()["errors"][0]["field"] == "If-Match"
    assert missing.headers["content-type"] == "application/problem+json"
    assert stale.status_code == 412 and stale.headers["etag"] == '"2"'
    assert seeds.client.get(f"/v1/seeds/{seed['id']}", headers=ADMIN).json()["version"] == 2
    assert len(outbox_events(seeds)) == 2


def test_of_two_editors_with_the_same_version_the_second_gets_412(needs: Api) -> None:
    need = register(needs, "needs")
    tokyo = office(needs, "13")

    first = needs.client.patch(f"/v1/needs/{need['id']}", headers=if_match(1, tokyo), json={"timeline_months": 6})
    second = needs.client.patch(f"/v1/needs/{need['id']}", headers=if_match(1), json={"timeline_months": 9})

    assert first.status_code == 200 and second.status_code == 412
    assert needs.client.get(f"/v1/needs/{need['id']}", headers=ADMIN).json()["timeline_months"] == 6


def test_if_match_accepts_a_list_and_star_but_never_a_weak_tag(seeds: Api) -> None:
    seed = register(seeds, "seeds")
    url = f"/v1/seeds/{seed['id']}"

    weak = seeds.client.patch(url, headers={**ADMIN, "If-Match": 'W/"1"'}, json={"trl": 2})
    listed = seeds.client.patch(url, headers={**ADMIN, "If-Match": '"7", "1"'}, json={"trl": 2})
    star = seeds.client.patch(url, headers={**ADMIN, "If-Match": "*"}, json={"trl": 3})

    assert weak.status_code == 412
    assert listed.status_code == 200 and star.status_code == 200 and star.headers["etag"] == '"3"'


# ---- status transitions and withdrawal -------------------------------------------------------------------


def transition(api: Api, kind: str, profile: dict, status: str, version: int) -> Response:
    return api.client.post(f"/v1/{kind}/{profile['id']}/status", headers=if_match(version),
                           json={"status": status, "reason": "テスト"})


def test_legal_transitions_change_the_status_and_emit_status_changed(seeds: Api) -> None:
    seed = register(seeds, "seeds", status="draft")

    for version, status in enumerate(["open", "paused", "open", "closed", "open"], start=1):
        response = transition(seeds, "seeds", seed, status, version)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    events = outbox_events(seeds)
    assert [e["type"] for e in events] == ["jp.matchnet.seed.created.v1"] + ["jp.matchnet.seed.status_changed.v1"] * 5
    assert events[2]["data"]["previous_status"] == "open" and events[2]["data"]["seed"]["status"] == "paused"
    assert events[2]["data"]["reason"] == "テスト" and events[2]["data"]["seed"]["version"] == 3


@pytest.mark.parametrize(
    ("start", "target", "reason"),
    [
        ("draft", "paused", "draft → paused is not a legal transition; from draft: open, withdrawn"),
        ("open", "draft", "open → draft is not a legal transition"),
        ("open", "open", "already open"),
        ("closed", "paused", "closed → paused is not a legal transition"),
        ("open", "expired", "expired is set by the registry"),
    ],
)
def test_an_illegal_transition_is_409_with_the_reason(seeds: Api, start: str, target: str, reason: str) -> None:
    seed = register(seeds, "seeds", status=start)

    response = transition(seeds, "seeds", seed, target, 1)

    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in problem["detail"] and problem["errors"][0]["field"] == "status"
    assert problem["type"].endswith("/illegal-transition")
    assert len(outbox_events(seeds)) == 1


def test_delete_withdraws_keeps_the_profile_and_withdrawal_is_final(needs: Api) -> None:
    need = register(needs, "needs")

    withdrawn = needs.client.delete(f"/v1/needs/{need['id']}?reason=社内で解決", headers=if_match(1))

    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert withdrawn.headers["etag"] == '"2"'
    assert needs.client.get(f"/v1/needs/{need['id']}", headers=ADMIN).json()["status"] == "withdrawn"
    event = outbox_events(needs)[-1]
    assert event["type"] == "jp.matchnet.need.withdrawn.v1"
    assert event["data"]["previous_status"] == "open" and event["data"]["reason"] == "社内で解決"
    again = needs.client.delete(f"/v1/needs/{need['id']}", headers=if_match(2))
    reopened = transition(needs, "needs", need, "open", 2)
    edited = needs.client.patch(f"/v1/needs/{need['id']}", headers=if_match(2), json={"timeline_months": 3})
    assert again.status_code == 409 and "already withdrawn" in again.json()["detail"]
    assert reopened.status_code == 409 and "final" in reopened.json()["detail"]
    assert edited.status_code == 409


def test_withdrawing_through_the_status_endpoint_is_the_same_as_delete(seeds: Api) -> None:
    seed = register(seeds, "seeds")
    response = transition(seeds, "seeds", seed, "withdrawn", 1)
    assert response.json()["status"] == "withdrawn"
    assert outbox_events(seeds)[-1]["type"] == "jp.matchnet.seed.withdrawn.v1"


def test_a_profile_whose_expiry_has_passed_cannot_be_reopened_until_renewed(seeds: Api) -> None:
    seed = register(seeds, "seeds", status="paused", expires_on="2020-03-31")

    refused = transition(seeds, "seeds", seed, "open", 1)
    renewed = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"expires_on": "2099-03-31"})
    reopened = transition(seeds, "seeds", seed, "open", 2)

    assert refused.status_code == 409 and "expires_on 2020-03-31 has passed" in refused.json()["detail"]
    assert renewed.status_code == 200 and reopened.status_code == 200


# ---- events and audit -----------------------------------------------------------------------------------


def test_every_change_has_an_event_with_the_current_version_and_an_audit_record(seeds: Api) -> None:
    hokkaido = office(seeds, "01")
    seed = register(seeds, "seeds", headers=hokkaido)
    seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1, hokkaido), json={"trl": 5})
    transition(seeds, "seeds", seed, "paused", 2)
    seeds.client.delete(f"/v1/seeds/{seed['id']}", headers=if_match(3, hokkaido))

    events = outbox_events(seeds)
    assert [e["type"].split(".")[3] for e in events] == ["created", "updated", "status_changed", "withdrawn"]
    assert [e["data"]["seed"]["version"] for e in events] == [1, 2, 3, 4]
    trail = audit_records(seeds)
    assert [(r.action, r.version_before, r.version_after) for r in trail] == [
        ("created", None, 1), ("updated", 1, 2), ("status_changed", 2, 3), ("withdrawn", 3, 4)
    ]
    assert {r.entity_id for r in trail} == {seed["id"]} and {r.entity_type for r in trail} == {"seed"}
    assert [r.actor_role for r in trail] == ["office", "office", "admin", "office"]
    assert trail[0].actor_office_id == "office-01" and trail[2].actor_office_id is None
    assert trail[0].actor_key_id == trail[1].actor_key_id != trail[2].actor_key_id  # the key that acted
    assert trail[1].details == {"changed_fields": ["trl"]}
    assert trail[2].details == {"from_status": "open", "to_status": "paused", "reason": "テスト"}


def test_need_events_are_public_safe_no_confidential_text_and_no_company_name_unless_public(needs: Api) -> None:
    secret = register(needs, "needs", confidentiality="confidential", description="極秘の新工程で出る排熱を使いたい")
    register(needs, "needs", confidentiality="members")
    register(needs, "needs", confidentiality="public")
    needs.client.patch(f"/v1/needs/{secret['id']}", headers=if_match(1), json={"title": "極秘の新製品の排熱"})

    confidential, members, public, confidential_updated = (e["data"]["need"] for e in outbox_events(needs))

    for event in (confidential, confidential_updated):
        assert "極秘" not in json.dumps(event, ensure_ascii=False)  # the matcher fetches the text
        assert event["text_redacted"] is True and event["keywords"] == []
        assert event["title"] == event["description"] == NEED_BODY["redacted_summary"]
    assert members["text_redacted"] is False and members["description"] == NEED_BODY["description"]
    assert confidential["company_name"] is None and members["company_name"] is None
    assert public["company_name"] == NEED_BODY["company_name"]


def test_the_audit_trail_is_paginated_and_filtered_for_admins_and_operators(seeds: Api) -> None:
    first = register(seeds, "seeds")
    register(seeds, "seeds")
    seeds.client.patch(f"/v1/seeds/{first['id']}", headers=if_match(1), json={"trl": 9})

    page = seeds.client.get("/v1/audit", headers=operator(seeds), params={"limit": 2}).json()
    rest = seeds.client.get("/v1/audit", headers=ADMIN, params={"limit": 2, "cursor": page["next_cursor"]}).json()
    only_first = seeds.client.get("/v1/audit", headers=ADMIN, params={"entity_id": first["id"]}).json()
    updates = seeds.client.get("/v1/audit", headers=ADMIN, params={"action": "updated"}).json()

    assert [e["action"] for e in page["items"] + rest["items"]] == ["created", "created", "updated"]
    assert rest["next_cursor"] is None
    assert [e["version_after"] for e in only_first["items"]] == [1, 2]
    assert [e["entity_id"] for e in updates["items"]] == [first["id"]]
    assert only_first["items"][1]["details"] == {"changed_fields": ["trl"]}
