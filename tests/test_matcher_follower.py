"""A replica's index follower on the real broker: it starts from where the topics ended before the
snapshot (nothing between them is lost), and ``caught_up`` returns only once every profile change
published before it is in the replica's index."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from matchnet.network import LocalNetwork
from services.matcher.events import Matcher, apply_to_index
from services.matcher.follower import IndexFollower
from services.matcher.settings import MatcherSettings
from shared.events import Envelope, EventType, NeedCreated, SeedCreated, SeedStatusChanged
from shared.kafka import EventPublisher
from tests.factories import need_profile, seed_profile

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    path: Path = tmp_path_factory.mktemp("follower")
    network = LocalNetwork(data_dir=path / "data", free_ports=True, log_dir=path / "logs", services=())
    try:
        yield network.start()
    finally:
        network.stop()


def seed_created(id: str) -> Envelope:
    return Envelope.wrap(EventType.seed_created, "/matchnet/seeds", id, SeedCreated(seed=seed_profile(id)))


async def test_a_change_published_during_the_snapshot_is_applied_and_one_before_the_pin_is_not(
    broker: LocalNetwork,
) -> None:
    settings = MatcherSettings(kafka_bootstrap_servers=broker.bootstrap_servers, replica_id="t1")
    matcher = Matcher(settings)
    follower = IndexFollower(settings, apply_to_index(matcher))
    publisher = EventPublisher(broker.bootstrap_servers, client_id="test-follower")
    try:
        await publisher.publish(seed_created("seed_before_pin"))  # the snapshot's business, not the stream's
        await follower.pin()
        await publisher.publish(seed_created("seed_during_snapshot"))
        matcher.profiles.apply(seed_profile("seed_during_snapshot"))  # the snapshot saw it too
        closed = seed_profile("seed_during_snapshot", version=2, status="closed")
        await publisher.publish(Envelope.wrap(EventType.seed_status_changed, "/matchnet/seeds", closed.id,
                                              SeedStatusChanged(seed=closed, previous_status="open")))
        running = asyncio.create_task(follower.run())
        await follower.caught_up()
        assert matcher.index.counts() == {"seeds": 0, "needs": 0}
        assert follower.applied_total == 2

        need = need_profile("need_after")
        await publisher.publish(Envelope.wrap(EventType.need_created, "/matchnet/needs", need.id,
                                              NeedCreated(need=need)))
        await follower.caught_up()  # returns only once it is applied
        assert matcher.index.profile("need_after") is not None
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await publisher.stop()
