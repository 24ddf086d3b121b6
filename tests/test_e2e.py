"""The whole network on real parts: the broker and four services as processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from standardwebhooks.webhooks import Webhook

from matchnet.network import LocalNetwork
from shared.events import Envelope, EventType, NeedCreated
from shared.kafka import EventPublisher
from tests.e2e_support import (
    ReceivedWebhook,
    WebhookReceiver,
    postgres_admin_url,
    postgres_databases,
    read_spans,
    wait_for,
    webhook_receiver,
)
from tests.factories import NEED_BODY, SEED_BODY, need_profile

pytestmark = pytest.mark.e2e

DELIVERY_DEADLINE_S = 20.0
QUIET_PERIOD_S = 1.5  # long enough for a duplicate to have arrived (each hop takes milliseconds)


@pytest.fixture(params=["sqlite", "postgres"])
def network(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalNetwork]:
    if request.param == "postgres":
        admin_url = postgres_admin_url()
        if admin_url is None:
            pytest.skip("MATCHNET_TEST_POSTGRES_URL is not set (.ci/run sets it when PostgreSQL answers)")
        with postgres_databases(admin_url) as database_urls, _started(tmp_path, database_urls) as net:
            yield net
    else:
        with _started(tmp_path, None) as net:
            yield net


class _started:
    def __init__(self, tmp_path: Path, database_urls: dict[str, str] | None) -> None:
        self.net = LocalNetwork(
            data_dir=tmp_path / "data", free_ports=True, database_urls=database_urls,
            trace_file=tmp_path / "spans.jsonl", log_dir=tmp_path / "logs",
        )

    def __enter__(self) -> LocalNetwork:
        try:
            self.net.start()
        except BaseException:
            self.net.stop()
            raise
        return self.net

    def __exit__(self, *exc: object) -> None:
        self.net.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


def client(net: LocalNetwork, service: str, **headers: str) -> httpx.Client:
    return httpx.Client(
        base_url=net.urls[service], timeout=10.0,
        headers={"Authorization": f"Bearer {net.admin_key}", **headers},
    )


def subscribe_office(net: LocalNetwork, receiver: WebhookReceiver, prefecture: str) -> str:
    with client(net, "notifications") as notifications:
        response = notifications.post(
            "/v1/subscriptions", json={"kind": "office", "prefecture": prefecture, "url": receiver.url}
        )
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


def register_seed_and_wait_until_indexed(net: LocalNetwork) -> str:
    """A seed the matcher knows: a need posted afterwards is ranked against it (topics are independent)."""
    with client(net, "seeds") as seeds:
        response = seeds.post("/v1/seeds", json=SEED_BODY)
    assert response.status_code == 201, response.text
    with client(net, "matcher") as matcher:
        wait_for(lambda: matcher.get("/v1/index").json()["seeds"] >= 1, 10, "the seed in the matcher's index")
    return response.json()["id"]


def the_only_delivery_for(receiver: WebhookReceiver, need_id: str) -> ReceivedWebhook:
    wait_for(lambda: receiver.for_need(need_id), DELIVERY_DEADLINE_S, f"a webhook for {need_id}")
    time.sleep(QUIET_PERIOD_S)  # not waiting for a thing: giving a duplicate the time to show up
    deliveries = receiver.for_need(need_id)
    assert len(deliveries) == 1, f"{len(deliveries)} deliveries for {need_id}"
    return deliveries[0]


def test_office_webhook_receives_one_signed_ranked_pairing_traced_from_the_need_post(
    network: LocalNetwork, receiver: WebhookReceiver
) -> None:
    secret = subscribe_office(network, receiver, prefecture=NEED_BODY["prefecture"])
    seed_id = register_seed_and_wait_until_indexed(network)

    trace_id = secrets.token_hex(16)
    # The office's side of the trace: the POST carries this trace id whether or not httpx is
    # instrumented in this process (an instrumented client adds its span as a child).
    office_span = NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(secrets.token_hex(8), 16), is_remote=False, trace_flags=TraceFlags(1))
    )
    traceparent = f"00-{trace_id}-{format(office_span.get_span_context().span_id, '016x')}-01"
    token = otel_context.attach(trace.set_span_in_context(office_span))
    try:
        with client(network, "needs", traceparent=traceparent) as needs:
            need = needs.post("/v1/needs", json=NEED_BODY)
    finally:
        otel_context.detach(token)
    assert need.status_code == 201, need.text
    need_id = need.json()["id"]

    delivery = the_only_delivery_for(receiver, need_id)

    Webhook(secret).verify(delivery.body, delivery.headers)  # raises if the signature does not verify
    event = delivery.event
    assert event["type"] == "jp.matchnet.pairings.proposed.v1"
    assert event["data"]["office_id"] == "office-13"
    top = event["data"]["pairings"][0]
    assert top["need"]["id"] == need_id
    assert top["seed"]["id"] == seed_id
    assert top["rank"] == 1 and 0 < top["score"] <= 1
    assert "排熱" in top["explanation"]["shared_terms"]

    wanted = {"matchnet-needs", "matchnet-matcher", "matchnet-notifications"}

    def spans_of_the_trace() -> list[dict] | None:
        spans = [s for s in read_spans(network.trace_file) if s["trace_id"] == trace_id]
        delivered = any(s["kind"] == "CLIENT" and s["service"] == "matchnet-notifications" for s in spans)
        return spans if wanted <= {s["service"] for s in spans} and delivered else None

    try:
        spans = wait_for(spans_of_the_trace, 20, "spans of the need's trace from needs, matcher and notifications")
    except AssertionError:
        seen = sorted({(s["service"], s["kind"], s["name"]) for s in read_spans(network.trace_file)
                       if s["trace_id"] == trace_id})
        raise AssertionError(f"the trace {trace_id} has only: {seen}") from None
    kinds = {(s["service"], s["kind"]) for s in spans}
    assert ("matchnet-needs", "SERVER") in kinds
    assert ("matchnet-needs", "PRODUCER") in kinds
    assert ("matchnet-matcher", "CONSUMER") in kinds
    assert ("matchnet-matcher", "PRODUCER") in kinds
    assert ("matchnet-notifications", "CONSUMER") in kinds
    consumer = next(s for s in spans if s["service"] == "matchnet-matcher" and s["kind"] == "CONSUMER")
    assert consumer["attributes"]["messaging.system"] == "kafka"
    assert consumer["attributes"]["messaging.destination.name"] == "matchnet.needs"


def test_a_redelivered_event_causes_no_second_pairing_and_no_second_webhook(
    network: LocalNetwork, receiver: WebhookReceiver
) -> None:
    subscribe_office(network, receiver, prefecture="13")
    register_seed_and_wait_until_indexed(network)

    need = need_profile("need_redelivered_1", prefecture="13")
    envelope = Envelope.wrap(EventType.need_created, "/matchnet/needs", need.id, NeedCreated(need=need))

    async def send_twice() -> None:
        publisher = EventPublisher(network.bootstrap_servers, client_id="test-redelivery")
        try:
            await publisher.publish(envelope)
            await publisher.publish(envelope)  # the same CloudEvents id, a second time
        finally:
            await publisher.stop()

    asyncio.run(send_twice())

    the_only_delivery_for(receiver, need.id)
    with client(network, "matcher") as matcher:
        pairings = matcher.get(f"/v1/needs/{need.id}/pairings").json()
    assert len(pairings) == 1


def test_a_need_posted_while_the_broker_is_down_is_delivered_when_it_returns(
    network: LocalNetwork, receiver: WebhookReceiver
) -> None:
    subscribe_office(network, receiver, prefecture="13")
    # The embedded broker forgets everything on restart: let the matcher see the seed first.
    register_seed_and_wait_until_indexed(network)

    network.stop_broker()
    with client(network, "needs") as needs:
        response = needs.post("/v1/needs", json=NEED_BODY)
    assert response.status_code == 201, response.text  # accepted: the outbox holds the event
    need_id = response.json()["id"]

    network.start_broker()  # an empty broker: the embedded one keeps topics in memory

    delivery = wait_for(lambda: receiver.for_need(need_id), 60, "the delivery after the broker came back")
    assert delivery[0].event["data"]["pairings"][0]["need"]["id"] == need_id


def test_a_seed_that_stops_being_open_leaves_the_matchers_index_and_returns_when_reopened(
    network: LocalNetwork,
) -> None:
    seed_id = register_seed_and_wait_until_indexed(network)

    def set_status(status: str, version: int) -> None:
        with client(network, "seeds") as seeds:
            response = seeds.post(f"/v1/seeds/{seed_id}/status", json={"status": status},
                                  headers={"If-Match": f'"{version}"'})
        assert response.status_code == 200, response.text

    def indexed_seeds() -> int:
        with client(network, "matcher") as matcher:
            return int(matcher.get("/v1/index").json()["seeds"])

    set_status("paused", 1)
    wait_for(lambda: indexed_seeds() == 0, 10, "the paused seed to leave the index")
    set_status("open", 2)
    wait_for(lambda: indexed_seeds() == 1, 10, "the reopened seed back in the index")
    with client(network, "seeds") as seeds:
        assert seeds.delete(f"/v1/seeds/{seed_id}", headers={"If-Match": '"3"'}).status_code == 200
    wait_for(lambda: indexed_seeds() == 0, 10, "the withdrawn seed to leave the index")


SECRET_WORDS = "極秘の鋳造ライン改善計画"


def test_a_confidential_needs_text_never_reaches_another_office_or_a_partner(network: LocalNetwork) -> None:
    with webhook_receiver() as own_office, webhook_receiver() as other_office, webhook_receiver() as partner:
        subscribe_office(network, own_office, prefecture="13")
        subscribe_office(network, other_office, prefecture="01")  # the seed's prefecture
        with client(network, "notifications") as notifications:
            partner_subscription = notifications.post(
                "/v1/subscriptions", json={"kind": "partner", "partner_id": "portal-all", "url": partner.url})
            assert partner_subscription.status_code == 201, partner_subscription.text
            partner_key = notifications.post(
                "/v1/api-keys", json={"role": "partner", "partner_id": "portal-all"}).json()["api_key"]
        register_seed_and_wait_until_indexed(network)
        started = time.time()
        with client(network, "needs") as needs:
            confidential = needs.post("/v1/needs", json={
                **NEED_BODY, "confidentiality": "confidential", "title": f"{SECRET_WORDS}：排熱を電気に",
                "description": f"{SECRET_WORDS}。鋳造工程の排熱を熱電変換で電気に変えたい。",
            }).json()["id"]
            public = needs.post("/v1/needs", json={**NEED_BODY, "confidentiality": "public"}).json()["id"]

        wait_for(lambda: own_office.for_need(confidential) and own_office.for_need(public), DELIVERY_DEADLINE_S,
                 "both needs' pairings at their own office")
        wait_for(lambda: partner.for_need(public), DELIVERY_DEADLINE_S, "the public need's pairing at the partner")
        with httpx.Client(base_url=network.urls["notifications"], timeout=10.0,
                          headers={"Authorization": f"Bearer {partner_key}"}) as portal:
            since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started - 1))
            with portal.stream("GET", "/v1/stream", params={"since": since}) as stream:
                streamed = next(line for line in stream.iter_lines() if line.startswith("data: "))
        time.sleep(QUIET_PERIOD_S)  # not waiting for a thing: giving a late delivery the time to show up

        assert other_office.received == []
        partner_bodies = [w.body.decode() for w in partner.received]
        assert all(SECRET_WORDS not in body and confidential not in body for body in partner_bodies)
        assert SECRET_WORDS not in streamed and confidential not in streamed
        own = own_office.for_need(confidential)[0].event["data"]["pairings"][0]["need"]
        assert own["id"] == confidential and SECRET_WORDS not in json.dumps(own, ensure_ascii=False)
