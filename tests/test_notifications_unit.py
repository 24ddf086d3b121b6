"""Notifications: signing, who gets which pairings, backoff, the API's rules, and the delivery worker
against a real HTTP receiver on 127.0.0.1 (no mocks of the HTTP layer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry import trace
from sqlmodel import SQLModel, col, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifications.app import create_app
from services.notifications.delivery import RESPONSE_BODY_LIMIT, ClaimedDelivery, DeliveryWorker, post_webhook
from services.notifications.domain import (
    AttemptVerdict,
    check_webhook_url,
    judge_attempt,
    new_webhook_secret,
    parse_retry_after,
    retry_delay,
    sign_webhook,
    wanted_pairings,
    webhook_headers,
    webhook_payload,
)
from services.notifications.events import pairings_handler, record_deliveries
from services.notifications.models import (
    TABLES,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from services.notifications.settings import NotificationsSettings
from shared.auth import Role
from shared.db import Database
from shared.errors import Problem
from shared.events import (
    Envelope,
    EventType,
    Explanation,
    NeedSummary,
    Pairing,
    PairingsProposed,
    SeedSummary,
)
from shared.ids import new_id
from shared.reference import CollaborationForm, CompanySize, Confidentiality, OwnerType, office_id_for
from shared.service import COMMON_TABLES
from shared.telemetry import setup_telemetry
from tests.api_harness import ADMIN, ADMIN_KEY, Api, route_harness

RowT = TypeVar("RowT", bound=SQLModel)
NOTIFICATION_TABLES: list[type[SQLModel]] = TABLES


# ---- builders --------------------------------------------------------------------------------


def _pairing(
    rank: int,
    score: float,
    *,
    seed_prefecture: str = "13",
    need_prefecture: str = "13",
    shared_fields: tuple[str, ...] = (),
    seed_fields: tuple[str, ...] = (),
    need_fields: tuple[str, ...] = (),
    confidentiality: Confidentiality = Confidentiality.public,
) -> Pairing:
    return Pairing(
        pairing_id=f"pair_{rank}",
        rank=rank,
        score=score,
        seed=SeedSummary(
            id=f"seed_{rank}", title="排熱を電気に変える熱電変換シート", owner_org="北海道工業大学",
            owner_type=OwnerType.university, prefecture=seed_prefecture, offers=[CollaborationForm.license],
            fields=list(seed_fields),
        ),
        need=NeedSummary(
            id=f"need_{rank}", title="工場の排熱を有効活用したい", prefecture=need_prefecture,
            office_id=office_id_for(need_prefecture), company_size=CompanySize.sme, confidentiality=confidentiality,
            fields=list(need_fields),
        ),
        explanation=Explanation(shared_terms=["排熱"], shared_fields=list(shared_fields)),
    )


def _proposed(office_id: str, *pairings: Pairing) -> PairingsProposed:
    return PairingsProposed(office_id=office_id, trigger_kind="seed", trigger_id="seed_1", pairings=list(pairings))


def _event(proposed: PairingsProposed) -> Envelope:
    return Envelope.wrap(EventType.pairings_proposed, "/matchnet/matcher", proposed.office_id, proposed)


def _subscription(
    kind: str = "office",
    *,
    office_id: str | None = None,
    partner_id: str | None = None,
    filters: dict[str, Any] | None = None,
    url: str = "http://127.0.0.1:9/hook",
    status: str = SubscriptionStatus.active.value,
) -> Subscription:
    now = datetime.now(UTC)
    return Subscription(
        id=new_id("sub"), kind=kind, office_id=office_id, partner_id=partner_id, url=url, filters=filters,
        secret=new_webhook_secret(), status=status, created_at=now, updated_at=now,
    )


def _partner(**filters: Any) -> Subscription:
    return _subscription("partner", partner_id="tlo-1", filters=filters or None)


def _ranks(pairings: list[Pairing] | None) -> list[int] | None:
    return None if pairings is None else [p.rank for p in pairings]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'notifications.db'}", [*COMMON_TABLES, *NOTIFICATION_TABLES])
    database.create_tables()
    yield database
    database.dispose()


# ---- signing ---------------------------------------------------------------------------------


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_webhook_secret()
    body = json.dumps({"type": "jp.matchnet.pairings.proposed.v1", "data": {"title": "排熱"}}, ensure_ascii=False)
    headers = webhook_headers(secret, "msg_1", int(datetime.now(UTC).timestamp()), body.encode())

    assert Webhook(secret).verify(body.encode(), headers) == json.loads(body)
    assert headers["webhook-signature"] == sign_webhook(
        secret, "msg_1", int(headers["webhook-timestamp"]), body.encode()
    )


def test_signature_fails_for_a_tampered_body_or_another_secret() -> None:
    secret = new_webhook_secret()
    headers = webhook_headers(secret, "msg_1", int(datetime.now(UTC).timestamp()), b'{"score":0.5}')

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"score":0.9}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(b'{"score":0.5}', headers)


def test_secret_is_whsec_and_32_random_bytes() -> None:
    import base64

    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != new_webhook_secret()


# ---- who gets which pairings -----------------------------------------------------------------


def test_office_subscription_gets_the_whole_list_of_its_own_office_only() -> None:
    office = _subscription(office_id="office-13")
    proposed = _proposed("office-13", _pairing(1, 0.9), _pairing(2, 0.1, confidentiality=Confidentiality.confidential))

    assert _ranks(wanted_pairings(office, proposed)) == [1, 2]
    assert wanted_pairings(office, _proposed("office-01", _pairing(1, 0.9))) is None


def test_partner_without_filters_gets_every_pairing_but_confidential_needs() -> None:
    proposed = _proposed("office-13", _pairing(1, 0.9), _pairing(2, 0.8, confidentiality=Confidentiality.confidential),
                         _pairing(3, 0.7, confidentiality=Confidentiality.members))

    assert _ranks(wanted_pairings(_partner(), proposed)) == [1, 3]


def test_partner_prefecture_filter_matches_the_seed_or_the_need_prefecture() -> None:
    proposed = _proposed(
        "office-13",
        _pairing(1, 0.9, seed_prefecture="01", need_prefecture="13"),
        _pairing(2, 0.8, seed_prefecture="13", need_prefecture="01"),
        _pairing(3, 0.7, seed_prefecture="13", need_prefecture="13"),
    )

    assert _ranks(wanted_pairings(_partner(prefectures=["01"]), proposed)) == [1, 2]


def test_partner_block_filter_uses_the_regional_block_of_either_side() -> None:
    proposed = _proposed(
        "office-27",
        _pairing(1, 0.9, seed_prefecture="27", need_prefecture="27"),  # kinki / kinki
        _pairing(2, 0.8, seed_prefecture="14", need_prefecture="27"),  # kanto / kinki
    )

    assert _ranks(wanted_pairings(_partner(blocks=["kanto"]), proposed)) == [2]
    assert wanted_pairings(_partner(blocks=["kyushu"]), proposed) is None


def test_partner_field_filter_matches_the_fields_of_the_seed_or_the_need() -> None:
    proposed = _proposed(
        "office-13",
        _pairing(1, 0.9, seed_fields=("energy", "materials"), need_fields=("manufacturing",)),
        _pairing(2, 0.8, seed_fields=("information",), need_fields=("energy",)),
        _pairing(3, 0.7, seed_fields=("information",), need_fields=("ai_data",), shared_fields=()),
    )

    assert _ranks(wanted_pairings(_partner(fields=["energy"]), proposed)) == [1, 2]


def test_partner_min_score_keeps_only_strong_pairings_and_skips_an_event_with_none() -> None:
    proposed = _proposed("office-13", _pairing(1, 0.5), _pairing(2, 0.3), _pairing(3, 0.1))

    assert _ranks(wanted_pairings(_partner(min_score=0.3), proposed)) == [1, 2]
    assert wanted_pairings(_partner(min_score=0.6), proposed) is None


def test_partner_filters_must_all_hold() -> None:
    proposed = _proposed(
        "office-13",
        _pairing(1, 0.9, seed_prefecture="13", seed_fields=("energy",), need_fields=("energy",)),
        _pairing(2, 0.9, seed_prefecture="13", seed_fields=("pharma",), need_fields=("pharma",)),
        _pairing(3, 0.2, seed_prefecture="13", seed_fields=("energy",), need_fields=("energy",)),
    )
    partner = _partner(prefectures=["13"], blocks=["kanto"], fields=["energy"], min_score=0.5)

    assert _ranks(wanted_pairings(partner, proposed)) == [1]


def test_disabled_or_deleted_subscriptions_get_nothing() -> None:
    proposed = _proposed("office-13", _pairing(1, 0.9))
    for status in (SubscriptionStatus.disabled, SubscriptionStatus.deleted):
        assert wanted_pairings(_subscription(office_id="office-13", status=status.value), proposed) is None


def test_payload_is_the_structured_cloudevent_with_only_the_kept_pairings() -> None:
    proposed = _proposed("office-13", _pairing(1, 0.9), _pairing(2, 0.1))
    envelope = _event(proposed)

    payload = json.loads(webhook_payload(envelope, proposed.pairings[:1]))

    assert {k: payload[k] for k in ("id", "type", "source", "specversion", "subject")} == {
        "id": envelope.id, "type": EventType.pairings_proposed.value, "source": "/matchnet/matcher",
        "specversion": "1.0", "subject": "office-13",
    }
    assert [p["pairing_id"] for p in payload["data"]["pairings"]] == ["pair_1"]
    assert payload["data"]["office_id"] == "office-13"


def test_handler_records_one_delivery_per_interested_subscription_and_wakes_after_commit(db: Database) -> None:
    office13, office01 = _subscription(office_id="office-13"), _subscription(office_id="office-01")
    strong_only, kinki = _partner(min_score=0.5), _partner(blocks=["kinki"])
    with db.session() as session:
        session.add_all([office13, office01, strong_only, kinki])
    class RecordingWorker:
        lease = timedelta(seconds=30)

        def __init__(self) -> None:
            self.handed: list[list[ClaimedDelivery]] = []

        def hand_over(self, claimed: list[ClaimedDelivery]) -> None:
            self.handed.append(claimed)

    worker = RecordingWorker()
    handle = pairings_handler(worker)
    envelope = _event(_proposed("office-13", _pairing(1, 0.9), _pairing(2, 0.2)))

    with db.session() as session:
        handle(session, envelope)
        assert worker.handed == []  # not before the commit

    assert [{c.subscription_id for c in claimed} for claimed in worker.handed] == [{office13.id, strong_only.id}]
    with db.session() as session:
        deliveries = {d.subscription_id: d for d in session.exec(select(Delivery)).all()}
    assert set(deliveries) == {office13.id, strong_only.id}
    assert all(d.status == DeliveryStatus.pending and d.id.startswith("msg_") for d in deliveries.values())
    # claimed at birth by the worker they were handed to: no poller takes them during the lease
    assert all(d.next_attempt_at > d.created_at + timedelta(seconds=29) for d in deliveries.values())
    pairings_sent = json.loads(deliveries[strong_only.id].payload)["data"]["pairings"]
    assert [p["rank"] for p in pairings_sent] == [1]
    assert len(json.loads(deliveries[office13.id].payload)["data"]["pairings"]) == 2


# ---- retry schedule --------------------------------------------------------------------------


def test_backoff_is_jittered_between_half_and_all_of_a_doubling_ceiling() -> None:
    rng = random.Random(7)
    for attempts_made in range(1, 9):
        ceiling = 2 ** (attempts_made - 1)
        delays = [retry_delay(attempts_made, rng=rng) for _ in range(300)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)  # the schedule keeps its length
        assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.6  # the whole range is used


def test_backoff_honours_retry_after_and_is_capped_at_a_day() -> None:
    rng = random.Random(7)
    assert all(retry_delay(1, retry_after_s=120, rng=rng) >= 120 for _ in range(50))
    assert retry_delay(1, retry_after_s=7 * 86_400, rng=rng) == 86_400
    assert all(retry_delay(40, rng=rng) <= 86_400 for _ in range(50))


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after(format_datetime(now + timedelta(minutes=2), usegmt=True), now) == 120
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_2xx_delivers_410_disables_and_everything_else_is_retried() -> None:
    assert judge_attempt(200) == judge_attempt(204) == AttemptVerdict.delivered
    assert judge_attempt(410) == AttemptVerdict.gone
    assert {judge_attempt(code) for code in (301, 400, 404, 429, 500, 503, None)} == {AttemptVerdict.retry}


# ---- webhook URL rule ------------------------------------------------------------------------


def test_development_mode_accepts_a_local_http_receiver() -> None:
    check_webhook_url("http://127.0.0.1:9999/hook", development_mode=True)


@pytest.mark.parametrize(
    "url",
    ["http://203.0.113.7/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://192.168.0.10/",
     "https://169.254.169.254/latest", "https://[::1]/hook", "https://localhost/hook", "https://api.localhost/"],
)
def test_production_refuses_plain_http_and_loopback_or_private_targets(url: str) -> None:
    with pytest.raises(Problem) as refused:
        check_webhook_url(url, development_mode=False)
    assert refused.value.status == 422
    assert [e["field"] for e in refused.value.errors or []] == ["url"]


def test_production_checks_where_a_host_name_resolves() -> None:
    check_webhook_url("https://8.8.8.8/hook", development_mode=False)
    check_webhook_url("https://hooks.example.jp/x", development_mode=False, resolve=lambda _: ["93.184.215.14"])
    with pytest.raises(Problem):
        check_webhook_url("https://intranet.example.jp/x", development_mode=False, resolve=lambda _: ["10.0.0.8"])


# ---- the API ---------------------------------------------------------------------------------


def _api(tmp_path: Path, *, development_mode: bool = True) -> Iterator[Api]:
    settings = NotificationsSettings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", bootstrap_admin_key=ADMIN_KEY,
        development_mode=development_mode,
    )
    with route_harness(create_app, settings) as api:
        yield api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from _api(tmp_path)


@pytest.fixture
def production_api(tmp_path: Path) -> Iterator[Api]:
    yield from _api(tmp_path, development_mode=False)


HOOK = "http://127.0.0.1:9999/hook"


def test_office_subscribes_its_own_office_and_sees_the_secret_only_once(api: Api) -> None:
    office13 = api.key(Role.office, office_id="office-13")
    created = api.client.post("/v1/subscriptions", headers=office13,
                              json={"kind": "office", "prefecture": "13", "url": HOOK, "description": "東京"})

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("sub_") and body["secret"].startswith("whsec_")
    assert (body["kind"], body["office_id"], body["status"]) == ("office", "office-13", "active")
    assert created.headers["location"] == f"/v1/subscriptions/{body['id']}"
    read = api.client.get(f"/v1/subscriptions/{body['id']}", headers=office13).json()
    assert "secret" not in read and read["url"] == HOOK
    listed = api.client.get("/v1/subscriptions", headers=office13).json()["items"]
    assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]


def test_office_cannot_subscribe_or_see_another_office(api: Api) -> None:
    office13 = api.key(Role.office, office_id="office-13")
    other = api.client.post("/v1/subscriptions", headers=ADMIN,
                            json={"kind": "office", "office_id": "office-01", "url": HOOK}).json()

    refused = api.client.post("/v1/subscriptions", headers=office13,
                              json={"kind": "office", "office_id": "office-01", "url": HOOK})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert api.client.get(f"/v1/subscriptions/{other['id']}", headers=office13).status_code == 404
    assert api.client.get("/v1/subscriptions", headers=office13).json()["items"] == []
    assert api.client.delete(f"/v1/subscriptions/{other['id']}", headers=office13).status_code == 404


def test_partner_subscribes_only_itself_and_operator_only_watches(api: Api) -> None:
    partner = api.key(Role.partner, partner_id="tlo-1")
    filters = {"prefectures": ["13"], "blocks": ["kanto"], "fields": ["energy"], "min_score": 0.1}

    created = api.client.post("/v1/subscriptions", headers=partner,
                              json={"kind": "partner", "partner_id": "tlo-1", "url": HOOK, "filters": filters})
    assert created.status_code == 201, created.text
    assert created.json()["filters"] == filters
    for body in ({"kind": "partner", "partner_id": "tlo-2", "url": HOOK},
                 {"kind": "office", "office_id": "office-13", "url": HOOK}):
        assert api.client.post("/v1/subscriptions", headers=partner, json=body).status_code == 403
    operator = api.key(Role.operator)
    assert api.client.post("/v1/subscriptions", headers=operator,
                           json={"kind": "partner", "partner_id": "tlo-1", "url": HOOK}).status_code == 403
    assert [s["id"] for s in api.client.get("/v1/subscriptions", headers=operator).json()["items"]] == [
        created.json()["id"]
    ]
    assert api.client.delete(f"/v1/subscriptions/{created.json()['id']}", headers=operator).status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "office", "prefecture": "13", "url": HOOK, "colour": "red"}, "colour"),
        ({"kind": "office", "url": HOOK}, "office_id"),
        ({"kind": "office", "office_id": "office-99", "url": HOOK}, "office_id"),
        ({"kind": "office", "prefecture": "13", "url": HOOK, "filters": {"min_score": 0.2}}, "filters"),
        ({"kind": "partner", "url": HOOK}, "partner_id"),
        ({"kind": "partner", "partner_id": "p", "url": HOOK, "filters": {"blocks": ["atlantis"]}}, "filters.blocks.0"),
        ({"kind": "office", "prefecture": "13", "url": "ftp://example.jp/x"}, "url"),
    ],
)
def test_invalid_subscriptions_are_refused_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    refused = api.client.post("/v1/subscriptions", headers=ADMIN, json=body)

    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]]


def test_production_refuses_a_private_webhook_url(production_api: Api) -> None:
    refused = production_api.client.post("/v1/subscriptions", headers=ADMIN,
                                         json={"kind": "office", "prefecture": "13", "url": HOOK})

    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["url"]


def test_idempotency_key_replays_the_same_subscription_and_secret(api: Api) -> None:
    body = {"kind": "office", "prefecture": "13", "url": HOOK}
    headers = {**ADMIN, "Idempotency-Key": "create-13"}

    first = api.client.post("/v1/subscriptions", headers=headers, json=body)
    again = api.client.post("/v1/subscriptions", headers=headers, json=body)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert api.client.post("/v1/subscriptions", headers=headers, json={**body, "prefecture": "01"}).status_code == 422
    assert len(api.client.get("/v1/subscriptions", headers=ADMIN).json()["items"]) == 1


def test_deleting_a_subscription_cancels_its_pending_deliveries(api: Api) -> None:
    office13 = api.key(Role.office, office_id="office-13")
    created = api.client.post("/v1/subscriptions", headers=office13,
                              json={"kind": "office", "office_id": "office-13", "url": HOOK}).json()
    with api.db.session() as session:
        record_deliveries(session, _event(_proposed("office-13", _pairing(1, 0.9))))

    deliveries = api.client.get("/v1/deliveries", headers=office13).json()["items"]
    assert [(d["subscription_id"], d["status"], d["attempts"]) for d in deliveries] == [
        (created["id"], "pending", [])
    ]
    deleted = api.client.delete(f"/v1/subscriptions/{created['id']}", headers=office13)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    delivery = api.client.get(f"/v1/deliveries/{deliveries[0]['id']}", headers=office13).json()
    assert delivery["status"] == "cancelled" and delivery["next_attempt_at"] is None
    office01 = api.key(Role.office, office_id="office-01")
    assert api.client.get(f"/v1/deliveries/{delivery['id']}", headers=office01).status_code == 404
    assert api.client.get("/v1/deliveries", headers=office01).json()["items"] == []
    with api.db.session() as session:  # and no new event reaches it
        assert record_deliveries(session, _event(_proposed("office-13", _pairing(1, 0.9)))) == []


# ---- the delivery worker against a real receiver ---------------------------------------------


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A tiny HTTP/1.1 server on 127.0.0.1 answering each POST with the next scripted status."""

    statuses: list[int]
    received: list[ReceivedWebhook] = field(default_factory=list)
    url: str = ""

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            headers = {name.lower(): value for name, value in headers.items()}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(ReceivedWebhook(headers, body))
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            writer.write(f"HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Any]:
    servers: list[asyncio.Server] = []

    async def start(*statuses: int) -> WebhookReceiver:
        receiver = WebhookReceiver(list(statuses))
        server = await asyncio.start_server(receiver._answer, "127.0.0.1", 0)
        servers.append(server)
        receiver.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks/matchnet"
        return receiver

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def worker(db: Database) -> AsyncIterator[DeliveryWorker]:
    setup_telemetry("notifications")  # instruments httpx, so the webhook carries the trace
    delivery_worker = DeliveryWorker(db, poll_interval_s=0.02, backoff_base_s=0.01, timeout_s=2.0)
    task = asyncio.create_task(delivery_worker.run())
    yield delivery_worker
    await _stop(task)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    async with asyncio.timeout(5):  # a worker that ignores cancellation fails the test, not hangs it
        await asyncio.gather(task, return_exceptions=True)


def _subscribe_and_propose(db: Database, url: str, worker: DeliveryWorker) -> tuple[Subscription, Delivery]:
    subscription = _subscription(office_id="office-13", url=url)
    with db.session() as session:
        session.add(subscription)
    # As in the consumer: the delivery is recorded inside the span that processes the event.
    with trace.get_tracer(__name__).start_as_current_span("process matchnet.pairings"), db.session() as session:
        pairings_handler(worker)(session, _event(_proposed("office-13", _pairing(1, 0.9))))
    with db.session() as session:
        return subscription, session.exec(select(Delivery)).one()


async def _settled(db: Database, delivery_id: str, timeout_s: float = 5.0) -> Delivery:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        delivery = await asyncio.to_thread(_read, db, Delivery, delivery_id)
        if delivery.status != DeliveryStatus.pending:
            return delivery
        assert asyncio.get_running_loop().time() < deadline, f"delivery still {delivery.status}"
        await asyncio.sleep(0.01)


def _read(db: Database, model: type[RowT], row_id: str) -> RowT:
    with db.session() as session:
        row = session.get(model, row_id)
        assert row is not None
        return row


def _attempts(db: Database, delivery_id: str) -> list[DeliveryAttempt]:
    with db.session() as session:
        return list(session.exec(
            select(DeliveryAttempt).where(col(DeliveryAttempt.delivery_id) == delivery_id)
            .order_by(col(DeliveryAttempt.id))
        ).all())


async def test_worker_retries_a_500_then_succeeds_with_the_same_signed_message(
    db: Database, worker: DeliveryWorker, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(500, 200)
    subscription, delivery = _subscribe_and_propose(db, receiver.url, worker)

    settled = await _settled(db, delivery.id)

    assert (settled.status, settled.attempts) == (DeliveryStatus.succeeded, 2)
    assert [a.status_code for a in _attempts(db, delivery.id)] == [500, 200]
    assert all(a.latency_ms >= 0 and a.error is None for a in _attempts(db, delivery.id))
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.id, delivery.id]
    for request in receiver.received:
        event = Webhook(subscription.secret).verify(request.body, request.headers)
        assert event["type"] == EventType.pairings_proposed.value
        assert request.headers["content-type"] == "application/json"
    # The webhook continues the trace the event arrived with.
    assert delivery.traceparent is not None
    assert receiver.received[-1].headers["traceparent"].split("-")[1] == delivery.traceparent.split("-")[1]


async def test_worker_disables_a_subscription_whose_receiver_answers_410(
    db: Database, worker: DeliveryWorker, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(410)
    subscription, delivery = _subscribe_and_propose(db, receiver.url, worker)

    settled = await _settled(db, delivery.id)

    assert (settled.status, settled.attempts) == (DeliveryStatus.failed, 1)
    assert _read(db, Subscription, subscription.id).status == SubscriptionStatus.disabled
    with db.session() as session:  # and no new event reaches it
        assert record_deliveries(session, _event(_proposed("office-13", _pairing(1, 0.9)))) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_worker_records_refused_connections_and_gives_up_after_the_last_attempt(db: Database) -> None:
    worker = DeliveryWorker(db, poll_interval_s=0.02, backoff_base_s=0.001, max_attempts=3)
    _, delivery = _subscribe_and_propose(db, f"http://127.0.0.1:{_closed_port()}/hook", worker)
    task = asyncio.create_task(worker.run())
    try:
        settled = await _settled(db, delivery.id)
    finally:
        await _stop(task)

    assert (settled.status, settled.attempts) == (DeliveryStatus.dead, 3)
    assert all(a.status_code is None and a.error for a in _attempts(db, delivery.id))


async def test_worker_stops_when_cancelled_even_while_being_woken(db: Database) -> None:
    # On Python 3.11, asyncio.wait_for loses a cancel that arrives as the awaited event is set.
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            worker = DeliveryWorker(db, poll_interval_s=0.02, client=client)
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.002)
            worker.wake()
            await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            assert done, "the worker kept running after it was cancelled"


async def test_a_backlog_for_one_subscription_drains_without_waiting_for_the_poll(
    db: Database, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(*[200] * 12)
    subscription = _subscription(office_id="office-13", url=receiver.url)
    with db.session() as session:
        session.add(subscription)
    with db.session() as session:  # a backlog in the database, as after a restart: nothing handed over
        for i in range(12):
            record_deliveries(session, _event(_proposed("office-13", _pairing(i + 1, 0.9))))
    worker = DeliveryWorker(db, poll_interval_s=30, concurrency_per_subscription=4, timeout_s=2.0)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(5):  # one poll at start; the rest follows as slots free up
            while len(receiver.received) < 12:
                await asyncio.sleep(0.01)
    finally:
        await _stop(task)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 12


# ---- the README's verification examples ------------------------------------------------------


def _readme_function(name: str) -> Any:
    """Run the README's python block that defines ``name`` and return that function."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    [code] = [block for block in blocks if f"def {name}(" in block]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace[name]


@pytest.mark.parametrize("example", ["receive", "verify"])
def test_the_readme_examples_verify_a_delivery_and_refuse_a_forged_one(example: str) -> None:
    check = _readme_function(example)
    old, new = new_webhook_secret(), new_webhook_secret()
    body = webhook_payload(_event(_proposed("office-13", _pairing(1, 0.9))), [_pairing(1, 0.9)]).encode()
    rotating = webhook_headers([new, old], "msg_1", int(datetime.now(UTC).timestamp()), body)

    def accepted(headers: dict[str, str], payload: bytes, secret: str) -> bool:
        try:
            return bool(check(payload, headers, secret))
        except WebhookVerificationError:
            return False

    assert accepted(rotating, body, old) and accepted(rotating, body, new)  # both, during a rotation
    assert not accepted(rotating, body.replace(b"0.9", b"1.0"), new)
    assert not accepted(rotating, body, new_webhook_secret())
    stale = webhook_headers(new, "msg_1", int(datetime.now(UTC).timestamp()) - 3600, body)
    assert not accepted(stale, body, new)


def test_an_office_or_partner_key_that_names_nothing_subscribes_itself(api: Api) -> None:
    office13 = api.key(Role.office, office_id="office-13")
    partner = api.key(Role.partner, partner_id="tlo-1")

    own_office = api.client.post("/v1/subscriptions", headers=office13, json={"url": HOOK, "mode": "daily_digest"})
    own_portal = api.client.post("/v1/subscriptions", headers=partner,
                                 json={"url": HOOK, "filters": {"min_score": 0.3}})
    admin = api.client.post("/v1/subscriptions", headers=ADMIN, json={"url": HOOK})

    assert own_office.status_code == 201, own_office.text
    assert (own_office.json()["kind"], own_office.json()["office_id"], own_office.json()["mode"]) == (
        "office", "office-13", "daily_digest")
    assert (own_portal.json()["kind"], own_portal.json()["partner_id"]) == ("partner", "tlo-1")
    assert admin.status_code == 422 and admin.json()["errors"][0]["field"] == "kind"


async def test_webhooks_to_one_receiver_share_a_kept_alive_connection_and_a_long_answer_closes_it() -> None:
    connections = 0
    answers = [b"ok", b"", b"x" * (RESPONSE_BODY_LIMIT + 1), b"ok"]

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                answer = answers.pop(0)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        async with httpx.AsyncClient() as client:
            statuses = [(await post_webhook(client, url, b"{}", {"content-type": "application/json"}, 2.0))[0]
                        for _ in range(4)]
    finally:
        server.close()
    assert statuses == [200, 200, 200, 200]
    # The first three on one connection; the over-long answer closed it, so the fourth opened another.
    assert connections == 2
