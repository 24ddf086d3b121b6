"""Under orchestration: SIGTERM makes a service unready at once, then it drains and exits by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from matchnet.network import LocalNetwork
from shared.db import Database
from shared.events import Topic
from shared.inbox import INBOX_TABLES
from shared.kafka import EventConsumer
from tests.e2e_support import wait_for
from tests.factories import NEED_BODY, SEED_BODY

pytestmark = pytest.mark.e2e

SHUTDOWN_DELAY_S = 2.5
DRAIN_TIMEOUT_S = 8.0
GRACE_PERIOD_S = SHUTDOWN_DELAY_S + DRAIN_TIMEOUT_S + 2  # what a pod's terminationGracePeriodSeconds would give
BURST = 30


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        tmp_path / "data", free_ports=True, log_dir=tmp_path / "logs", stop_timeout_s=GRACE_PERIOD_S,
        env={"MATCHNET_SHUTDOWN_DELAY_S": str(SHUTDOWN_DELAY_S), "MATCHNET_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)},
    )
    with net:
        yield net


def sqlite_rows(network: LocalNetwork, service: str, query: str) -> list[tuple]:
    path = network.database_urls[service].removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def terminate(network: LocalNetwork, service: str) -> float:
    pid = network.pid_of(service)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    return time.monotonic()


def wait_for_exit(network: LocalNetwork, service: str, since: float) -> tuple[int, float]:
    wait_for(lambda: service in network.exited(), GRACE_PERIOD_S, f"{service} to exit by itself")
    return network.exited()[service], time.monotonic() - since


# uvicorn ends a process it stopped on a signal by raising that signal again once all is done.
STOPPED_CLEANLY = (0, -signal.SIGTERM)


def committed_offsets(network: LocalNetwork, group: str, topic: str) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=network.bootstrap_servers, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            total = 0
            for partition in partitions:
                total += await consumer.committed(TopicPartition(topic, partition)) or 0
            return total
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_sigterm_makes_needs_unready_at_once_then_every_committed_event_is_published_before_it_exits(
    network: LocalNetwork,
) -> None:
    headers = {"Authorization": f"Bearer {network.admin_key}"}
    with httpx.Client(base_url=network.urls["needs"], headers=headers, timeout=10) as needs:
        for _ in range(BURST):
            assert needs.post("/v1/needs", json=NEED_BODY).status_code == 201
        since = terminate(network, "needs")

        # Unready while it still serves: a load balancer stops sending before the server stops.
        ready = needs.get("/readyz")
        assert ready.status_code == 503 and "draining" in ready.json()["detail"]
        assert needs.get("/healthz").status_code == 200
        assert time.monotonic() - since < SHUTDOWN_DELAY_S

    code, took = wait_for_exit(network, "needs", since)

    assert code in STOPPED_CLEANLY, network.log_tail("needs")
    assert took < GRACE_PERIOD_S
    unsent = sqlite_rows(network, "needs", "SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
    assert unsent == [(0,)]
    assert sqlite_rows(network, "needs", "SELECT count(*) FROM outbox_event") == [(BURST,)]
    assert '"message": "needs drained in' in network.log_tail("needs", lines=10)


def test_sigterm_stops_the_matcher_consuming_with_the_offsets_of_exactly_what_it_applied_committed(
    network: LocalNetwork,
) -> None:
    headers = {"Authorization": f"Bearer {network.admin_key}"}
    with httpx.Client(base_url=network.urls["seeds"], headers=headers, timeout=10) as seeds:
        assert seeds.post("/v1/seeds", json=SEED_BODY).status_code == 201
    with httpx.Client(base_url=network.urls["matcher"], headers=headers, timeout=10) as matcher:
        wait_for(lambda: matcher.get("/v1/index").json()["seeds"] >= 1, 20, "the seed in the matcher's index")
    with httpx.Client(base_url=network.urls["needs"], headers=headers, timeout=10) as needs:
        for _ in range(BURST):
            assert needs.post("/v1/needs", json=NEED_BODY).status_code == 201
    since = terminate(network, "matcher")  # somewhere in the middle of the burst, or after it

    code, took = wait_for_exit(network, "matcher", since)

    assert code in STOPPED_CLEANLY, network.log_tail("matcher")
    assert took < GRACE_PERIOD_S
    applied = sqlite_rows(network, "matcher",
                          "SELECT count(*) FROM inbox_event WHERE event_type = 'jp.matchnet.need.created.v1'")[0][0]
    # Committed offsets cover every need applied (no redelivery of those) and nothing beyond (no loss).
    assert committed_offsets(network, "matchnet-matcher", Topic.needs.value) == applied
    assert '"message": "matcher drained in' in network.log_tail("matcher", lines=10)


async def test_a_consumer_asked_to_stop_while_joining_its_group_stops_without_waiting_for_the_join(
    tmp_path: Path,
) -> None:
    session_timeout_ms = 10_000  # the embedded broker answers a group's first join after half of it: 5 s
    db = Database(f"sqlite:///{tmp_path / 'inbox.db'}", INBOX_TABLES)
    db.create_tables()
    with LocalNetwork(tmp_path / "data", free_ports=True, log_dir=tmp_path / "logs", services=()) as broker:
        consumer = EventConsumer(db=db, topics=[Topic.needs.value], group_id="joining", handler=lambda *_: None,
                                 bootstrap_servers=broker.bootstrap_servers, session_timeout_ms=session_timeout_ms)
        running = asyncio.create_task(consumer.run())
        await asyncio.sleep(0.5)
        assert not consumer.consumer or not consumer.consumer.assignment(), "joined already: nothing tested"
        asked = time.monotonic()
        consumer.request_stop()
        await asyncio.wait_for(running, session_timeout_ms / 1000)
        stopped_after = time.monotonic() - asked
    db.dispose()
    assert stopped_after < session_timeout_ms / 1000 / 4, f"waited {stopped_after:.1f}s for a join it gave up"
