"""Notifications in one process: the routes and the delivery worker over a real database (SQLite, and
PostgreSQL when the tests have one), delivering to real HTTP receivers on 127.0.0.1. No broker: each
pairing event is applied as the consumer would apply it. Retry schedules are short; every wait
polls with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifications.api import FEED, WORKER, event_log_feed
from services.notifications.app import create_app, purge_event_log
from services.notifications.delivery import DeliveryWorker
from services.notifications.digest import DIGEST_EVENT_TYPE, record_due_digests
from services.notifications.domain import Audience, event_view
from services.notifications.events import pairings_handler
from services.notifications.metrics import DeliveryMetrics
from services.notifications.models import TABLES, NotificationEvent, Subscription, SubscriptionFilters
from services.notifications.settings import NotificationsSettings
from services.notifications.stream import event_stream
from shared.auth import Role
from shared.events import (
    EVENT_SCHEMAS,
    PAIRING_EVENT_TYPES,
    Envelope,
    EventType,
    Explanation,
    NeedSummary,
    Pairing,
    PairingsEvent,
    PairingsProposed,
    SeedSummary,
)
from shared.outbox import OutboxEvent
from shared.reference import CollaborationForm, CompanySize, Confidentiality, OwnerType, office_id_for
from tests.api_harness import ADMIN, ADMIN_KEY, Api, route_harness
from tests.e2e_support import Answer, ScriptedReceiver, scripted_receivers

DEADLINE_S = 10.0
SECRET_TEXT = "鋳造ラインの極秘改善計画"  # a confidential need's own words: must never leave its office


# ---- building events -------------------------------------------------------------------------


def pairing(
    need_id: str,
    *,
    score: float = 0.8,
    rank: int = 1,
    seed_id: str = "seed_1",
    need_prefecture: str = "13",
    seed_prefecture: str = "01",
    confidentiality: Confidentiality = Confidentiality.public,
    need_title: str = "工場の排熱を有効活用したい",
    fields: tuple[str, ...] = ("energy",),
) -> Pairing:
    return Pairing(
        pairing_id=f"pair_{seed_id}_{need_id}", rank=rank, score=score,
        seed=SeedSummary(id=seed_id, title="熱電変換シート", owner_org="北海道工業大学",
                         owner_type=OwnerType.university, prefecture=seed_prefecture,
                         offers=[CollaborationForm.license], fields=list(fields)),
        need=NeedSummary(id=need_id, title=need_title, prefecture=need_prefecture,
                         office_id=office_id_for(need_prefecture), company_size=CompanySize.sme,
                         confidentiality=confidentiality, fields=list(fields)),
        explanation=Explanation(shared_terms=["排熱"], shared_fields=list(fields)),
    )


def proposed_for_need(need_id: str, *pairings: Pairing, office_id: str = "office-13") -> Envelope:
    event = PairingsProposed(office_id=office_id, trigger_kind="need", trigger_id=need_id,
                             pairings=list(pairings) or [pairing(need_id)])
    return Envelope.wrap(EventType.pairings_proposed, "/matchnet/matcher", office_id, event)


# ---- the service in this process -------------------------------------------------------------


@dataclass
class Service:
    api: Api
    worker: DeliveryWorker
    settings: NotificationsSettings

    def publish(self, envelope: Envelope) -> None:
        """Apply a pairing event as the consumer does (one transaction, hand-over after commit)."""
        handle = pairings_handler(self.worker, on_logged=event_log_feed(self.runtime).notify)
        with self.api.db.session() as session:
            handle(session, envelope)

    @property
    def runtime(self) -> Any:
        return self.api.client.app.state.runtime  # type: ignore[attr-defined]

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """A request to the routes, off the event loop (the worker keeps running meanwhile)."""
        return await asyncio.to_thread(self.api.client.request, method, path, headers=headers or ADMIN, **kwargs)

    async def subscribe(self, url: str, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        body = {"kind": "office", "office_id": "office-13", **body, "url": url}
        response = await self.call("POST", "/v1/subscriptions", headers, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = self.api.client.get("/v1/deliveries", headers=ADMIN, params={"limit": 200, **filters})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        return self.api.client.get(f"/v1/subscriptions/{subscription_id}", headers=ADMIN).json()


def _settings(database_url: str, **overrides: Any) -> NotificationsSettings:
    values: dict[str, Any] = {
        "database_url": database_url, "bootstrap_admin_key": ADMIN_KEY, "development_mode": True,
        "delivery_timeout_s": 1.0, "delivery_backoff_base_s": 0.02, "delivery_backoff_cap_s": 0.2,
        "delivery_max_attempts": 30, "delivery_poll_interval_s": 0.05, "subscription_disable_after_s": 3600,
        **overrides,
    }
    return NotificationsSettings(**values)


@pytest.fixture
def receivers() -> Iterator[Callable[..., ScriptedReceiver]]:
    with scripted_receivers() as start:
        yield start


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
async def service_factory(
    database_url: str, metric_reader: InMemoryMetricReader
) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[asyncio.Task[None], Any]] = []

    async def start(**overrides: Any) -> Service:
        settings = _settings(database_url, **overrides)
        harness = route_harness(create_app, settings)
        api = harness.__enter__()
        meter = MeterProvider(metric_readers=[metric_reader]).get_meter("test")
        worker = DeliveryWorker.from_settings(api.db, settings)
        worker.metrics = DeliveryMetrics(api.db, meter)
        service = Service(api, worker, settings)
        service.runtime.extras[WORKER] = worker
        service.runtime.extras[FEED] = event_log_feed(service.runtime)
        service.runtime.extras[FEED].bind(asyncio.get_running_loop())
        task = asyncio.create_task(worker.run())
        started.append((task, harness))
        return service

    yield start
    for task, harness in started:
        task.cancel()
        async with asyncio.timeout(5):
            await asyncio.gather(task, return_exceptions=True)
        harness.__exit__(None, None, None)


@pytest.fixture
async def service(service_factory: Callable[..., Any]) -> Service:
    return await service_factory()


async def eventually(condition: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await asyncio.to_thread(condition)
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def quiet(seconds: float = 0.4) -> None:
    """Not waiting for a thing: giving a delivery that should not happen the time to show up."""
    await asyncio.sleep(seconds)


def audience(kind: Any, office_id: str | None = None, **filters: Any) -> Audience:
    return Audience(kind, office_id=office_id, filters=SubscriptionFilters(**filters))


def verified(secret: str, receiver: ScriptedReceiver) -> list[dict[str, Any]]:
    return [Webhook(secret).verify(a.body, a.headers) for a in receiver.received()]


def needs_in(receiver: ScriptedReceiver) -> list[str]:
    return [a.event["data"]["trigger_id"] for a in receiver.received()]


# ---- order, concurrency, failures ------------------------------------------------------------


async def test_a_later_event_for_the_same_need_waits_for_the_earlier_one(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(500, 500, then=200)
    created = await service.subscribe(receiver.url)
    first, second = proposed_for_need("need_a"), proposed_for_need("need_a", pairing("need_a", score=0.9))
    service.publish(first)
    service.publish(second)

    await eventually(lambda: len(receiver.received()) >= 4, "both events delivered")

    assert [a.event["id"] for a in receiver.received()] == [first.id, first.id, first.id, second.id]
    assert [len(set(receiver.webhook_ids()))] == [2]
    assert all(e["data"]["trigger_id"] == "need_a" for e in verified(created["secret"], receiver))


async def test_events_for_other_needs_do_not_wait_behind_a_failing_one(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(*[500] * 6, then=200)
    await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_stuck"))
    await eventually(lambda: receiver.received(), "the first attempt")
    service.publish(proposed_for_need("need_free"))

    await eventually(lambda: "need_free" in needs_in(receiver), "the other need's delivery")
    assert needs_in(receiver).count("need_stuck") < 7  # it did not wait for the stuck one to succeed


async def test_a_slow_or_dead_receiver_never_delays_another_subscription(
    service_factory: Callable[..., Any], receivers: Callable[..., ScriptedReceiver]
) -> None:
    service = await service_factory(delivery_concurrency=8, delivery_concurrency_per_subscription=2)
    hanging = receivers(then=Answer(delay_s=3))  # answers after the 1 s timeout
    healthy = receivers()
    await service.subscribe(hanging.url)
    for n in range(20):  # a backlog that alone could fill every slot
        service.publish(proposed_for_need(f"need_slow_{n}"))
    await eventually(lambda: len(hanging.received()) >= 2, "the hanging receiver busy")
    await service.subscribe(healthy.url, kind="partner", office_id=None, partner_id="tlo-1")

    started = time.monotonic()
    service.publish(proposed_for_need("need_fast"))
    arrival = await eventually(lambda: [a for a in healthy.received()], "the healthy receiver's delivery")

    assert arrival[0].at - started < 0.5
    assert hanging.most_open == 2  # never more than its share of slots at once


async def test_a_refused_timed_out_or_cut_attempt_is_retried_with_the_same_webhook_id(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(Answer(close=True), Answer(delay_s=2), Answer(status=503, headers=(("Retry-After", "0"),)))
    receiver.stop()  # away at first
    created = await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_r"))
    delivery = (await eventually(lambda: service.deliveries(), "the delivery"))[0]
    await eventually(lambda: len(service.deliveries()[0]["attempts"]) >= 2, "refused attempts")
    receiver.start()  # back, on the same port

    await eventually(lambda: service.deliveries()[0]["status"] == "succeeded", "success after recovering")

    attempts = service.deliveries()[0]["attempts"]
    errors = [a["error"] or "" for a in attempts]
    assert any("ConnectError" in e for e in errors)
    assert any("RemoteProtocolError" in e or "ReadError" in e for e in errors)  # the cut connection
    assert any("timed out after 1s" in e for e in errors)
    assert [a["status_code"] for a in attempts][-2:] == [503, 200]
    assert all(a["next_attempt_at"] is not None for a in attempts[:-1]) and attempts[-1]["next_attempt_at"] is None
    assert set(receiver.webhook_ids()) == {delivery["id"]}
    assert len(verified(created["secret"], receiver)) == len(receiver.received())


async def test_retry_after_holds_the_next_attempt_back(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(Answer(status=429, headers=(("Retry-After", "1"),)), then=200)
    await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_later"))

    await eventually(lambda: len(receiver.received()) == 2, "the attempt after the Retry-After")

    first, second = receiver.received()
    assert second.at - first.at >= 0.95  # not the 0.02 s the schedule alone would wait
    # The receiver has the second POST a moment before the worker records its attempt.
    await eventually(lambda: len(service.deliveries()[0]["attempts"]) == 2, "the second attempt recorded")
    [attempt, _] = service.deliveries()[0]["attempts"]
    waited = datetime.fromisoformat(attempt["next_attempt_at"]) - datetime.fromisoformat(attempt["attempted_at"])
    assert waited >= timedelta(seconds=1)


async def test_410_disables_the_subscription_and_tells_the_operators(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(410)
    created = await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_gone"))

    await eventually(lambda: service.subscription(created["id"])["status"] == "disabled", "the subscription disabled")
    service.publish(proposed_for_need("need_after"))
    await quiet()

    assert service.subscription(created["id"])["disabled_reason"] == "gone"
    assert [d["status"] for d in service.deliveries()] == ["failed"]
    assert len(receiver.received()) == 1
    disabled = operator_events(service)
    assert [(e.data["subscription"]["id"], e.data["reason"]) for e in disabled] == [(created["id"], "gone")]


def operator_events(service: Service) -> list[Envelope]:
    with service.api.db.session() as session:
        rows = session.exec(select(OutboxEvent).where(
            col(OutboxEvent.event_type) == EventType.subscription_disabled.value).order_by(col(OutboxEvent.seq))).all()
        return [Envelope.model_validate_json(row.envelope) for row in rows]


async def test_a_subscription_failing_for_longer_than_the_limit_is_disabled_and_its_queue_cancelled(
    service_factory: Callable[..., Any], receivers: Callable[..., ScriptedReceiver]
) -> None:
    service = await service_factory(subscription_disable_after_s=0.6)
    receiver = receivers(then=500)
    created = await service.subscribe(receiver.url)
    for n in range(3):
        service.publish(proposed_for_need(f"need_fail_{n}"))

    await eventually(lambda: service.subscription(created["id"])["status"] == "disabled", "disabled", 15)

    subscription = service.subscription(created["id"])
    assert subscription["disabled_reason"] == "failing" and subscription["consecutive_failures"] >= 3
    assert {d["status"] for d in service.deliveries()} == {"cancelled"}
    [event] = operator_events(service)
    assert event.type == "jp.matchnet.subscription.disabled.v1" and event.subject == created["id"]
    assert event.data["reason"] == "failing" and event.data["last_error"] == "HTTP 500"
    count = len(receiver.received())
    await quiet()
    assert len(receiver.received()) == count  # nothing more is sent


async def test_a_success_ends_the_run_of_failures(
    service_factory: Callable[..., Any], receivers: Callable[..., ScriptedReceiver]
) -> None:
    service = await service_factory(subscription_disable_after_s=1.0)
    receiver = receivers(500, 500, then=200)
    created = await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_1"))
    await eventually(lambda: service.deliveries()[0]["status"] == "succeeded", "the success")
    assert service.subscription(created["id"])["failing_since"] is None

    receiver.script.extend([500] * 3)
    await asyncio.sleep(1.0)  # longer than the limit since the first failure
    service.publish(proposed_for_need("need_2"))
    await eventually(lambda: len(service.deliveries(status="succeeded")) == 2, "the second success")
    assert service.subscription(created["id"])["status"] == "active"


# ---- subscriptions: pause, delete, rotate, ping ----------------------------------------------


async def test_nothing_is_sent_to_a_paused_subscription_and_everything_in_order_once_resumed(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = await service.subscribe(receiver.url)
    paused = await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"status": "paused"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    events = [proposed_for_need("need_p"), proposed_for_need("need_p"), proposed_for_need("need_q")]
    for envelope in events:
        service.publish(envelope)
    await quiet()
    assert receiver.received() == []
    assert {(d["status"], d["next_attempt_at"]) for d in service.deliveries()} == {("pending", None)}

    resumed = await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"status": "active"})
    assert resumed.json()["status"] == "active"

    await eventually(lambda: len(receiver.received()) == 3, "the held deliveries")
    order = [a.event["id"] for a in receiver.received()]
    assert order.index(events[0].id) < order.index(events[1].id)  # the same need, in order


async def test_nothing_is_sent_to_a_deleted_subscription(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = await service.subscribe(receiver.url)
    await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"status": "paused"})
    service.publish(proposed_for_need("need_d"))
    deleted = await service.call("DELETE", f"/v1/subscriptions/{created['id']}")
    assert deleted.json()["status"] == "deleted"
    service.publish(proposed_for_need("need_e"))
    await quiet()

    assert receiver.received() == []
    assert [d["status"] for d in service.deliveries()] == ["cancelled"]
    again = await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"status": "active"})
    assert again.status_code == 409


async def test_rotation_signs_with_both_secrets_during_the_overlap_then_with_the_new_one_only(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = await service.subscribe(receiver.url)
    old_secret = created["secret"]

    rotated = await service.call("POST", f"/v1/subscriptions/{created['id']}:rotate-secret", json={"overlap_s": 3600})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert "secret" not in service.subscription(created["id"])
    service.publish(proposed_for_need("need_during"))
    await eventually(lambda: receiver.received(), "a delivery during the overlap")
    during = receiver.received()[0]
    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(old_secret).verify(during.body, during.headers)  # a receiver not switched yet still verifies
    Webhook(new_secret).verify(during.body, during.headers)

    ended = await service.call("POST", f"/v1/subscriptions/{created['id']}:rotate-secret", json={"overlap_s": 0})
    newest = ended.json()["secret"]
    service.publish(proposed_for_need("need_after"))
    await eventually(lambda: len(receiver.received()) == 2, "a delivery after the overlap")
    after = receiver.received()[1]
    Webhook(newest).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret).verify(after.body, after.headers)


async def test_a_test_ping_is_signed_and_answers_with_how_the_receiver_took_it(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers(204, 500)
    created = await service.subscribe(receiver.url)

    ok = await service.call("GET", f"/v1/subscriptions/{created['id']}/test")
    failing = await service.call("GET", f"/v1/subscriptions/{created['id']}/test")

    assert ok.status_code == 200, ok.text
    assert (ok.json()["status"], ok.json()["attempts"][0]["status_code"]) == ("succeeded", 204)
    assert (failing.json()["status"], failing.json()["attempts"][0]["status_code"]) == ("failed", 500)
    pings = verified(created["secret"], receiver)
    assert [p["type"] for p in pings] == ["jp.matchnet.webhook.ping.v1"] * 2
    assert pings[0]["data"]["subscription_id"] == created["id"]
    assert receiver.webhook_ids() == [ok.json()["id"], failing.json()["id"]]
    other_office = service.api.key(Role.office, office_id="office-01")
    assert (await service.call("GET", f"/v1/subscriptions/{created['id']}/test", other_office)).status_code == 404


async def test_an_office_pauses_and_changes_only_its_own_subscriptions(service: Service) -> None:
    office13 = service.api.key(Role.office, office_id="office-13")
    created = await service.subscribe("http://127.0.0.1:9/hook", office13, prefecture="13", office_id=None)
    base = f"/v1/subscriptions/{created['id']}"

    changed = await service.call("PATCH", base, office13, json={"description": "新しい窓口", "mode": "daily_digest"})
    assert (changed.json()["description"], changed.json()["mode"]) == ("新しい窓口", "daily_digest")
    for body, field in [({"filters": {"min_score": 0.2}}, "filters"), ({"status": "disabled"}, "status"),
                        ({"url": "ftp://x"}, "url"), ({"office_id": "office-01"}, "office_id"), ({"url": None}, "url")]:
        refused = await service.call("PATCH", base, office13, json=body)
        assert refused.status_code == 422 and field in [e["field"] for e in refused.json()["errors"]], refused.text
    operator = service.api.key(Role.operator)
    assert (await service.call("PATCH", base, operator, json={"status": "paused"})).status_code == 403
    other = service.api.key(Role.office, office_id="office-01")
    assert (await service.call("PATCH", base, other, json={"status": "paused"})).status_code == 404
    partner = await service.call("POST", "/v1/subscriptions", json={
        "kind": "partner", "partner_id": "tlo-1", "url": "http://127.0.0.1:9/h", "mode": "daily_digest"})
    assert partner.status_code == 422 and partner.json()["errors"][0]["field"] == "mode"


async def test_production_refuses_a_private_url_when_a_subscription_changes(service_factory: Any) -> None:
    service = await service_factory(development_mode=False)
    created = await service.subscribe("https://8.8.8.8/hook")

    refused = await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"url": "https://10.0.0.1/h"})

    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "url"


# ---- redelivery and replay -------------------------------------------------------------------


async def test_redeliver_sends_a_settled_delivery_again_with_the_same_webhook_id(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_x"))
    [delivery] = await eventually(lambda: service.deliveries(status="succeeded"), "the first delivery")

    again = await service.call("POST", f"/v1/deliveries/{delivery['id']}:redeliver")
    assert again.status_code == 202 and again.json()["status"] == "pending"
    await eventually(lambda: len(receiver.received()) == 2, "the redelivery")

    assert receiver.webhook_ids() == [delivery["id"], delivery["id"]]
    assert [e["id"] for e in verified(created["secret"], receiver)] == [delivery["event_id"]] * 2
    final = await eventually(lambda: service.deliveries(status="succeeded"), "settled again")
    assert [a["status_code"] for a in final[0]["attempts"]] == [200, 200]
    office01 = service.api.key(Role.office, office_id="office-01")
    assert (await service.call("POST", f"/v1/deliveries/{delivery['id']}:redeliver", office01)).status_code == 404


async def test_redeliver_refuses_a_pending_delivery(service: Service) -> None:
    created = await service.subscribe("http://127.0.0.1:9/hook")
    await service.call("PATCH", f"/v1/subscriptions/{created['id']}", json={"status": "paused"})
    service.publish(proposed_for_need("need_y"))
    [delivery] = service.deliveries()

    refused = await service.call("POST", f"/v1/deliveries/{delivery['id']}:redeliver")

    assert refused.status_code == 409


async def test_replay_resends_past_events_with_their_webhook_ids_and_adds_those_from_before(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    before = proposed_for_need("need_before")
    service.publish(before)  # logged before anyone subscribed
    since = datetime.now(UTC) - timedelta(minutes=1)
    created = await service.subscribe(receiver.url)
    service.publish(proposed_for_need("need_live"))
    await eventually(lambda: len(receiver.received()) == 1, "the live delivery")
    live_webhook_id = receiver.webhook_ids()[0]

    replay = await service.call("POST", f"/v1/subscriptions/{created['id']}:replay",
                                params={"since": since.isoformat()})

    assert replay.status_code == 202, replay.text
    assert (replay.json()["events"], replay.json()["queued"]) == (2, 2)
    await eventually(lambda: len(receiver.received()) == 3, "the replayed events")
    replayed = receiver.received()[1:]
    assert {a.event["data"]["trigger_id"] for a in replayed} == {"need_before", "need_live"}
    assert live_webhook_id in [a.headers["webhook-id"] for a in replayed]  # the same webhook-id as before
    assert len(verified(created["secret"], receiver)) == 3


async def test_replay_refuses_a_moment_older_than_the_log_keeps(service: Service) -> None:
    created = await service.subscribe("http://127.0.0.1:9/hook")
    long_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()

    refused = await service.call("POST", f"/v1/subscriptions/{created['id']}:replay", params={"since": long_ago})

    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "since"


# ---- confidentiality ------------------------------------------------------------------------


def leaky_event() -> Envelope:
    """A pairing event as a faulty matcher might send it: confidential needs with their own words,
    one of another office's, in office-13's list."""
    return proposed_for_need(
        "need_own",
        pairing("need_own", confidentiality=Confidentiality.confidential, need_title=SECRET_TEXT),
        pairing("need_elsewhere", seed_id="seed_2", need_prefecture="01", rank=2,
                confidentiality=Confidentiality.confidential, need_title=SECRET_TEXT),
        pairing("need_public", seed_id="seed_3", rank=3),
    )


async def test_a_confidential_needs_text_never_leaves_its_office_even_if_an_event_carries_it(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    own_office, other_office, partner = receivers(), receivers(), receivers()
    await service.subscribe(own_office.url)
    await service.subscribe(other_office.url, office_id="office-01")
    await service.subscribe(partner.url, kind="partner", office_id=None, partner_id="tlo-1")
    service.publish(leaky_event())

    await eventually(lambda: own_office.received() and partner.received(), "the deliveries")
    await quiet()

    assert other_office.received() == []  # another office's list
    for receiver in (own_office, partner):
        assert SECRET_TEXT not in receiver.received()[0].body.decode()
    assert [p["need"]["id"] for p in partner.received()[0].event["data"]["pairings"]] == ["need_public"]
    own = {p["need"]["id"]: p["need"] for p in own_office.received()[0].event["data"]["pairings"]}
    assert set(own) == {"need_own", "need_public"}  # never another office's confidential need
    assert own["need_own"]["title"].startswith("非公開のニーズ")


# ---- the stream ------------------------------------------------------------------------------


async def read_stream(
    service: Service, audience: Any, after: int, count: int, within_s: float = DEADLINE_S
) -> list[tuple[int, dict[str, Any]]]:
    """The first ``count`` events of a stream (or those that came within ``within_s``), parsed."""
    out: list[tuple[int, dict[str, Any]]] = []
    stream = event_stream(service.api.db, service.runtime.extras[FEED], audience, after, keepalive_s=0.2)
    try:
        async with asyncio.timeout(within_s):
            async for chunk in stream:
                for message in chunk.split("\n\n"):
                    fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
                    if "data" in fields:
                        out.append((int(fields["id"]), json.loads(fields["data"])))
                if len(out) >= count:
                    return out[:count]
    except TimeoutError:
        pass
    finally:
        await stream.aclose()
    return out


async def test_the_stream_resumes_after_the_last_event_id_without_gap_or_duplicate(service: Service) -> None:
    partner = audience("partner")
    events = [proposed_for_need(f"need_s{n}") for n in range(6)]
    for envelope in events[:3]:
        service.publish(envelope)

    first = await read_stream(service, partner, 0, 3)
    for envelope in events[3:]:
        service.publish(envelope)
    rest = await read_stream(service, partner, first[-1][0], 3)

    assert [e["id"] for _, e in first + rest] == [e.id for e in events]
    ids = [n for n, _ in first + rest]
    assert ids == sorted(set(ids))


async def test_the_stream_filters_and_redacts_as_webhooks_do(service: Service) -> None:
    service.publish(leaky_event())
    service.publish(proposed_for_need("need_kinki", pairing("need_kinki", need_prefecture="27"), office_id="office-27"))

    partner = await read_stream(service, audience("partner", blocks=["kanto"]), 0, 1)
    office01 = await read_stream(service, audience("office", office_id="office-01"), 0, 1, within_s=0.5)

    assert [p["need"]["id"] for p in partner[0][1]["data"]["pairings"]] == ["need_public"]
    assert SECRET_TEXT not in json.dumps(partner, ensure_ascii=False)
    assert office01 == []  # nothing of office-13's or office-27's


def test_every_pairing_event_type_carries_the_pairings_contract() -> None:
    assert EventType.pairings_proposed in PAIRING_EVENT_TYPES
    for event_type in PAIRING_EVENT_TYPES:
        assert issubclass(EVENT_SCHEMAS[event_type], PairingsEvent)


def test_events_of_other_types_are_not_delivered() -> None:
    from shared.events import NeedCreated
    from tests.factories import need_profile

    need = need_profile("need_1", prefecture="13")
    envelope = Envelope.wrap(EventType.need_created, "/matchnet/needs", need.id, NeedCreated(need=need))

    assert event_view(envelope, audience("operator")) is None


# ---- digest ----------------------------------------------------------------------------------


async def test_an_office_digest_is_one_signed_delivery_of_the_days_pairings_ranked(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    receiver = receivers()
    created = await service.subscribe(receiver.url, mode="daily_digest")
    zone = ZoneInfo("Asia/Tokyo")
    service.publish(proposed_for_need("need_1", pairing("need_1", score=0.4)))
    service.publish(proposed_for_need("need_2", pairing("need_2", score=0.9),
                                      pairing("need_2", seed_id="s9", score=0.2)))
    service.publish(proposed_for_need("need_1", pairing("need_1", score=0.6)))  # the same pairing, later
    await quiet(0.2)
    assert receiver.received() == []  # no delivery per event
    with service.api.db.session() as session:  # the day of these events, in Tokyo
        day_logged = session.exec(select(NotificationEvent)).all()
        for row in day_logged:
            row.received_at = datetime(2025, 4, 1, 10, 0, tzinfo=zone)
            session.add(row)
        subscription = session.get(Subscription, created["id"])
        assert subscription is not None
        subscription.created_at = datetime(2025, 3, 31, tzinfo=UTC)
        session.add(subscription)

    made = record_due_digests(service.api.db, zone, now=datetime(2025, 4, 2, 0, 1, tzinfo=zone))
    assert record_due_digests(service.api.db, zone, now=datetime(2025, 4, 2, 0, 2, tzinfo=zone)) == []
    service.worker.wake()

    assert len(made) == 1  # the 1st of April; the 31st of March had nothing
    await eventually(lambda: receiver.received(), "the digest")
    [digest] = verified(created["secret"], receiver)
    assert digest["type"] == DIGEST_EVENT_TYPE and digest["data"]["date"] == "2025-04-01"
    ranked = [(p["rank"], p["need"]["id"], p["score"]) for p in digest["data"]["pairings"]]
    assert ranked == [(1, "need_2", 0.9), (2, "need_1", 0.6), (3, "need_2", 0.2)]


# ---- visibility ------------------------------------------------------------------------------


async def test_deliveries_filter_by_subscription_status_event_and_time(
    service: Service, receivers: Callable[..., ScriptedReceiver]
) -> None:
    good, bad = receivers(), receivers(then=500)
    good_sub = await service.subscribe(good.url)
    bad_sub = await service.subscribe(bad.url)
    first = proposed_for_need("need_f1")
    service.publish(first)
    await eventually(lambda: service.deliveries(status="succeeded"), "a success")
    middle = datetime.now(UTC)
    service.publish(proposed_for_need("need_f2"))
    await eventually(lambda: len(service.deliveries(status="succeeded")) == 2, "two successes")

    assert {d["subscription_id"] for d in service.deliveries(subscription_id=bad_sub["id"])} == {bad_sub["id"]}
    assert {d["subscription_id"] for d in service.deliveries(status="succeeded")} == {good_sub["id"]}
    assert len(service.deliveries(event_id=first.id)) == 2
    assert len(service.deliveries(event_type=EventType.pairings_proposed.value)) == 4
    assert {d["event_id"] for d in service.deliveries(created_before=middle.isoformat())} == {first.id}
    assert first.id not in {d["event_id"] for d in service.deliveries(created_after=middle.isoformat())}
    failing = service.deliveries(subscription_id=bad_sub["id"], status="pending")[0]
    assert all(a["status_code"] == 500 and a["latency_ms"] >= 0 and a["next_attempt_at"] for a in failing["attempts"])


async def test_stats_and_metrics_count_deliveries_attempts_and_the_oldest_pending(
    service: Service, receivers: Callable[..., ScriptedReceiver], metric_reader: InMemoryMetricReader
) -> None:
    good, bad = receivers(), receivers(then=500)
    await service.subscribe(good.url)
    partner_sub = await service.subscribe(bad.url, kind="partner", office_id=None, partner_id="tlo-1")
    service.publish(proposed_for_need("need_m"))
    await eventually(lambda: service.deliveries(status="succeeded"), "the success")
    # Recorded, not only received: the worker records an attempt once it has read the answer.
    await eventually(lambda: len(bad.received()) >= 2 and [
        d for d in service.deliveries(subscription_id=partner_sub["id"]) if len(d["attempts"]) >= 2
    ], "two failures recorded")

    stats = (await service.call("GET", "/v1/deliveries:stats")).json()
    assert stats["deliveries"]["succeeded"] == 1 and stats["deliveries"]["pending"] == 1
    assert stats["oldest_pending_age_s"] >= 0
    assert stats["attempts_last_hour"]["delivered"] == 1 and stats["attempts_last_hour"]["retry"] >= 2
    assert stats["attempt_latency_last_hour"]["count"] >= 3 and stats["attempt_latency_last_hour"]["p50_ms"] > 0
    partner_key = service.api.key(Role.partner, partner_id="tlo-1")
    partner = (await service.call("GET", "/v1/deliveries:stats", partner_key)).json()
    assert partner["deliveries"]["succeeded"] == 0 and partner["deliveries"]["pending"] == 1
    assert {d["subscription_id"] for d in (await service.call("GET", "/v1/deliveries", partner_key)).json()["items"]} \
        == {partner_sub["id"]}

    metrics = {m.name: m for rm in metric_reader.get_metrics_data().resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics}
    attempts = {dict(p.attributes or {})["outcome"]: p.value
                for p in metrics["matchnet.deliveries.attempts"].data.data_points}
    assert attempts["delivered"] == 1 and attempts["retry"] >= 2
    assert metrics["matchnet.deliveries.succeeded"].data.data_points[0].value == 1
    assert sum(p.count for p in metrics["matchnet.deliveries.attempt.duration"].data.data_points) >= 3
    assert metrics["matchnet.deliveries.pending"].data.data_points[0].value == 1
    assert metrics["matchnet.deliveries.oldest_pending.age"].data.data_points[0].value >= 0


def test_the_event_log_forgets_only_what_is_older_than_its_retention(tmp_path: Path) -> None:
    from shared.db import Database
    from shared.service import COMMON_TABLES

    db = Database(f"sqlite:///{tmp_path / 'log.db'}", [*COMMON_TABLES, *TABLES])
    db.create_tables()
    now = datetime.now(UTC)
    with db.session() as session:
        for n, age in enumerate((timedelta(days=9), timedelta(days=7, hours=23), timedelta(minutes=1))):
            session.add(NotificationEvent(event_id=f"evt_{n}", event_type="t", office_id="office-13", ordering_key="k",
                                          event="{}", received_at=now - age))

    assert purge_event_log(db, timedelta(days=8)) == 1
    with db.session() as session:
        assert [e.event_id for e in session.exec(select(NotificationEvent).order_by(col(NotificationEvent.seq)))] \
            == ["evt_1", "evt_2"]
    db.dispose()


def test_stream_numbers_are_never_reused_even_after_the_log_was_purged_empty(tmp_path: Path) -> None:
    from shared.db import Database
    from shared.service import COMMON_TABLES

    db = Database(f"sqlite:///{tmp_path / 'log.db'}", [*COMMON_TABLES, *TABLES])
    db.create_tables()

    def log(event_id: str, age: timedelta) -> int:
        row = NotificationEvent(event_id=event_id, event_type="t", office_id="office-13", ordering_key="k",
                                event="{}", received_at=datetime.now(UTC) - age)
        with db.session() as session:
            session.add(row)
            session.flush()
            assert row.seq is not None
            return row.seq

    last = log("evt_old", timedelta(days=30))
    purge_event_log(db, timedelta(days=8))

    assert log("evt_new", timedelta(0)) > last
    db.dispose()
