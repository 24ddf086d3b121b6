"""Who may do what, per role and endpoint: admins everything; operators read everything and change
nothing; an office registers and edits its own prefecture's profiles and sees its own confidential
needs; partners read public and members data only. Another office's confidential need (or draft) is
unreachable by id, list, filter, sort or search. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from tests.api_harness import ADMIN, Api
from tests.factories import NEED_BODY, SEED_BODY
from tests.registry_support import if_match, office, operator, partner, register

ROLES = ["admin", "operator", "own office", "other office", "partner"]


def principal(api: Api, role: str, own: str, other: str) -> dict[str, str]:
    return {
        "admin": ADMIN, "operator": operator(api), "own office": office(api, own),
        "other office": office(api, other), "partner": partner(api),
    }[role]


# ---- seeds ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "create", "read", "change"),
    [
        ("admin", 201, 200, 200),
        ("operator", 403, 200, 403),
        ("own office", 201, 200, 200),
        ("other office", 403, 200, 403),
        ("partner", 403, 200, 403),
    ],
)
def test_seed_endpoints_per_role(seeds: Api, role: str, create: int, read: int, change: int) -> None:
    who = principal(seeds, role, own="01", other="13")
    seed = register(seeds, "seeds")
    url = f"/v1/seeds/{seed['id']}"

    assert seeds.client.post("/v1/seeds", headers=who, json=SEED_BODY).status_code == create
    assert seeds.client.get(url, headers=who).status_code == read
    assert seeds.client.patch(url, headers=if_match(1, who), json={"trl": 2}).status_code == change
    version = 2 if change == 200 else 1
    status = seeds.client.post(f"{url}/status", headers=if_match(version, who), json={"status": "paused"})
    assert status.status_code == change
    version += 1 if change == 200 else 0
    assert seeds.client.delete(url, headers=if_match(version, who)).status_code == change


@pytest.mark.parametrize("role", ROLES)
def test_a_draft_seed_is_seen_only_by_admins_operators_and_its_own_office(seeds: Api, role: str) -> None:
    who = principal(seeds, role, own="01", other="13")
    draft = register(seeds, "seeds", status="draft", title="未公開の熱電シート")
    published = register(seeds, "seeds")
    may_see = role in ("admin", "operator", "own office")

    assert seeds.client.get(f"/v1/seeds/{draft['id']}", headers=who).status_code == (200 if may_see else 404)
    listed = seeds.client.get("/v1/seeds", headers=who, params={"q": "熱電"}).json()["items"]
    assert [s["id"] for s in listed] == ([draft["id"], published["id"]] if may_see else [published["id"]])


def test_an_office_cannot_move_its_seed_to_another_prefecture(seeds: Api) -> None:
    hokkaido = office(seeds, "01")
    seed = register(seeds, "seeds", headers=hokkaido)

    moved = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1, hokkaido), json={"prefecture": "13"})
    by_admin = seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"prefecture": "13"})

    assert moved.status_code == 403
    assert by_admin.status_code == 200 and by_admin.json()["office_id"] == "office-13"


# ---- needs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "create", "read_public", "read_confidential", "change_public", "change_confidential"),
    [
        ("admin", 201, 200, 200, 200, 200),
        ("operator", 403, 200, 200, 403, 403),
        ("own office", 201, 200, 200, 200, 200),
        ("other office", 403, 200, 404, 403, 404),
        ("partner", 403, 200, 404, 403, 403),
    ],
)
def test_need_endpoints_per_role(
    needs: Api, role: str, create: int, read_public: int, read_confidential: int,
    change_public: int, change_confidential: int,
) -> None:
    who = principal(needs, role, own="13", other="27")
    public = register(needs, "needs", confidentiality="public")
    secret = register(needs, "needs", confidentiality="confidential")

    assert needs.client.post("/v1/needs", headers=who, json=NEED_BODY).status_code == create
    for need, read, change in ((public, read_public, change_public), (secret, read_confidential, change_confidential)):
        url = f"/v1/needs/{need['id']}"
        assert needs.client.get(url, headers=who).status_code == read
        assert needs.client.patch(url, headers=if_match(1, who), json={"timeline_months": 4}).status_code == change
        version = 2 if change == 200 else 1
        status = needs.client.post(f"{url}/status", headers=if_match(version, who), json={"status": "paused"})
        assert status.status_code == change
        version += 1 if change == 200 else 0
        assert needs.client.delete(url, headers=if_match(version, who)).status_code == change


def test_a_hidden_need_answers_exactly_as_a_missing_one(needs: Api) -> None:
    secret = register(needs, "needs", confidentiality="confidential")
    osaka = office(needs, "27")

    missing_id = "need_0000000000000000000000000000"
    for method, suffix, body in (("get", "", None), ("patch", "", {"title": "x"}),
                                 ("post", "/status", {"status": "paused"}), ("delete", "", None)):
        hidden = needs.client.request(method, f"/v1/needs/{secret['id']}{suffix}", headers=if_match(1, osaka),
                                      json=body)
        missing = needs.client.request(method, f"/v1/needs/{missing_id}{suffix}", headers=if_match(1, osaka),
                                       json=body)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(secret["id"], missing_id) == missing.text  # only the id asked for differs


SECRET_WORD = "極秘合金"


def outsider_views(needs: Api, role: str) -> dict[str, str]:
    return office(needs, "27") if role == "other office" else partner(needs)


@pytest.mark.parametrize("role", ["other office", "partner"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": SECRET_WORD},
        {"q": "排熱"},
        {"prefecture": "13"},
        {"block": "kanto"},
        {"fields": "energy"},
        {"status": "open"},
        {"company_size": "sme"},
        {"wanted_forms": "license"},
        {"updated_since": "2000-01-01T00:00:00Z"},
        {"sort": "-updated_at"},
        {"sort": "title"},
    ],
)
def test_no_list_filter_sort_or_search_reaches_another_offices_confidential_need(
    needs: Api, role: str, params: dict[str, str]
) -> None:
    register(needs, "needs", confidentiality="confidential", title=f"{SECRET_WORD}の排熱を使いたい",
             description=f"{SECRET_WORD}を溶かす工程の排熱。")
    register(needs, "needs", status="draft", title="下書きの排熱ニーズ")
    who = outsider_views(needs, role)

    page = needs.client.get("/v1/needs", headers=who, params={**params, "limit": 1})

    assert page.status_code == 200, page.text
    assert page.json() == {"items": [], "next_cursor": None}  # not even a cursor hints at a hidden need


@pytest.mark.parametrize("role", ["admin", "operator", "own office"])
def test_those_who_may_see_a_confidential_need_find_it_by_its_text(needs: Api, role: str) -> None:
    secret = register(needs, "needs", confidentiality="confidential", description=f"{SECRET_WORD}を溶かす工程の排熱。")
    who = principal(needs, role, own="13", other="27")

    found = needs.client.get("/v1/needs", headers=who, params={"q": SECRET_WORD}).json()["items"]

    assert [n["id"] for n in found] == [secret["id"]] and found[0]["company_name"] == NEED_BODY["company_name"]


def test_a_partner_never_receives_a_members_level_company_name(needs: Api) -> None:
    members = register(needs, "needs", confidentiality="members")
    public = register(needs, "needs", confidentiality="public")
    bank = partner(needs)
    name = NEED_BODY["company_name"]

    read = needs.client.get(f"/v1/needs/{members['id']}", headers=bank).json()
    listed = needs.client.get("/v1/needs", headers=bank).json()["items"]
    searched = needs.client.get("/v1/needs", headers=bank, params={"q": "排熱"}).json()["items"]
    by_name = needs.client.get("/v1/needs", headers=bank, params={"q": name}).json()["items"]

    assert read["company_name"] is None
    assert {n["id"]: n["company_name"] for n in listed} == {members["id"]: None, public["id"]: name}
    assert {n["id"]: n["company_name"] for n in searched} == {members["id"]: None, public["id"]: name}
    assert by_name == []  # company names are not searchable text
    assert json.dumps(read, ensure_ascii=False).count(name) == 0


# ---- the audit trail --------------------------------------------------------------------------------------


AUDIT_READERS = [("admin", 200), ("operator", 200), ("own office", 403), ("other office", 403), ("partner", 403)]


@pytest.mark.parametrize(("role", "expected"), AUDIT_READERS)
def test_the_seeds_audit_trail_is_for_admins_and_operators(seeds: Api, role: str, expected: int) -> None:
    assert seeds.client.get("/v1/audit", headers=principal(seeds, role, own="01", other="13")).status_code == expected


@pytest.mark.parametrize(("role", "expected"), AUDIT_READERS)
def test_the_needs_audit_trail_is_for_admins_and_operators(needs: Api, role: str, expected: int) -> None:
    assert needs.client.get("/v1/audit", headers=principal(needs, role, own="13", other="27")).status_code == expected


# ---- idempotency keys are per caller ------------------------------------------------------------------------


def test_an_idempotency_key_replays_only_for_the_key_that_used_it(needs: Api) -> None:
    tokyo = office(needs, "13")
    first = needs.client.post("/v1/needs", headers={**tokyo, "Idempotency-Key": "k-1"}, json=NEED_BODY)
    by_admin = needs.client.post("/v1/needs", headers={**ADMIN, "Idempotency-Key": "k-1"}, json=NEED_BODY)
    by_osaka = needs.client.post("/v1/needs", headers={**office(needs, "27"), "Idempotency-Key": "k-1"},
                                 json=NEED_BODY)

    assert first.status_code == by_admin.status_code == 201 and by_admin.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in by_admin.headers
    assert by_osaka.status_code == 403

