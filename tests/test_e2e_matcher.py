"""The matcher's behaviour over time, on the real broker and processes: what each office is told as seeds
and needs come, change and go; feedback; restarts; two replicas. The pairings topic is read directly."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from matchnet.network import LocalNetwork
from tests.e2e_support import wait_for
from tests.factories import NEED_BODY, SEED_BODY
from tests.matcher_support import PairingsTap, matcher_replica, pairings_tap

pytestmark = pytest.mark.e2e

SETTLE_S = 1.0  # long enough for an event that should not come to have come (each hop takes milliseconds)
THERMOELECTRIC_SEED = SEED_BODY  # 北海道 (office-01): an organic thermoelectric sheet for low-temperature waste heat
WASTE_HEAT_NEED = NEED_BODY  # 東京都 (office-13): "工場の排熱を有効活用したい"
OSAKA_THERMOELECTRIC_SEED = {
    **SEED_BODY, "title": "工場排熱から発電する熱電変換モジュール", "owner_org": "大阪工業技術センター",
    "owner_type": "public_research_institute", "prefecture": "27",
    "summary": "工場の排熱で発電する熱電変換モジュール。配管や炉の排熱回収に使える。",
    "description": "100〜200℃の工場排熱から発電する熱電変換モジュール。配管や炉に取り付けて排熱回収と省エネに使える。",
}
OSAKA_WASTE_HEAT_NEED = {
    **NEED_BODY, "title": "炉の排熱で発電したい", "company_name": "大阪金属熱処理株式会社", "prefecture": "27",
    "summary": "熱処理炉の排熱を捨てている。発電して省エネしたい。",
    "description": "熱処理炉から出る排熱を捨てている。排熱で発電し、工場の電気代を下げたい。",
}
UNRELATED_SEED = {  # shares a field with the needs, not their substance
    **SEED_BODY, "title": "洋上風力タービン翼の着氷検知", "prefecture": "01",
    "summary": "風車の翼に付いた氷を振動で検知する。冬の停止時間を減らす。",
    "description": "洋上風力発電のタービン翼に付着した氷を、翼の振動スペクトルから検知する。",
    "keywords": ["風力発電", "着氷"], "fields": ["energy"], "patent_numbers": [],
}


def started(tmp_path: Path, **env: str) -> LocalNetwork:
    network = LocalNetwork(
        data_dir=tmp_path / "data", free_ports=True, log_dir=tmp_path / "logs",
        env={"MATCHNET_MATCHER_TOP_K": "2", **env},
    )
    return network.start()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = started(tmp_path)
    try:
        yield net
    finally:
        net.stop()


def api(net: LocalNetwork, service: str, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=net.urls[service], timeout=10.0,
                        headers={"Authorization": f"Bearer {key or net.admin_key}"})


def register(net: LocalNetwork, kind: str, body: dict[str, Any]) -> str:
    with api(net, f"{kind}s") as client:
        response = client.post(f"/v1/{kind}s", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def change_status(net: LocalNetwork, kind: str, profile_id: str, status: str) -> None:
    with api(net, f"{kind}s") as client:
        version = client.get(f"/v1/{kind}s/{profile_id}").json()["version"]
        response = client.post(f"/v1/{kind}s/{profile_id}/status", json={"status": status},
                               headers={"If-Match": f'"{version}"'})
    assert response.status_code == 200, response.text


def patch(net: LocalNetwork, kind: str, profile_id: str, changes: dict[str, Any]) -> None:
    with api(net, f"{kind}s") as client:
        version = client.get(f"/v1/{kind}s/{profile_id}").json()["version"]
        response = client.patch(f"/v1/{kind}s/{profile_id}", json=changes, headers={"If-Match": f'"{version}"'})
    assert response.status_code == 200, response.text


def members(event: Any) -> list[str]:
    """The other side of each pairing of a list event, in rank order."""
    own = event.data["trigger_id"]
    return [p["need"]["id"] if p["seed"]["id"] == own else p["seed"]["id"] for p in event.data["pairings"]]


def the_one(tap: PairingsTap, kind: str, *, office: str, trigger: str) -> Any:
    events = wait_for(lambda: tap.of(kind, office=office, trigger=trigger), 20, f"{kind} for {office} on {trigger}")
    return events[0]


def settled(tap: PairingsTap) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Every event once the matcher has been quiet for a moment."""
    while True:
        before = len(tap.snapshot())
        time.sleep(SETTLE_S)  # not waiting for a thing: giving events that should not come the time to come
        if len(tap.snapshot()) == before:
            return tap.snapshot()


def no_event_twice(events: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    repeated = [e for e, n in Counter(events).items() if n > 1]
    assert repeated == [], f"published twice: {repeated}"


def need_list(net: LocalNetwork, need_id: str, url: str | None = None) -> list[str]:
    with httpx.Client(base_url=url or net.urls["matcher"], timeout=10.0,
                      headers={"Authorization": f"Bearer {net.admin_key}"}) as client:
        return [p["seed"]["id"] for p in client.get(f"/v1/needs/{need_id}/pairings").json()]


def test_each_office_is_told_of_its_lists_as_seeds_and_needs_come_change_and_go(network: LocalNetwork) -> None:
    with pairings_tap(network) as tap:
        hokkaido_seed = register(network, "seed", THERMOELECTRIC_SEED)
        # The topics are consumed independently: a need ranked before the seed's event is paired
        # when it arrives (through the seed's list). Here the need comes after.
        wait_for(lambda: indexed_seeds(network) == 1, 10, "the seed in the matcher's index")
        tokyo_need = register(network, "need", WASTE_HEAT_NEED)

        # A new need: its list goes to its office, and the seed's office hears that its seed was proposed.
        assert members(the_one(tap, "proposed", office="office-13", trigger=tokyo_need)) == [hokkaido_seed]
        assert members(the_one(tap, "proposed", office="office-01", trigger=tokyo_need)) == [hokkaido_seed]

        # A new seed: every office whose needs it fits gets its own list; the needs' lists take it in.
        osaka_need = register(network, "need", OSAKA_WASTE_HEAT_NEED)
        the_one(tap, "proposed", office="office-27", trigger=osaka_need)
        osaka_seed = register(network, "seed", OSAKA_THERMOELECTRIC_SEED)
        assert set(members(the_one(tap, "proposed", office="office-27", trigger=osaka_seed))) == {
            tokyo_need, osaka_need}
        assert members(the_one(tap, "proposed", office="office-13", trigger=osaka_seed)) == [tokyo_need]
        update = the_one(tap, "updated", office="office-13", trigger=tokyo_need)
        assert set(members(update)) == {hokkaido_seed, osaka_seed}
        assert (update.data["cause_kind"], update.data["cause_id"]) == ("seed", osaka_seed)
        assert set(members(the_one(tap, "updated", office="office-27", trigger=osaka_need))) == {
            hokkaido_seed, osaka_seed}
        before = settled(tap)

        # A seed that does not enter the (full, top_k=2) lists changes no need's list.
        unrelated = register(network, "seed", UNRELATED_SEED)
        wait_for(lambda: indexed_seeds(network) == 3, 10, f"{unrelated} in the matcher's index")
        after = settled(tap)
        assert [e for e in after[len(before):] if e[0] == "updated"] == []
        assert set(need_list(network, tokyo_need)) == {hokkaido_seed, osaka_seed}

        # A change that moves nothing (the need is ranked again, to the same list) publishes nothing.
        handled = events_handled(network)
        patch(network, "need", tokyo_need, {"external_id": "TKY-2026-001"})
        wait_for(lambda: events_handled(network) > handled, 10, "the need's update ranked")
        assert settled(tap) == after

        # A withdrawn seed: its pairings are retracted to every office that had them.
        with api(network, "seeds") as seeds:
            assert seeds.delete(f"/v1/seeds/{hokkaido_seed}", headers={"If-Match": '"1"'}).status_code == 200
        for office in ("office-13", "office-27", "office-01"):
            retraction = the_one(tap, "retracted", office=office, trigger=hokkaido_seed)
            assert retraction.data["reason"] == "withdrawn"
            assert {p["seed"]["id"] for p in retraction.data["pairings"]} == {hokkaido_seed}
        assert {p["need"]["id"] for p in the_one(tap, "retracted", office="office-01",
                                                  trigger=hokkaido_seed).data["pairings"]} == {tokyo_need, osaka_need}
        wait_for(lambda: hokkaido_seed not in need_list(network, tokyo_need), 10, "the seed gone from the list")

        events = settled(tap)
        no_event_twice(events)
        for event in tap.events:
            assert event.subject == event.data["office_id"], "keyed by office"


def indexed_seeds(net: LocalNetwork) -> int:
    with api(net, "matcher") as matcher:
        return int(matcher.get("/v1/index").json()["seeds"])


def events_handled(net: LocalNetwork) -> int:
    with api(net, "matcher") as matcher:
        return int(matcher.get("/v1/index").json()["events_handled"])


def issue_key(net: LocalNetwork, **body: str) -> str:
    with api(net, "notifications") as notifications:
        response = notifications.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    key = str(response.json()["api_key"])
    with api(net, "matcher", key) as matcher:  # the matcher learns new keys from the key events
        wait_for(lambda: matcher.get("/v1/index").status_code == 200, 10, "the key known to the matcher")
    return key


def test_feedback_is_checked_recorded_as_an_event_and_a_dismissed_pair_never_returns(
    network: LocalNetwork,
) -> None:
    tokyo = issue_key(network, role="office", office_id="office-13")
    osaka = issue_key(network, role="office", office_id="office-27")
    operator = issue_key(network, role="operator")
    with pairings_tap(network) as tap:
        seed_id = register(network, "seed", THERMOELECTRIC_SEED)
        need_id = register(network, "need", WASTE_HEAT_NEED)
        [pairing] = the_one(tap, "proposed", office="office-13", trigger=need_id).data["pairings"]
        feedback = f"/v1/pairings/{pairing['pairing_id']}/feedback"

        with api(network, "matcher", osaka) as matcher:  # neither the need's nor the seed's office
            response = matcher.post(feedback, json={"verdict": "dismissed"})
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
        with api(network, "matcher", operator) as matcher:
            assert matcher.post(feedback, json={"verdict": "dismissed"}).status_code == 403
        with api(network, "matcher", tokyo) as matcher:
            invalid = matcher.post(feedback, json={"verdict": "maybe"})
            assert invalid.status_code == 422
            assert invalid.json()["errors"][0]["field"] == "verdict"
            assert matcher.post(feedback, json={"verdict": "dismissed", "extra": 1}).status_code == 422
            assert matcher.post("/v1/pairings/pair_nope/feedback", json={"verdict": "accepted"}).status_code == 404

            given = matcher.post(feedback, json={"verdict": "dismissed", "reason": "既に取引がある"},
                                 headers={"Idempotency-Key": "fb-1"})
            assert given.status_code == 201, given.text
            assert given.json()["given_by_office_id"] == "office-13"
            replay = matcher.post(feedback, json={"verdict": "dismissed", "reason": "既に取引がある"},
                                  headers={"Idempotency-Key": "fb-1"})
            assert replay.status_code == 201 and replay.json()["id"] == given.json()["id"]
            again = matcher.post(feedback, json={"verdict": "accepted"})
            assert again.status_code == 409 and again.json()["errors"][0]["field"] == "verdict"
            assert [f["verdict"] for f in matcher.get(feedback).json()] == ["dismissed"]

        event = the_one(tap, "feedback", office=None, trigger=None)  # type: ignore[arg-type]
        assert event.subject == pairing["pairing_id"]
        assert (event.data["office_id"], event.data["verdict"], event.data["reason"]) == (
            "office-13", "dismissed", "既に取引がある")
        assert need_list(network, need_id) == []
        dismissed_at = len(tap.events)

        # Survives a restart: the need changes and a second seed arrives; the dismissed pair stays out.
        network.stop_service("matcher")
        network.start_service("matcher")
        patch(network, "need", need_id, {"title": "鋳造工程の排熱を電気に変えたい"})
        osaka_seed = register(network, "seed", OSAKA_THERMOELECTRIC_SEED)
        wait_for(lambda: need_list(network, need_id) == [osaka_seed], 20, "the second seed in the need's list")
        settled(tap)
        for event in tap.events[dismissed_at:]:
            pairs = {(p["seed"]["id"], p["need"]["id"]) for p in event.data.get("pairings", [])}
            assert (seed_id, need_id) not in pairs, f"the dismissed pair published again: {event.data}"


def test_a_restart_rebuilds_the_index_and_resumes_without_missing_or_repeating_anything(
    network: LocalNetwork,
) -> None:
    with pairings_tap(network) as tap:
        seed_id = register(network, "seed", THERMOELECTRIC_SEED)
        need_id = register(network, "need", WASTE_HEAT_NEED)
        the_one(tap, "proposed", office="office-13", trigger=need_id)

        # Killed right away: what it applied since its last offset commit is read again after the start.
        network.stop_service("matcher", kill=True)
        # While it is away: a new need, a new seed, a change that moves nothing.
        osaka_need = register(network, "need", OSAKA_WASTE_HEAT_NEED)
        osaka_seed = register(network, "seed", OSAKA_THERMOELECTRIC_SEED)
        patch(network, "need", need_id, {"keywords": ["排熱", "省エネ", "鋳造"]})

        network.start_service("matcher", wait=False)
        during_start = register(network, "need", {**WASTE_HEAT_NEED, "title": "乾燥炉の排熱を電気にしたい"})
        network.wait_ready(["matcher"])

        the_one(tap, "proposed", office="office-27", trigger=osaka_need)
        the_one(tap, "proposed", office="office-13", trigger=during_start)
        the_one(tap, "proposed", office="office-27", trigger=osaka_seed)
        for need in (need_id, osaka_need, during_start):
            wait_for(lambda need=need: set(need_list(network, need)) == {seed_id, osaka_seed}, 30,
                     f"both seeds in the list of {need}")
        events = settled(tap)
        no_event_twice(events)
        proposed = Counter((e[1], e[2]) for e in events if e[0] == "proposed")
        assert all(n == 1 for n in proposed.values()), proposed
        assert proposed[("office-13", need_id)] == 1, "the first need's list, proposed before the kill, not again"


def test_two_replicas_share_the_ranking_each_with_the_whole_index_and_publish_each_pairing_once(
    tmp_path: Path,
) -> None:
    net = started(tmp_path, MATCHNET_MATCHER_REPLICA_ID="a", MATCHNET_MATCHER_TOP_K="10")
    try:
        with matcher_replica(net, "b", tmp_path / "logs") as replica, pairings_tap(net) as tap:
            urls = [net.urls["matcher"], replica.url]

            def index(url: str) -> dict[str, Any]:
                return httpx.get(url + "/v1/index", headers={"Authorization": f"Bearer {net.admin_key}"}).json()

            every_partition = 2 * net.topic_partitions  # of the seeds and the needs topics

            def shared_out() -> bool:
                shares = [set(index(url)["ranking_partitions"]) for url in urls]
                return all(shares) and not shares[0] & shares[1] and len(shares[0] | shares[1]) == every_partition

            wait_for(shared_out, 60, "every partition shared between the two replicas", interval_s=0.2)

            seeds = [register(net, "seed", {**THERMOELECTRIC_SEED, "title": f"熱電変換シート 型式{i}"})
                     for i in range(3)]
            needs: list[str] = []
            while len(needs) < 8 or not all(index(url)["events_handled"] for url in urls):
                title = f"工場の排熱を活用したい 第{len(needs)}工場"
                needs.append(register(net, "need", {**WASTE_HEAT_NEED, "title": title}))
                assert len(needs) < 40, "one replica never ranked anything"

            for url in urls:
                wait_for(lambda url=url: index(url)["needs"] == len(needs) and index(url)["seeds"] == len(seeds), 20,
                         "every profile in both replicas' indexes")
            for need in needs:
                wait_for(lambda need=need: set(need_list(net, need)) == set(seeds), 20, f"the list of {need}")
                the_one(tap, "proposed", office="office-13", trigger=need)
            events = settled(tap)
            no_event_twice(events)
            proposed = Counter((e[1], e[2]) for e in events if e[0] == "proposed")
            assert all(n == 1 for n in proposed.values()), proposed
            assert [index(url)["events_handled"] > 0 for url in urls] == [True, True]

        # Replica b has gone: a takes its partitions over, and still publishes once.
        wait_for(lambda: len(index(net.urls["matcher"])["ranking_partitions"]) == every_partition, 60,
                 "a ranking everything")
        with pairings_tap(net) as tap:
            last = register(net, "need", {**WASTE_HEAT_NEED, "title": "焼成炉の排熱を活用したい"})
            the_one(tap, "proposed", office="office-13", trigger=last)
            assert [e for e in settled(tap) if e[2] == last and e[0] == "proposed" and e[1] == "office-13"] != []
            assert Counter((e[0], e[1], e[2]) for e in tap.snapshot() if e[2] == last)[
                ("proposed", "office-13", last)] == 1
    finally:
        net.stop()
