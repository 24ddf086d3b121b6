"""API keys: stored only as hashes, issued and revoked by admins at the registry (notifications),
replicated to every service by key events and by a load over HTTP, and never written to a log."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import col, select

from services.seeds.app import create_app as create_seeds_app
from services.seeds.settings import SeedsSettings
from shared import apikeys
from shared.apikeys import ApiKeyReplica, RegistryUnavailable, load_api_keys, store_entries
from shared.auth import ApiKey, Role, hash_secret, new_api_key, split_api_key, verify_api_key
from shared.db import Database
from shared.events import ApiKeyEntry, Envelope, Topic
from shared.outbox import OutboxEvent
from tests.api_harness import ADMIN, ADMIN_KEY, Api, deliver_key_events, key_registry, route_harness
from tests.factories import SEED_BODY


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Api]:
    with key_registry(tmp_path) as api:
        yield api


@pytest.fixture
def seeds(tmp_path: Path) -> Iterator[Api]:
    settings = SeedsSettings(database_url=f"sqlite:///{tmp_path / 'seeds.db'}", bootstrap_admin_key=ADMIN_KEY)
    with route_harness(create_seeds_app, settings) as api:
        yield api


def issue(registry: Api, **body: Any) -> dict[str, Any]:
    response = registry.client.post("/v1/api-keys", headers=ADMIN, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def secret_of(key: str) -> str:
    parts = split_api_key(key)
    assert parts is not None, key
    return parts[1]


def everything_stored(api: Api, tmp_path: Path) -> str:
    """Every row of every table, and the raw bytes of the database files, as text."""
    with api.db.engine.connect() as connection:
        tables = [row[0] for row in connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        rows = [repr(row) for table in tables for row in connection.execute(text(f'SELECT * FROM "{table}"'))]
    files = [path.read_bytes().decode("latin-1") for path in tmp_path.glob("*.db*")]
    return "\n".join(rows + files)


def key_events(api: Api) -> list[Envelope]:
    with api.db.session() as session:
        rows = session.exec(
            select(OutboxEvent).where(col(OutboxEvent.topic) == Topic.api_keys.value).order_by(col(OutboxEvent.seq))
        ).all()
        return [Envelope.model_validate_json(row.envelope) for row in rows]


# ---- the registry ----------------------------------------------------------------------------


def test_an_issued_key_is_shown_once_and_only_the_hash_of_its_secret_is_stored(
    registry: Api, tmp_path: Path
) -> None:
    response = registry.client.post(
        "/v1/api-keys", headers=ADMIN, json={"role": "office", "office_id": "office-13", "label": "東京 窓口"}
    )

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    issued = response.json()
    key = issued["api_key"]
    assert key.startswith(f"mnk_{issued['key_id']}_")
    assert response.headers["location"] == f"/v1/api-keys/{issued['key_id']}"
    assert (issued["role"], issued["office_id"], issued["label"], issued["created_by"]) == (
        "office", "office-13", "東京 窓口", "bootstrap-admin"
    )
    secret = secret_of(key)
    assert len(bytes.fromhex(secret)) == 32  # 256 random bits
    with registry.db.session() as session:
        stored = session.get(ApiKey, issued["key_id"])
        assert stored is not None and stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored_text = everything_stored(registry, tmp_path)
    assert issued["key_id"] in stored_text
    assert secret not in stored_text and key not in stored_text

    shown_again = registry.client.get(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN).json()
    assert "api_key" not in shown_again and "secret_hash" not in shown_again
    assert registry.client.get("/v1/subscriptions", headers=bearer(key)).status_code == 200


def test_key_events_carry_the_hash_to_other_services_never_the_secret(registry: Api) -> None:
    issued = issue(registry, role="partner", partner_id="tlo-hokkaido")
    registry.client.delete(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN)

    events = key_events(registry)

    assert [e.type for e in events] == ["jp.matchnet.apikey.issued.v1", "jp.matchnet.apikey.revoked.v1"]
    assert {e.subject for e in events} == {issued["key_id"]}  # one key, one partition: in order
    secret = secret_of(issued["api_key"])
    for event in events:
        assert event.data["key"]["secret_hash"] == hash_secret(secret)
        assert secret not in event.model_dump_json()
    assert events[0].data["key"]["revoked_at"] is None
    assert events[1].data["key"]["revoked_at"] is not None and events[1].data["revoked_by"] == "bootstrap-admin"


@pytest.mark.parametrize("role", [Role.operator, Role.office, Role.partner])
def test_only_admins_issue_list_read_export_and_revoke_keys(registry: Api, role: Role) -> None:
    target = issue(registry, role="operator")["key_id"]
    caller = registry.key(role, office_id="office-13" if role == Role.office else None,
                          partner_id="bank-1" if role == Role.partner else None)
    calls = [
        ("POST", "/v1/api-keys", {"role": "admin"}),
        ("GET", "/v1/api-keys", None),
        ("GET", f"/v1/api-keys/{target}", None),
        ("GET", "/v1/api-keys:export", None),
        ("DELETE", f"/v1/api-keys/{target}", None),
    ]
    for method, path, body in calls:
        refused = registry.client.request(method, path, headers=caller, json=body)
        assert refused.status_code == 403, (method, path)
        assert refused.headers["content-type"] == "application/problem+json"
        anonymous = registry.client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
    assert registry.client.get(f"/v1/api-keys/{target}", headers=ADMIN).json()["revoked_at"] is None
    assert len(key_events(registry)) == 1  # only the target's issue


def test_admin_keys_issued_by_the_registry_administer_keys_too(registry: Api) -> None:
    admin = bearer(issue(registry, role="admin", label="second admin")["api_key"])
    issued = registry.client.post("/v1/api-keys", headers=admin, json={"role": "operator"})
    assert issued.status_code == 201
    assert issued.json()["created_by"] != "bootstrap-admin"


def test_the_list_pages_filters_by_role_and_revocation_and_never_shows_a_secret_or_hash(registry: Api) -> None:
    offices = [issue(registry, role="office", office_id=f"office-{code}") for code in ("01", "13", "27")]
    partner = issue(registry, role="partner", partner_id="bank-1")
    operator = issue(registry, role="operator")
    registry.client.delete(f"/v1/api-keys/{offices[1]['key_id']}", headers=ADMIN)

    def listed(**params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": 2, **params}
        while True:
            page = registry.client.get("/v1/api-keys", headers=ADMIN, params=params)
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            if not page.json()["next_cursor"]:
                return items
            params["cursor"] = page.json()["next_cursor"]

    everyone = listed()
    assert [k["key_id"] for k in everyone] == [k["key_id"] for k in [*offices, partner, operator]]
    assert {k["key_id"] for k in listed(role="office")} == {k["key_id"] for k in offices}
    assert [k["key_id"] for k in listed(revoked="true")] == [offices[1]["key_id"]]
    assert [k["key_id"] for k in listed(role="office", revoked="false")] == [offices[0]["key_id"], offices[2]["key_id"]]
    body = json.dumps(everyone)
    assert "secret_hash" not in body and "api_key" not in body
    assert not any(secret_of(k["api_key"]) in body for k in [*offices, partner, operator])
    assert registry.client.get("/v1/api-keys?role=root", headers=ADMIN).status_code == 422
    assert registry.client.get("/v1/api-keys?cursor=nope", headers=ADMIN).status_code == 400


def test_a_revoked_key_is_refused_by_the_registry_at_once_and_revoking_again_changes_nothing(registry: Api) -> None:
    issued = issue(registry, role="office", office_id="office-13")
    office = bearer(issued["api_key"])
    assert registry.client.get("/v1/subscriptions", headers=office).status_code == 200

    revoked = registry.client.delete(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None

    refused = registry.client.get("/v1/subscriptions", headers=office)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    again = registry.client.delete(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert [e.type for e in key_events(registry)].count("jp.matchnet.apikey.revoked.v1") == 1
    missing = registry.client.delete("/v1/api-keys/key_0190aaaaaaaaaaaaaaaaaaaaaaaa", headers=ADMIN)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert registry.client.delete("/v1/api-keys/bootstrap-admin", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "office"}, "office_id"),
        ({"role": "office", "office_id": "office-99"}, "office_id"),
        ({"role": "office", "office_id": "office-13", "partner_id": "bank-1"}, "partner_id"),
        ({"role": "partner"}, "partner_id"),
        ({"role": "partner", "partner_id": "bank-1", "office_id": "office-13"}, "office_id"),
        ({"role": "admin", "office_id": "office-13"}, "office_id"),
        ({"role": "operator", "partner_id": "bank-1"}, "partner_id"),
        ({"role": "root"}, "role"),
        ({"role": "admin", "label": "x" * 201}, "label"),
        ({"role": "admin", "expires": "never"}, "expires"),
    ],
)
def test_issuing_checks_the_scope_of_the_role_naming_the_field(registry: Api, body: dict, field: str) -> None:
    response = registry.client.post("/v1/api-keys", headers=ADMIN, json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert registry.client.get("/v1/api-keys", headers=ADMIN).json()["items"] == []
    assert key_events(registry) == []


def test_malformed_and_forged_keys_are_unauthorized(registry: Api) -> None:
    issued = issue(registry, role="operator")
    forged = f"mnk_{issued['key_id']}_{'0' * 64}"
    for key in (forged, "mnk_not-a-key", issued["api_key"][:-1], issued["api_key"] + "0", "Basic x"):
        assert registry.client.get("/v1/subscriptions", headers=bearer(key)).status_code == 401, key
    assert registry.client.get("/v1/subscriptions", headers=bearer(issued["api_key"])).status_code == 200


# ---- every other service ---------------------------------------------------------------------


def test_another_service_accepts_a_key_once_its_event_arrives_and_refuses_it_once_revoked(
    registry: Api, seeds: Api
) -> None:
    issued = issue(registry, role="office", office_id="office-01")
    office = bearer(issued["api_key"])
    assert seeds.client.post("/v1/seeds", headers=office, json=SEED_BODY).status_code == 401  # not yet told

    deliver_key_events(registry, seeds)
    assert seeds.client.post("/v1/seeds", headers=office, json=SEED_BODY).status_code == 201

    registry.client.delete(f"/v1/api-keys/{issued['key_id']}", headers=ADMIN)
    assert seeds.client.get("/v1/seeds", headers=office).status_code == 200  # the propagation window
    deliver_key_events(registry, seeds)  # redelivers the issue too: the inbox skips it
    assert seeds.client.get("/v1/seeds", headers=office).status_code == 401


def test_the_bootstrap_admin_key_works_in_every_service_without_a_stored_row(registry: Api, seeds: Api) -> None:
    assert seeds.client.post("/v1/seeds", headers=ADMIN, json=SEED_BODY).status_code == 201
    assert registry.client.get("/v1/api-keys", headers=ADMIN).status_code == 200
    with seeds.db.session() as session:
        assert session.exec(select(ApiKey)).all() == []


def test_a_revocation_is_never_undone_by_a_late_issue_event_or_an_older_snapshot(database_url: str) -> None:
    db = Database(database_url, [ApiKey])
    db.create_tables()
    try:
        issued = new_api_key()
        entry = ApiKeyEntry(key_id=issued.key_id, role=Role.office, office_id="office-13",
                            secret_hash=issued.secret_hash, created_by="test", created_at=datetime.now(UTC))
        revoked = entry.model_copy(update={"revoked_at": entry.created_at + timedelta(minutes=1)})

        def stored(*entries: ApiKeyEntry) -> None:
            with db.session() as session:
                store_entries(session, list(entries))

        stored(entry)
        principal = verify_api_key(issued.token, db=db, admin_key=None)
        assert principal is not None and (principal.role, principal.office_id) == (Role.office, "office-13")
        stored(revoked)
        stored(entry)  # a redelivered issue event, or a snapshot read before the revocation
        assert verify_api_key(issued.token, db=db, admin_key=None) is None
        stored(revoked.model_copy(update={"revoked_at": entry.created_at + timedelta(minutes=2)}))  # revoked again
        with db.session() as session:
            row = session.get(ApiKey, issued.key_id)
            assert row is not None and row.revoked_at == revoked.revoked_at  # the first revocation stands

        late = new_api_key()  # its revocation arrives first: the later issue event does not revive it
        late_entry = entry.model_copy(update={"key_id": late.key_id, "secret_hash": late.secret_hash})
        stored(late_entry.model_copy(update={"revoked_at": datetime.now(UTC)}))
        stored(late_entry)
        assert verify_api_key(late.token, db=db, admin_key=None) is None
    finally:
        db.dispose()


def registry_client(registry: Api, admin_key: str = ADMIN_KEY) -> httpx.AsyncClient:
    """An HTTP client on the registry's routes, as a replica holds one."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=registry.client.app), base_url="http://registry",
        headers=bearer(admin_key),
    )


async def test_a_service_loads_the_whole_key_list_from_the_registry_page_by_page(
    registry: Api, seeds: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "EXPORT_PAGE_SIZE", 2)
    kept = [issue(registry, role="office", office_id=f"office-{code}") for code in ("01", "13", "47")]
    dropped = [issue(registry, role="partner", partner_id=f"bank-{n}") for n in (1, 2)]
    for key in dropped:
        registry.client.delete(f"/v1/api-keys/{key['key_id']}", headers=ADMIN)

    async with registry_client(registry) as client:
        assert await load_api_keys(seeds.db, client) == 5

    for key in kept:
        assert seeds.client.get("/v1/seeds", headers=bearer(key["api_key"])).status_code == 200
    for key in dropped:
        assert seeds.client.get("/v1/seeds", headers=bearer(key["api_key"])).status_code == 401


async def test_only_an_admin_key_reads_the_list_with_hashes(registry: Api, seeds: Api) -> None:
    operator = issue(registry, role="operator")["api_key"]
    async with registry_client(registry, operator) as client:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await load_api_keys(seeds.db, client)
    assert refused.value.response.status_code == 403


async def test_without_the_registry_a_service_starts_with_the_keys_it_stored_before(
    seeds: Api, caplog: pytest.LogCaptureFixture
) -> None:
    known = seeds.key(Role.operator)
    settings = SeedsSettings(
        database_url=seeds.settings.database_url, bootstrap_admin_key=ADMIN_KEY,
        key_registry_url="http://127.0.0.1:9", key_sync_timeout_s=0.3,  # nothing listens on port 9
    )

    await ApiKeyReplica(settings).load_at_start(seeds.db)

    assert "unavailable" in caplog.text
    assert seeds.client.get("/v1/seeds", headers=known).status_code == 200


async def test_a_refused_credential_is_reported_at_once_not_retried(registry: Api, seeds: Api) -> None:
    operator = issue(registry, role="operator")["api_key"]
    replica = ApiKeyReplica(SeedsSettings(key_registry_api_key=operator, key_sync_timeout_s=30))
    client = registry_client(registry, operator)
    replica.client = lambda: client  # type: ignore[method-assign]  # the registry's routes, in process
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="403"):
        await replica.load(seeds.db, timeout_s=30)
    assert time.monotonic() - started < 5


async def test_no_key_or_secret_is_ever_logged(
    registry: Api, seeds: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = [issue(registry, role="office", office_id="office-13"), issue(registry, role="admin")]
    for key in issued:
        registry.client.get("/v1/subscriptions", headers=bearer(key["api_key"]))
    deliver_key_events(registry, seeds)
    async with registry_client(registry) as client:
        await load_api_keys(seeds.db, client)
    seeds.client.get("/v1/seeds", headers=bearer(issued[0]["api_key"]))
    registry.client.delete(f"/v1/api-keys/{issued[0]['key_id']}", headers=ADMIN)
    deliver_key_events(registry, seeds)
    seeds.client.get("/v1/seeds", headers=bearer(issued[0]["api_key"]))  # refused: 401

    assert caplog.records  # something was logged (SQL, HTTP), just never a key
    for key in issued:
        assert secret_of(key["api_key"]) not in caplog.text
