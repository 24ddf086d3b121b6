"""Profiles go stale: past ``expires_on`` an open profile becomes ``expired`` (no longer matched), with an
``expired`` event for the matcher and the owner office, and an audit record. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from types import SimpleNamespace

from services.needs.domain import NEEDS
from services.seeds.domain import SEEDS
from shared.reference import today_in_japan
from shared.registry import expire_due, expiry_sweep
from tests.api_harness import ADMIN, Api
from tests.registry_support import audit_records, if_match, outbox_events, register

TODAY = date(2026, 11, 26)


def test_today_is_the_date_in_japan() -> None:
    assert today_in_japan(datetime(2026, 3, 31, 14, 59, tzinfo=UTC)) == date(2026, 3, 31)
    assert today_in_japan(datetime(2026, 3, 31, 15, 0, tzinfo=UTC)) == date(2026, 4, 1)


def test_open_profiles_past_their_last_day_expire_with_an_event_and_an_audit_record(seeds: Api) -> None:
    stale = register(seeds, "seeds", title="期限切れ", expires_on="2026-11-25")
    last_day = register(seeds, "seeds", title="今日まで", expires_on="2026-11-26")
    paused = register(seeds, "seeds", title="休止中", expires_on="2026-01-01", status="paused")
    register(seeds, "seeds", title="期限なし")

    assert expire_due(seeds.db, SEEDS, TODAY) == 1

    read = {s["id"]: s for s in seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]}
    assert read[stale["id"]]["status"] == "expired" and read[stale["id"]]["version"] == 2
    assert read[last_day["id"]]["status"] == "open" and read[paused["id"]]["status"] == "paused"
    event = outbox_events(seeds)[-1]
    assert event["type"] == "jp.matchnet.seed.expired.v1" and event["subject"] == stale["id"]
    assert event["data"]["seed"]["status"] == "expired" and event["data"]["seed"]["version"] == 2
    assert event["data"]["previous_status"] == "open" and event["data"]["seed"]["office_id"] == "office-01"
    record = audit_records(seeds)[-1]
    assert (record.action, record.actor_key_id, record.actor_role) == ("expired", "system:expiry-sweep", "system")
    assert (record.version_before, record.version_after) == (1, 2)
    assert record.details["expires_on"] == "2026-11-25"
    assert expire_due(seeds.db, SEEDS, TODAY) == 0  # nothing twice


def test_the_sweep_works_through_many_profiles_in_batches(needs: Api) -> None:
    for _ in range(5):
        register(needs, "needs", expires_on="2026-01-31")

    assert expire_due(needs.db, NEEDS, TODAY, batch_size=2) == 5
    assert {n["status"] for n in needs.client.get("/v1/needs", headers=ADMIN).json()["items"]} == {"expired"}


def test_a_confidential_needs_expired_event_carries_no_company_name(needs: Api) -> None:
    register(needs, "needs", confidentiality="confidential", expires_on="2026-01-31")
    expire_due(needs.db, NEEDS, TODAY)

    event = outbox_events(needs)[-1]
    assert event["type"] == "jp.matchnet.need.expired.v1" and event["data"]["need"]["company_name"] is None


def test_an_expired_profile_reopens_only_with_a_later_expiry_and_may_be_closed(seeds: Api) -> None:
    first = register(seeds, "seeds", expires_on="2026-01-31")
    second = register(seeds, "seeds", expires_on="2026-01-31")
    expire_due(seeds.db, SEEDS, TODAY)

    def to(seed: dict, status: str, version: int) -> int:
        return seeds.client.post(f"/v1/seeds/{seed['id']}/status", headers=if_match(version),
                                 json={"status": status}).status_code

    assert to(first, "open", 2) == 409
    seeds.client.patch(f"/v1/seeds/{first['id']}", headers=if_match(2), json={"expires_on": "2099-12-31"})
    assert to(first, "open", 3) == 200
    assert to(second, "closed", 2) == 200
    assert to(second, "expired", 3) == 409


async def test_the_registry_service_sweeps_in_the_background(seeds: Api) -> None:
    stale = register(seeds, "seeds", expires_on="2020-01-01")
    sweep = asyncio.create_task(expiry_sweep(SEEDS, interval_s=0.05)(SimpleNamespace(db=seeds.db)))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            while seeds.client.get(f"/v1/seeds/{stale['id']}", headers=ADMIN).json()["status"] != "expired":
                await asyncio.sleep(0.02)
    finally:
        sweep.cancel()
