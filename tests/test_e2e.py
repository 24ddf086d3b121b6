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
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from standardwebhooks.webhooks import Webhook

from matchnet.network import LocalNetwork
from shared.events import Envelope, EventType, NeedCreated
from shared.kafka import EventPublisher
from tests.e2e_support import (
    SERVICES,
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
    """A client as an office has one: it sends the headers given (a traceparent too), and no span of
    this test process (where other tests may have instrumented httpx) sits between."""
    office_client = httpx.Client(
        base_url=net.urls[service], timeout=10.0,
        headers={"Authorization": f"Bearer {net.admin_key}", **headers},
    )
    HTTPXClientInstrumentor.uninstrument_client(office_client)
    return office_client


def subscribe_office(net: LocalNetwork, receiver: WebhookReceiver, prefecture: str) -> str:
    with client(net, "notifications") as notifications:
        response = notifications.post(
            "/v1/subscriptions", json={"kind": "office", "prefecture": prefecture, "url": receiver.url}
        )
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


def register_seed_and_wait_until_indexed(net: LocalNetwork, **headers: str) -> str:
    """A seed the matcher knows: a need posted afterwards is ranked against it (topics are independent)."""
    with client(net, "seeds", **headers) as seeds:
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


class OfficeTrace:
    """The office's side of a trace: a span of its own system, whose context its requests carry."""

    def __init__(self) -> None:
        self.trace_id = secrets.token_hex(16)
        self.span_id = secrets.token_hex(8)
        self.traceparent = f"00-{self.trace_id}-{self.span_id}-01"


def test_office_webhook_receives_one_signed_ranked_pairing_traced_from_the_need_post(
    network: LocalNetwork, receiver: WebhookReceiver
) -> None:
    secret = subscribe_office(network, receiver, prefecture=NEED_BODY["prefecture"])
    office = OfficeTrace()  # the office registers a seed, then a need, in one piece of work
    seed_id = register_seed_and_wait_until_indexed(network, traceparent=office.traceparent)
    with client(network, "needs", traceparent=office.traceparent) as needs:
        need = needs.post("/v1/needs", json=NEED_BODY)
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

    spans = the_whole_trace(network, office.trace_id)
    hop = TraceHops(spans)
    # One trace, four services.
    assert {s["service"] for s in spans} == {f"matchnet-{name}" for name in SERVICES}
    # The office's two requests, each continued through its outbox row and Kafka headers.
    seed_post = hop.one("matchnet-seeds", "SERVER", "POST /v1/seeds")
    need_post = hop.one("matchnet-needs", "SERVER", "POST /v1/needs")
    assert hop.descends_from(seed_post, office.span_id) and hop.descends_from(need_post, office.span_id)
    seed_send = hop.one("matchnet-seeds", "PRODUCER", "send matchnet.seeds")
    need_send = hop.one("matchnet-needs", "PRODUCER", "send matchnet.needs")
    assert hop.descends_from(seed_send, seed_post["span_id"]) and hop.descends_from(need_send, need_post["span_id"])
    seed_process = hop.one("matchnet-matcher", "CONSUMER", "process matchnet.seeds")
    need_process = hop.one("matchnet-matcher", "CONSUMER", "process matchnet.needs")
    assert seed_process["parent_span_id"] == seed_send["span_id"]
    assert need_process["parent_span_id"] == need_send["span_id"]
    # The matcher ranks inside the processing of the need and publishes the pairings from there.
    rank = hop.child_of(need_process, "rank")
    # Two pairing events: the need's list to its office (13), the seed's proposal to the seed's (01).
    sends = {s["attributes"]["messaging.kafka.message.key"]: s for s in hop.spans
             if s["parent_span_id"] == need_process["span_id"] and s["name"] == "send matchnet.pairings"}
    assert set(sends) == {"office-13", "office-01"}
    pairings_send = sends["office-13"]
    assert rank["kind"] == "INTERNAL" and pairings_send["kind"] == "PRODUCER"
    assert rank["attributes"]["matchnet.trigger_id"] == need_id
    [pairings_process] = [s for s in hop.spans if s["name"] == "process matchnet.pairings"
                          and s["parent_span_id"] == pairings_send["span_id"]]
    assert pairings_process["service"] == "matchnet-notifications"
    webhook = hop.child_of(pairings_process, "webhook deliver")
    webhook_post = hop.child_of(webhook, "POST")
    assert webhook_post["kind"] == "CLIENT" and webhook_post["attributes"]["http.response.status_code"] == 200

    # Semantic conventions on every hop.
    assert need_post["attributes"]["http.request.method"] == "POST"
    assert need_post["attributes"]["http.route"] == "/v1/needs"
    assert need_post["attributes"]["http.response.status_code"] == 201
    groups = {"matchnet-matcher": "matchnet-matcher", "matchnet-notifications": "matchnet-notifications"}
    for span in (seed_send, need_send, pairings_send, seed_process, need_process, pairings_process):
        attributes = span["attributes"]
        assert attributes["messaging.system"] == "kafka"
        assert attributes["messaging.destination.name"] == span["name"].split(" ", 1)[1]
        assert attributes["messaging.operation.type"] == ("send" if span["kind"] == "PRODUCER" else "process")
        assert attributes["messaging.kafka.message.key"] and attributes["cloudevents.event_id"]
        assert attributes["cloudevents.event_id"] == attributes["messaging.message.id"]
        if span["kind"] == "CONSUMER":
            assert attributes["messaging.consumer.group.name"] == groups[span["service"]]
            # the consumer reads the very event the producer sent
            producer = hop.by_id[span["parent_span_id"]]
            assert producer["attributes"]["cloudevents.event_id"] == attributes["cloudevents.event_id"]
    assert need_send["attributes"]["messaging.kafka.message.key"] == need_id
    assert pairings_send["attributes"]["messaging.kafka.message.key"] == "office-13"
    for service in SERVICES:  # the SQL of each service is in the trace
        assert any("db.system" in s["attributes"] for s in spans if s["service"] == f"matchnet-{service}"), service

    # The operator's numbers for the same flow, at each service's /metrics.
    matcher_metrics = wait_for(lambda: _metrics_with(network, "matcher", 'matchnet_consumer_lag{'), 10,
                               "the matcher's consumer lag in its metrics")
    assert 'messaging_consumer_group_name="matchnet-matcher"' in matcher_metrics
    assert "matchnet_ranking_duration_seconds_count" in matcher_metrics
    assert "matchnet_pairings_published_total" in matcher_metrics
    assert 'matchnet_outbox_published_total{cloudevents_event_type="jp.matchnet.pairings.proposed.v1"' \
        in matcher_metrics
    needs_metrics = _metrics_with(network, "needs", 'http_route="/v1/needs"')
    assert needs_metrics and 'http_server_request_duration_seconds_bucket{' in needs_metrics

    # And every service logged JSON lines only, naming itself.
    for service in SERVICES:
        for line in network.log_tail(service, lines=100_000).splitlines():
            if line.strip() and not line.startswith("==="):
                assert json.loads(line)["service"] == f"matchnet-{service}", line


def _metrics_with(network: LocalNetwork, service: str, text: str) -> str | None:
    body = httpx.get(network.urls[service] + "/metrics", timeout=10).text
    return body if text in body else None


def the_whole_trace(network: LocalNetwork, trace_id: str) -> list[dict]:
    """Every span of the trace, once the webhook's POST (the last hop) has been written."""
    assert network.trace_file is not None

    def complete() -> list[dict] | None:
        spans = [s for s in read_spans(network.trace_file) if s["trace_id"] == trace_id]
        delivered = any(s["name"] == "POST" and s["service"] == "matchnet-notifications" for s in spans)
        return spans if delivered else None

    try:
        return wait_for(complete, 20, "the webhook POST in the need's trace")
    except AssertionError:
        seen = sorted({(s["service"], s["kind"], s["name"]) for s in read_spans(network.trace_file)
                       if s["trace_id"] == trace_id})
        raise AssertionError(f"the trace {trace_id} has only: {seen}") from None


class TraceHops:
    """Look-ups in one trace's spans."""

    def __init__(self, spans: list[dict]) -> None:
        self.spans = spans
        self.by_id = {s["span_id"]: s for s in spans}

    def one(self, service: str, kind: str, name: str) -> dict:
        found = [s for s in self.spans if (s["service"], s["kind"], s["name"]) == (service, kind, name)]
        assert len(found) == 1, f"{len(found)} spans {service} {kind} {name!r}"
        return found[0]

    def child_of(self, parent: dict, name: str) -> dict:
        found = [s for s in self.spans if s["parent_span_id"] == parent["span_id"] and s["name"] == name]
        assert len(found) == 1, f"{len(found)} spans {name!r} under {parent['name']!r}"
        return found[0]

    def descends_from(self, span: dict, ancestor_id: str) -> bool:
        parent = span["parent_span_id"]
        while parent is not None:
            if parent == ancestor_id:
                return True
            if parent not in self.by_id:
                return False
            parent = self.by_id[parent]["parent_span_id"]
        return False


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

    # The consumers go on past their first offset commits on the new broker (they come every 0.2 s).
    time.sleep(1)
    with client(network, "needs") as needs:
        later = needs.post("/v1/needs", json=NEED_BODY)
    assert later.status_code == 201, later.text
    wait_for(lambda: receiver.for_need(later.json()["id"]), 30, "the delivery of a need posted after the return")


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

        # The seed's office hears that its seed was proposed: for the public need, never the confidential one.
        other_bodies = [w.body.decode() for w in other_office.received]
        assert any(public in body for body in other_bodies)
        partner_bodies = [w.body.decode() for w in partner.received]
        for body in (*other_bodies, *partner_bodies):
            assert SECRET_WORDS not in body and confidential not in body
        assert SECRET_WORDS not in streamed and confidential not in streamed
        own = own_office.for_need(confidential)[0].event["data"]["pairings"][0]["need"]
        assert own["id"] == confidential and SECRET_WORDS not in json.dumps(own, ensure_ascii=False)
