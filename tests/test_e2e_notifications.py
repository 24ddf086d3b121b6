"""Notifications as a process behind the real broker: pairing events published to
``matchnet.pairings`` reach scripted HTTP receivers on 127.0.0.1 (that answer 200, 500, 410, time
out, cut the connection, answer slowly, go away and come back), the stream, and survive a SIGKILL
of the service in the middle of a backlog."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook

from matchnet.network import LocalNetwork
from services.notifications.models import TABLES, Delivery, DeliveryStatus
from shared.db import Database
from shared.events import Envelope, EventType, Explanation, NeedSummary, Pairing, PairingsProposed, SeedSummary
from shared.kafka import EventPublisher
from shared.service import COMMON_TABLES
from tests.e2e_support import (
    Answer,
    ScriptedReceiver,
    postgres_admin_url,
    postgres_databases,
    scripted_receivers,
    wait_for,
)

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0
QUIET_PERIOD_S = 1.0  # long enough for a delivery that should not happen to show up
SHORT_SCHEDULE = {  # seconds, not hours: a recovering receiver gets its deliveries within the test
    "MATCHNET_NOTIFICATIONS_DELIVERY_TIMEOUT_S": "1",
    "MATCHNET_NOTIFICATIONS_DELIVERY_BACKOFF_BASE_S": "0.05",
    "MATCHNET_NOTIFICATIONS_DELIVERY_BACKOFF_CAP_S": "0.5",
    "MATCHNET_NOTIFICATIONS_DELIVERY_MAX_ATTEMPTS": "60",
    "MATCHNET_NOTIFICATIONS_DELIVERY_POLL_INTERVAL_S": "0.1",
    "MATCHNET_NOTIFICATIONS_DELIVERY_LEASE_S": "2",
    "MATCHNET_NOTIFICATIONS_STREAM_KEEPALIVE_S": "1",
}


def pairings_event(need_id: str, office_id: str = "office-13") -> Envelope:
    pairing = Pairing(
        pairing_id=f"pair_{need_id}", rank=1, score=0.7,
        seed=SeedSummary(id="seed_1", title="熱電変換シート", owner_org="北海道工業大学", owner_type="university",
                         prefecture="01", offers=["license"], fields=["energy"]),
        need=NeedSummary(id=need_id, title="工場の排熱を有効活用したい", prefecture=office_id[-2:], office_id=office_id,
                         company_size="sme", confidentiality="public", fields=["energy"]),
        explanation=Explanation(shared_terms=["排熱"], shared_fields=["energy"]),
    )
    proposed = PairingsProposed(office_id=office_id, trigger_kind="need", trigger_id=need_id, pairings=[pairing])
    return Envelope.wrap(EventType.pairings_proposed, "/matchnet/matcher", office_id, proposed)


def publish(network: LocalNetwork, *envelopes: Envelope) -> None:
    async def send() -> None:
        publisher = EventPublisher(network.bootstrap_servers, client_id="test-pairings")
        try:
            for envelope in envelopes:
                await publisher.publish(envelope)
        finally:
            await publisher.stop()

    asyncio.run(send())


@contextmanager
def notifications_network(tmp_path: Path, database_url: str | None = None, **env: str) -> Iterator[LocalNetwork]:
    network = LocalNetwork(
        data_dir=tmp_path / "data", free_ports=True, services=("notifications",), log_dir=tmp_path / "logs",
        database_urls={"notifications": database_url} if database_url else None,
        env={**SHORT_SCHEDULE, **env},
    )
    try:
        network.start()
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with notifications_network(tmp_path_factory.mktemp("notifications")) as net:
        yield net


@pytest.fixture
def receivers() -> Iterator[Callable[..., ScriptedReceiver]]:
    with scripted_receivers() as start:
        yield start


def client(network: LocalNetwork, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=network.urls["notifications"], timeout=10.0,
                        headers={"Authorization": f"Bearer {key or network.admin_key}"})


def subscribe(network: LocalNetwork, url: str, **body: Any) -> dict[str, Any]:
    with client(network) as api:
        response = api.post("/v1/subscriptions", json={"kind": "office", "office_id": "office-13", **body, "url": url})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries_of(network: LocalNetwork, subscription_id: str) -> list[dict[str, Any]]:
    with client(network) as api:
        response = api.get("/v1/deliveries", params={"subscription_id": subscription_id, "limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def check_signatures(secret: str, receiver: ScriptedReceiver) -> None:
    for arrival in receiver.received():
        Webhook(secret).verify(arrival.body, arrival.headers)  # raises if forged or stale


def one_webhook_id_per_event(receiver: ScriptedReceiver) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for arrival in receiver.received():
        ids[arrival.event["id"]].add(arrival.headers["webhook-id"])
    assert all(len(webhook_ids) == 1 for webhook_ids in ids.values()), ids
    return ids


def test_every_pairing_reaches_each_receiver_once_or_eventually_and_never_a_paused_or_deleted_one(
    network: LocalNetwork, receivers: Callable[..., ScriptedReceiver]
) -> None:
    behaviours = {
        "healthy": receivers(),
        "slow": receivers(then=Answer(delay_s=0.4)),  # slow, but within the 1 s timeout
        "failing then ok": receivers(500, 503, then=200),
        "timing out then ok": receivers(Answer(delay_s=2.5), then=200),
        "cutting the connection then ok": receivers(Answer(close=True), Answer(close=True), then=200),
        "away and back": receivers(),
    }
    behaviours["away and back"].stop()
    gone, paused, deleted = receivers(410), receivers(), receivers()
    secrets = {name: subscribe(network, r.url)["secret"] for name, r in behaviours.items()}
    gone_subscription = subscribe(network, gone.url)
    with client(network) as api:
        paused_id = subscribe(network, paused.url)["id"]
        assert api.patch(f"/v1/subscriptions/{paused_id}", json={"status": "paused"}).status_code == 200
        deleted_id = subscribe(network, deleted.url)["id"]
        assert api.delete(f"/v1/subscriptions/{deleted_id}").status_code == 200
    events = [pairings_event(f"need_e2e_{n}") for n in range(4)]
    publish(network, *events)
    wanted = {e.id for e in events}

    for name, receiver in behaviours.items():
        if name != "away and back":
            wait_for(lambda r=receiver: r.event_ids() == wanted, DEADLINE_S, f"every event at the {name} receiver")
    away = behaviours["away and back"]
    assert away.received() == []
    away.start()  # back on the same port
    wait_for(lambda: away.event_ids() == wanted, DEADLINE_S, "every event once the receiver is back")
    time.sleep(QUIET_PERIOD_S)  # not waiting for a thing: giving a duplicate the time to show up

    for name in ("healthy", "slow"):  # exactly once each
        assert sorted(a.event["id"] for a in behaviours[name].received()) == sorted(wanted), name
    for name, receiver in behaviours.items():
        check_signatures(secrets[name], receiver)
        one_webhook_id_per_event(receiver)
    with client(network) as api:
        assert api.get(f"/v1/subscriptions/{gone_subscription['id']}").json()["status"] == "disabled"
    # Only what was already in flight beside the first 410 (at most the per-subscription concurrency).
    assert 1 <= len(gone.received()) <= 4
    assert paused.received() == [] and deleted.received() == []
    before = len(gone.received())
    publish(network, pairings_event("need_e2e_after"))
    wait_for(lambda: behaviours["healthy"].event_ids() > wanted, DEADLINE_S, "the next event at a healthy receiver")
    time.sleep(QUIET_PERIOD_S)
    assert len(gone.received()) == before and paused.received() == [] and deleted.received() == []
    assert {d["status"] for d in deliveries_of(network, paused_id)} == {"pending"}


def test_redeliver_and_replay_send_again_with_the_same_webhook_id_and_rotation_keeps_old_verifiers(
    network: LocalNetwork, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = subscribe(network, receiver.url, office_id="office-27")
    since = time.time()
    first, second = pairings_event("need_rr_1", "office-27"), pairings_event("need_rr_2", "office-27")
    publish(network, first, second)
    wait_for(lambda: receiver.event_ids() == {first.id, second.id}, DEADLINE_S, "both events")
    original = one_webhook_id_per_event(receiver)

    with client(network) as api:
        rotated = api.post(f"/v1/subscriptions/{created['id']}:rotate-secret", json={"overlap_s": 600}).json()
        [delivery] = [d for d in deliveries_of(network, created["id"]) if d["event_id"] == first.id]
        assert api.post(f"/v1/deliveries/{delivery['id']}:redeliver").status_code == 202
        wait_for(lambda: len(receiver.received()) == 3, DEADLINE_S, "the redelivery")
        since_text = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(since - 1))
        replay = api.post(f"/v1/subscriptions/{created['id']}:replay", params={"since": since_text})
        assert replay.status_code == 202 and replay.json()["queued"] == 2, replay.text
        wait_for(lambda: len(receiver.received()) == 5, DEADLINE_S, "the replay")

    assert one_webhook_id_per_event(receiver) == original  # every resend carries the original webhook-id
    for arrival in receiver.received()[2:]:  # signed with both secrets: old verifiers keep working
        Webhook(created["secret"]).verify(arrival.body, arrival.headers)
        Webhook(rotated["secret"]).verify(arrival.body, arrival.headers)


def read_events(response: httpx.Response, count: int) -> list[tuple[int, dict[str, Any]]]:
    """Read ``count`` events off an open event stream."""
    events: list[tuple[int, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                events.append((int(fields["id"]), json.loads(fields["data"])))
                if len(events) == count:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def test_the_stream_resumes_after_a_dropped_connection_without_gap_or_duplicate(network: LocalNetwork) -> None:
    with client(network) as api:
        issued = api.post("/v1/api-keys", json={"role": "partner", "partner_id": "portal-kanto"}).json()
    partner_key = issued["api_key"]
    events = [pairings_event(f"need_sse_{n}", "office-14") for n in range(6)]
    elsewhere = pairings_event("need_sse_kinki", "office-27")  # outside the partner's filter

    with client(network, partner_key) as api:
        with api.stream("GET", "/v1/stream", params={"block": "kanto"}) as first_connection:
            assert first_connection.status_code == 200
            assert first_connection.headers["content-type"].startswith("text/event-stream")
            publish(network, events[0], elsewhere, events[1], events[2])
            first = read_events(first_connection, 3)
        # the connection dropped; more events happen meanwhile
        publish(network, *events[3:])
        with api.stream("GET", "/v1/stream", params={"block": "kanto"},
                        headers={"Last-Event-ID": str(first[-1][0])}) as second_connection:
            rest = read_events(second_connection, 3)

    assert [event["id"] for _, event in first + rest] == [e.id for e in events]
    ids = [n for n, _ in first + rest]
    assert ids == sorted(set(ids))  # increasing, none twice


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_service_killed_mid_backlog_resumes_it_with_nothing_lost_and_nothing_recorded_sent_again(
    backend: str, tmp_path: Path, receivers: Callable[..., ScriptedReceiver]
) -> None:
    if backend == "postgres":
        admin_url = postgres_admin_url()
        if admin_url is None:
            pytest.skip("MATCHNET_TEST_POSTGRES_URL is not set (.ci/run sets it when PostgreSQL answers)")
        with postgres_databases(admin_url, services=("notifications",)) as urls:
            _kill_mid_backlog(tmp_path, receivers, urls["notifications"])
    else:
        _kill_mid_backlog(tmp_path, receivers, None)


def _kill_mid_backlog(
    tmp_path: Path, receivers: Callable[..., ScriptedReceiver], database_url: str | None
) -> None:
    receiver = receivers(then=Answer(delay_s=0.3))
    events = [pairings_event(f"need_kill_{n}") for n in range(16)]
    with notifications_network(tmp_path, database_url,
                               MATCHNET_NOTIFICATIONS_DELIVERY_CONCURRENCY_PER_SUBSCRIPTION="2") as network:
        created = subscribe(network, receiver.url)
        publish(network, *events)
        wait_for(lambda: len(deliveries_of(network, created["id"])) == len(events), DEADLINE_S,
                 "every event recorded as a delivery")
        wait_for(lambda: len(receiver.received()) >= 3, DEADLINE_S, "the backlog being sent")

        network.stop_service("notifications", kill=True)  # SIGKILL, mid-backlog
        killed_at = time.monotonic()
        recorded = succeeded_deliveries(network.database_urls["notifications"])
        assert 0 < len(recorded) < len(events), "the kill did not land in the middle of the backlog"
        network.start_service("notifications")

        wait_for(lambda: receiver.event_ids() == {e.id for e in events}, DEADLINE_S, "every event after the restart")
        wait_for(lambda: {d["status"] for d in deliveries_of(network, created["id"])} == {"succeeded"},
                 DEADLINE_S, "every delivery recorded as succeeded")

    check_signatures(created["secret"], receiver)
    one_webhook_id_per_event(receiver)  # a repeat of an unrecorded attempt carries the same webhook-id
    sent_again = [a.headers["webhook-id"] for a in receiver.received()
                  if a.at > killed_at and a.headers["webhook-id"] in recorded]
    assert sent_again == []  # an acknowledged and recorded attempt is never sent again


def succeeded_deliveries(database_url: str) -> set[str]:
    db = Database(database_url, [*COMMON_TABLES, *TABLES])
    try:
        with db.session() as session:
            return set(session.exec(
                select(Delivery.id).where(col(Delivery.status) == DeliveryStatus.succeeded.value)
            ).all())
    finally:
        db.dispose()
