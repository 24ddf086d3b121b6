"""API keys across the real network: the broker and four services as processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from matchnet.network import SERVICES, LocalNetwork
from shared.auth import split_api_key
from shared.events import Topic
from tests.e2e_support import wait_for

pytestmark = pytest.mark.e2e

# A revocation lands everywhere "within about a second"; this leaves room for a busy 2-core machine.
REVOCATION_DEADLINE_S = 3.0
# The first key event waits for the services' consumer groups to join the embedded broker.
FIRST_EVENT_DEADLINE_S = 30.0
# Where each service answers a GET to any valid key.
READ_PATHS = {"seeds": "/v1/seeds", "needs": "/v1/needs", "matcher": "/v1/index", "notifications": "/v1/subscriptions"}


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        data_dir=tmp_path / "data", free_ports=True, trace_file=tmp_path / "spans.jsonl", log_dir=tmp_path / "logs",
        # No periodic reload during a test: what the tests see is the events' work, or the start's load.
        env={"MATCHNET_KEY_RESYNC_INTERVAL_S": "3600"},
    )
    try:
        net.start()
        yield net
    finally:
        net.stop()


def admin(net: LocalNetwork) -> httpx.Client:
    return httpx.Client(base_url=net.urls["notifications"], timeout=10.0,
                        headers={"Authorization": f"Bearer {net.admin_key}"})


def issue(net: LocalNetwork, **body: Any) -> dict[str, Any]:
    with admin(net) as registry:
        response = registry.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def revoke(net: LocalNetwork, key_id: str) -> None:
    with admin(net) as registry:
        assert registry.delete(f"/v1/api-keys/{key_id}").status_code == 200


def status_in(net: LocalNetwork, service: str, key: str) -> int:
    response = httpx.get(net.urls[service] + READ_PATHS[service], headers={"Authorization": f"Bearer {key}"},
                         timeout=10.0)
    return response.status_code


def accepted_everywhere(net: LocalNetwork, key: str) -> bool:
    return all(status_in(net, service, key) == 200 for service in SERVICES)


def refused_everywhere(net: LocalNetwork, key: str) -> bool:
    return all(status_in(net, service, key) == 401 for service in SERVICES)


def unpublished_key_events(net: LocalNetwork) -> int:
    """Key events still in the registry's outbox (read from its SQLite file)."""
    path = net.database_urls["notifications"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        query = "SELECT count(*) FROM outbox_event WHERE topic = ? AND published_at IS NULL"
        return int(connection.execute(query, (Topic.api_keys.value,)).fetchone()[0])


def assert_never_written(net: LocalNetwork, keys: list[str]) -> None:
    """No log, span or database file of the network holds a key or its secret."""
    assert net.trace_file is not None
    files = [*net.log_dir.glob("*.log"), net.trace_file, *net.data_dir.glob("*.db*")]
    assert any(path.name.endswith(".db") for path in files)
    for path in files:
        content = path.read_bytes()
        for key in keys:
            parts = split_api_key(key)
            assert parts is not None
            assert parts[1].encode() not in content, f"the secret of {parts[0]} is in {path.name}"


def test_a_key_revoked_at_the_registry_is_refused_by_every_service_within_about_a_second(
    network: LocalNetwork,
) -> None:
    issued = issue(network, role="office", office_id="office-13", label="東京都 窓口")
    key = issued["api_key"]
    wait_for(lambda: accepted_everywhere(network, key), FIRST_EVENT_DEADLINE_S, "every service to accept the key")

    revoke(network, issued["key_id"])
    revoked_at = time.monotonic()
    wait_for(lambda: status_in(network, "seeds", key) == 401, REVOCATION_DEADLINE_S, "seeds to refuse the key")
    seconds = time.monotonic() - revoked_at
    wait_for(lambda: refused_everywhere(network, key), REVOCATION_DEADLINE_S, "every service to refuse the key")

    print(f"revocation reached seeds after {seconds * 1000:.0f} ms")
    assert_never_written(network, [key])


def test_a_restarted_service_loads_the_keys_it_missed_from_the_registry(network: LocalNetwork) -> None:
    earlier = issue(network, role="partner", partner_id="tlo-hokkaido")
    wait_for(lambda: status_in(network, "seeds", earlier["api_key"]) == 200, FIRST_EVENT_DEADLINE_S,
             "seeds to accept the first key")

    network.stop_service("seeds")
    later = issue(network, role="office", office_id="office-01")
    revoke(network, earlier["key_id"])
    wait_for(lambda: unpublished_key_events(network) == 0, 10, "the registry to publish both events …")
    network.restart_broker(kill=True)  # … to a broker that forgets them: it keeps its topics in memory
    network.start_service("seeds")  # returns once /readyz answers, i.e. after the start's load

    assert status_in(network, "seeds", later["api_key"]) == 200
    assert status_in(network, "seeds", earlier["api_key"]) == 401
    assert_never_written(network, [earlier["api_key"], later["api_key"]])
