"""LocalNetwork configuration, the matchnet CLI and the demo data — fast: no broker, no services."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from matchnet.cli import (
    build_parser,
    clip,
    cmd_keys,
    describe_event,
    main,
    network_from_args,
    postgres_urls,
    short_event_type,
)
from matchnet.demo import DemoLoadError, demo_needs, demo_seeds, load_demo
from matchnet.network import (
    ADMIN_KEY_PREFIX,
    SERVICES,
    LocalNetwork,
    NetworkError,
    pick_free_ports,
    port_in_use,
    reset_data_dir,
)
from services.needs.models import NeedCreate
from services.needs.settings import NeedsSettings
from services.seeds.models import SeedCreate
from shared.auth import Role, split_api_key
from shared.events import (
    ApiKeyEntry,
    ApiKeyIssued,
    ApiKeyRevoked,
    DisabledSubscription,
    Envelope,
    EventType,
    Explanation,
    NeedCreated,
    NeedProfile,
    NeedSummary,
    NeedWithdrawn,
    Pairing,
    PairingsProposed,
    PairingsRetracted,
    PairingsUpdated,
    SeedCreated,
    SeedProfile,
    SeedSummary,
    SubscriptionDisabled,
)
from shared.reference import TECHNOLOGY_FIELDS, ProfileStatus
from shared.settings import DEFAULT_BROKER_PORT, DEFAULT_PORTS
from tests.api_harness import ADMIN, ADMIN_KEY, Api, key_registry

# ---- CLI arguments ---------------------------------------------------------------------------


def test_up_defaults_to_the_standard_ports_and_all_services() -> None:
    args = build_parser().parse_args(["up"])
    assert args.command == "up"
    assert args.data_dir == Path(".data")
    assert args.broker_port == DEFAULT_BROKER_PORT == 9092
    assert {name: getattr(args, f"{name}_port") for name in SERVICES} == DEFAULT_PORTS
    assert args.services == list(SERVICES)
    assert not args.demo and not args.fresh and args.postgres is None


def test_up_accepts_demo_fresh_otlp_postgres_and_a_subset_of_services() -> None:
    args = build_parser().parse_args([
        "up", "--demo", "--fresh", "--data-dir", "/tmp/x", "--otlp", "http://127.0.0.1:4318",
        "--postgres", "postgresql://u:p@127.0.0.1/mn_", "--services", "seeds,needs", "--seeds-port", "9001",
    ])
    assert args.demo and args.fresh
    assert args.data_dir == Path("/tmp/x")
    assert args.otlp == "http://127.0.0.1:4318"
    assert args.postgres == "postgresql://u:p@127.0.0.1/mn_"
    assert args.services == ["seeds", "needs"]
    assert args.seeds_port == 9001


def test_up_rejects_an_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--services", "seeds,billing"])
    assert "choose from" in capsys.readouterr().err


def test_serve_knows_the_four_services_only() -> None:
    assert build_parser().parse_args(["serve", "matcher"]).service == "matcher"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "billing"])


def test_demo_load_takes_urls_and_key() -> None:
    args = build_parser().parse_args(
        ["demo-load", "--seeds-url", "http://h:1", "--needs-url", "http://h:2", "--api-key", "k"]
    )
    assert (args.seeds_url, args.needs_url, args.api_key) == ("http://h:1", "http://h:2", "k")


def test_postgres_prefix_gives_one_database_per_service() -> None:
    assert postgres_urls("postgresql://u@db/mn_") == {name: f"postgresql://u@db/mn_{name}" for name in SERVICES}


def test_up_network_uses_the_admin_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", "fixed-admin-key")
    network = network_from_args(build_parser().parse_args(["up", "--data-dir", str(tmp_path)]))
    assert network.admin_key == "fixed-admin-key"
    assert network.trace_file == (tmp_path / "traces.jsonl").resolve()
    assert network.urls["seeds"] == "http://127.0.0.1:8001"


def test_up_network_has_a_random_admin_key_per_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", raising=False)
    args = build_parser().parse_args(["up", "--data-dir", str(tmp_path), "--postgres", "postgresql://db/mn_"])
    first, second = network_from_args(args), network_from_args(args)
    assert first.admin_key.startswith(ADMIN_KEY_PREFIX)
    assert first.admin_key != second.admin_key
    assert first.env_for("needs")["MATCHNET_NEEDS_DATABASE_URL"] == "postgresql://db/mn_needs"


# ---- keys issue ------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Api]:
    with key_registry(tmp_path) as api:
        yield api


def to_registry(registry: Api, seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport that hands the CLI's requests to the registry's routes, remembering each."""

    def forward(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return registry.client.request(
            request.method, request.url.path, params=request.url.params, headers=request.headers,
            content=request.content,
        )

    return httpx.MockTransport(forward)


def test_keys_issue_asks_the_registry_with_the_admin_key_and_prints_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registry: Api
) -> None:
    monkeypatch.setenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("MATCHNET_KEY_REGISTRY_URL", "http://registry.example:8004")
    seen: list[httpx.Request] = []
    args = build_parser().parse_args(["keys", "issue", "--role", "office", "--office-id", "office-13",
                                      "--label", "東京 coordinator"])
    assert cmd_keys(args, transport=to_registry(registry, seen)) == 0
    key = capsys.readouterr().out.strip()

    assert [(r.method, str(r.url)) for r in seen] == [("POST", "http://registry.example:8004/v1/api-keys")]
    assert seen[0].headers["authorization"] == f"Bearer {ADMIN_KEY}"
    parts = split_api_key(key)
    assert parts is not None
    listed = registry.client.get(f"/v1/api-keys/{parts[0]}", headers=ADMIN).json()
    assert (listed["role"], listed["office_id"], listed["label"]) == ("office", "office-13", "東京 coordinator")
    as_office = registry.client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {key}"})
    assert as_office.status_code == 200


def test_keys_list_and_revoke_ask_the_registry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registry: Api
) -> None:
    monkeypatch.delenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", raising=False)
    seen: list[httpx.Request] = []
    issued = registry.client.post("/v1/api-keys", headers=ADMIN, json={"role": "partner", "partner_id": "bank-1"})
    key_id, key = issued.json()["key_id"], issued.json()["api_key"]

    revoke = build_parser().parse_args(["keys", "revoke", key_id, "--api-key", ADMIN_KEY])
    assert cmd_keys(revoke, transport=to_registry(registry, seen)) == 0
    assert capsys.readouterr().out.startswith(f"revoked {key_id} at ")
    listing = build_parser().parse_args(["keys", "list", "--revoked", "--api-key", ADMIN_KEY])
    assert cmd_keys(listing, transport=to_registry(registry, seen)) == 0
    listed = capsys.readouterr().out

    assert [(r.method, r.url.path) for r in seen] == [("DELETE", f"/v1/api-keys/{key_id}"), ("GET", "/v1/api-keys")]
    assert seen[1].url.params["revoked"] == "true"
    assert key_id in listed and "bank-1" in listed and key not in listed
    assert registry.client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_keys_commands_need_an_admin_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", raising=False)
    monkeypatch.delenv("MATCHNET_KEY_REGISTRY_API_KEY", raising=False)
    assert main(["keys", "list"]) == 2
    assert "needs an admin key" in capsys.readouterr().err


def test_keys_issue_refuses_an_unknown_office(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MATCHNET_BOOTSTRAP_ADMIN_KEY", "the-admin-key")  # refused before asking the registry
    assert main(["keys", "issue", "--role", "office", "--office-id", "office-99"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "known office_id" in captured.err


# ---- LocalNetwork configuration --------------------------------------------------------------


def test_pick_free_ports_gives_distinct_bindable_ports() -> None:
    ports = pick_free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use("127.0.0.1", sock.getsockname()[1])
    assert not port_in_use("127.0.0.1", pick_free_ports(1)[0])


def test_free_ports_avoids_the_defaults_and_keeps_explicit_ones(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, free_ports=True, ports={"seeds": 18001})
    assert network.ports["seeds"] == 18001
    chosen = [network.ports[name] for name in SERVICES] + [network.broker_port]
    assert len(set(chosen)) == len(chosen)
    assert network.broker_port != DEFAULT_BROKER_PORT


def test_default_network_uses_standard_ports(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path)
    assert network.urls == {name: f"http://127.0.0.1:{port}" for name, port in DEFAULT_PORTS.items()}
    assert network.bootstrap_servers == "127.0.0.1:9092"


def test_env_for_names_ports_broker_keys_and_data_dir(tmp_path: Path) -> None:
    network = LocalNetwork(
        tmp_path / "data", free_ports=True, admin_key="k-admin", trace_file=tmp_path / "t.jsonl",
        otlp_endpoint="http://127.0.0.1:4318", fetch_max_wait_ms=7,
    )
    env = network.env_for("needs")
    assert env["MATCHNET_NEEDS_PORT"] == str(network.ports["needs"])
    assert env["MATCHNET_NEEDS_HOST"] == "127.0.0.1"
    assert env["MATCHNET_KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{network.broker_port}"
    assert env["MATCHNET_KAFKA_FETCH_MAX_WAIT_MS"] == "7"
    # Short sessions on the embedded broker (groups form sooner), read back as the service reads them.
    assert env["MATCHNET_KAFKA_SESSION_TIMEOUT_MS"] == "3000"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MATCHNET_KAFKA_SESSION_TIMEOUT_MS", raising=False)
        assert NeedsSettings().kafka_session_timeout_ms == 10_000  # the client's default, for Apache Kafka
        patch.setenv("MATCHNET_KAFKA_SESSION_TIMEOUT_MS", env["MATCHNET_KAFKA_SESSION_TIMEOUT_MS"])
        assert NeedsSettings().kafka_session_timeout_ms == 3_000
    assert env["MATCHNET_BOOTSTRAP_ADMIN_KEY"] == "k-admin" == network.admin_key
    assert env["MATCHNET_KEY_REGISTRY_URL"] == network.url_of("notifications")
    assert env["MATCHNET_DATA_DIR"] == str((tmp_path / "data").resolve())
    assert env["MATCHNET_NEEDS_DATABASE_URL"] == f"sqlite:///{(tmp_path / 'data' / 'needs.db').resolve()}"
    assert env["MATCHNET_TRACE_FILE"] == str((tmp_path / "t.jsonl").resolve())
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert not any(name.startswith("MATCHNET_SEEDS_") for name in env)


def test_matcher_env_points_at_the_seeds_and_needs_services(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, free_ports=True)
    env = network.env_for("matcher")
    assert env["MATCHNET_MATCHER_SEEDS_URL"] == network.urls["seeds"]
    assert env["MATCHNET_MATCHER_NEEDS_URL"] == network.urls["needs"]
    assert "MATCHNET_MATCHER_SEEDS_URL" not in network.env_for("notifications")


def test_database_urls_and_extra_env_override_the_defaults(tmp_path: Path) -> None:
    network = LocalNetwork(
        tmp_path, database_urls={"seeds": "postgresql://db/seeds"}, env={"MATCHNET_LOG_LEVEL": "DEBUG"},
    )
    assert network.env_for("seeds")["MATCHNET_SEEDS_DATABASE_URL"] == "postgresql://db/seeds"
    assert network.env_for("needs")["MATCHNET_NEEDS_DATABASE_URL"].startswith("sqlite:///")
    assert network.env_for("matcher")["MATCHNET_LOG_LEVEL"] == "DEBUG"


def test_unknown_service_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="billing"):
        LocalNetwork(tmp_path, services=["seeds", "billing"])
    with pytest.raises(ValueError, match="billing"):
        LocalNetwork(tmp_path).env_for("billing")


def test_selected_services_limit_the_urls(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, services=["seeds", "needs"])
    assert set(network.urls) == {"seeds", "needs"}


def test_reset_data_dir_refuses_a_directory_it_does_not_own(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(NetworkError, match="refusing"):
        reset_data_dir(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_reset_data_dir_empties_a_matchnet_data_directory(tmp_path: Path) -> None:
    (tmp_path / ".matchnet-data").touch()
    (tmp_path / "seeds.db").write_text("x")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "seeds.log").write_text("x")
    reset_data_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---- child processes (tiny stand-ins, not services) ------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


def test_a_child_that_dies_early_reports_its_exit_code_and_log_tail(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, free_ports=True)
    network._spawn("seeds", [sys.executable, "-c", "print('cannot open database'); raise SystemExit(3)"], env={})
    try:
        with pytest.raises(NetworkError) as failure:
            network.wait_ready(["seeds"], timeout_s=10)
        assert "exited with code 3" in str(failure.value)
        assert "cannot open database" in str(failure.value)
    finally:
        network.stop()


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, free_ports=True, stop_timeout_s=5)
    pid_file = tmp_path / "grandchild.pid"
    # A child that starts a grandchild: stop() must end both, leaving no orphan.
    network._spawn("seeds", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], env={"PATH": os.environ["PATH"]})
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    child = network.pid_of("seeds")
    assert child is not None and network.is_running("seeds")
    network.stop()
    assert not network.is_running("seeds")
    deadline = time.monotonic() + 5
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "grandchild survived stop()"
        time.sleep(0.02)


def test_stop_service_with_kill_sends_sigkill(tmp_path: Path) -> None:
    network = LocalNetwork(tmp_path, free_ports=True)
    # Ignores SIGTERM: only a SIGKILL ends it quickly.
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    network._spawn("needs", [sys.executable, "-c", script], env={})
    deadline = time.monotonic() + 10
    while "up" not in network.log_tail("needs"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    network.stop_service("needs", kill=True)
    assert time.monotonic() - started < 2
    assert not network.is_running("needs")


# ---- event lines -----------------------------------------------------------------------------

NOW = datetime(2025, 4, 1, 3, 1, 2, tzinfo=UTC)


def _need(confidentiality: str = "members") -> NeedProfile:
    return NeedProfile(
        id="need_0190aaaaaaaa1234567890abcdef", version=1, title="工場の排熱を有効活用したい", description="…",
        keywords=[], fields=["energy"], company_name="石狩鋳造株式会社", company_size="sme", prefecture="01",
        wanted_forms=["license"], confidentiality=confidentiality, language="ja", status="open",
        created_at=NOW, updated_at=NOW,
    )


def test_short_names_and_clipping() -> None:
    assert short_event_type(EventType.pairings_proposed.value) == "pairings.proposed"
    assert clip("熱電変換" * 20, 10) == "熱電変換…"
    assert clip("short") == "short"


def test_need_created_line_shows_title_and_office() -> None:
    envelope = Envelope.wrap(EventType.need_created, "/matchnet/needs", "need_1", NeedCreated(need=_need()))
    line = describe_event(envelope)
    assert "need.created" in line and "工場の排熱を" in line and "(office-01)" in line
    assert "need_…abcdef" in line


def test_confidential_need_line_hides_the_title() -> None:
    envelope = Envelope.wrap(
        EventType.need_created, "/matchnet/needs", "need_1", NeedCreated(need=_need("confidential"))
    )
    line = describe_event(envelope)
    assert "排熱" not in line and "(confidential)" in line


def test_seed_created_line() -> None:
    seed = SeedProfile(
        id="seed_0190bbbbbbbb00000000000011aa22", version=1, title="熱電変換モジュール", description="…",
        keywords=[], fields=["energy"], owner_org="青葉理工大学", owner_type="university", prefecture="04",
        offers=["license"], language="ja", status="open", created_at=NOW, updated_at=NOW,
    )
    line = describe_event(Envelope.wrap(EventType.seed_created, "/matchnet/seeds", seed.id, SeedCreated(seed=seed)))
    assert "seed.created" in line and "熱電変換モジュール" in line and "(office-04)" in line


def test_a_change_line_shows_the_new_version_and_status_and_still_hides_a_confidential_title() -> None:
    need = _need("confidential").model_copy(update={"version": 3, "status": ProfileStatus.withdrawn})
    line = describe_event(Envelope.wrap(
        EventType.need_withdrawn, "/matchnet/needs", need.id, NeedWithdrawn(need=need, previous_status="open")
    ))
    assert "need.withdrawn" in line and "v3 withdrawn" in line and "(confidential)" in line and "排熱" not in line


def test_pairings_line_counts_candidates_and_names_the_top_one() -> None:
    def pairing(rank: int, score: float, title: str) -> Pairing:
        return Pairing(
            pairing_id=f"pair_{rank}", rank=rank, score=score,
            seed=SeedSummary(id=f"seed_{rank}", title=title, owner_org="o", owner_type="university",
                             prefecture="04", offers=["license"]),
            need=NeedSummary(id="need_1", title="t", prefecture="01", office_id="office-01",
                             company_size="sme", confidentiality="members"),
            explanation=Explanation(),
        )

    proposed = PairingsProposed(
        office_id="office-01", trigger_kind="need", trigger_id="need_0190aaaaaaaa1234567890abcdef",
        pairings=[pairing(2, 0.41, "超音波洗浄"), pairing(1, 0.62, "熱電変換モジュール"), pairing(3, 0.2, "x")],
    )
    line = describe_event(Envelope.wrap(EventType.pairings_proposed, "/matchnet/matcher", "office-01", proposed))
    assert "pairings.proposed office-01 need_…abcdef → 3 seeds, top 0.62 熱電変換モジュール" in line

    updated = PairingsUpdated(**proposed.model_dump(), cause_kind="seed", cause_id="seed_1")
    line = describe_event(Envelope.wrap(EventType.pairings_updated, "/matchnet/matcher", "office-01", updated))
    assert "pairings.updated  office-01 need_…abcdef → 3 seeds, top 0.62" in line
    retracted = PairingsRetracted(**proposed.model_dump(), reason="withdrawn")
    line = describe_event(Envelope.wrap(EventType.pairings_retracted, "/matchnet/matcher", "office-01", retracted))
    assert "pairings.retracted office-01 need_…abcdef withdrawn: 3 pairings withdrawn" in line



def test_key_event_lines_name_the_key_and_its_scope_never_its_hash() -> None:
    entry = ApiKeyEntry(key_id="key_0190cccccccc0000000000000000", role=Role.office, office_id="office-13",
                        secret_hash="a" * 64, created_by="bootstrap-admin", created_at=NOW)
    issued = describe_event(Envelope.wrap(EventType.api_key_issued, "/matchnet/notifications", entry.key_id,
                                          ApiKeyIssued(key=entry)))
    revoked = describe_event(Envelope.wrap(EventType.api_key_revoked, "/matchnet/notifications", entry.key_id,
                                           ApiKeyRevoked(key=entry, revoked_by="bootstrap-admin")))
    assert issued.endswith("apikey.issued     key_0190cccccccc0000000000000000 office office-13")
    assert "apikey.revoked" in revoked and "a" * 64 not in issued + revoked


def test_a_disabled_subscription_line_tells_the_operator_whose_and_why() -> None:
    disabled = SubscriptionDisabled(
        subscription=DisabledSubscription(id="sub_0190dddd", kind="partner", partner_id="tlo-1",
                                          url="https://tlo.example.jp/hooks"),
        reason="failing", consecutive_failures=17, last_error="HTTP 503", disabled_at=NOW,
    )
    line = describe_event(Envelope.wrap(EventType.subscription_disabled, "/matchnet/notifications",
                                        "sub_0190dddd", disabled))
    assert line.endswith("subscription.disabled sub_0190dddd (tlo-1) failing: HTTP 503")

# ---- demo data -------------------------------------------------------------------------------


def test_demo_seeds_are_valid_seed_requests() -> None:
    seeds = [SeedCreate.model_validate(item) for item in demo_seeds()]
    assert len(seeds) >= 300
    assert {seed.language.value for seed in seeds} == {"ja", "en"}
    assert len({seed.external_id for seed in seeds}) == len(seeds)


def test_demo_needs_are_valid_need_requests() -> None:
    needs = [NeedCreate.model_validate(item) for item in demo_needs()]
    assert len(needs) >= 150
    assert sum(need.confidentiality.value == "confidential" for need in needs) >= 1
    assert len({need.external_id for need in needs}) == len(needs)


def test_demo_covers_many_prefectures_and_fields() -> None:
    items = demo_seeds() + demo_needs()
    assert len({item["prefecture"] for item in items}) >= 30
    fields = {code for item in items for code in item["fields"]}
    assert fields == set(TECHNOLOGY_FIELDS)


def test_demo_pairs_business_words_with_technical_words() -> None:
    seed_titles = " ".join(seed["title"] for seed in demo_seeds())
    assert "熱電" in seed_titles
    english_seeds = [seed for seed in demo_seeds() if seed["language"] == "en"]
    assert english_seeds and any(need["language"] == "ja" for need in demo_needs())


async def test_load_demo_imports_seeds_before_needs_in_batches_and_counts_what_existed() -> None:
    seen: list[tuple[str, str, int]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        rows = [json.loads(line) for line in request.content.decode().splitlines()]
        seen.append((request.url.path, request.headers["authorization"], len(rows)))
        existing = sum(row["prefecture"] == "01" for row in rows)
        return httpx.Response(200, json={"received": len(rows), "created": len(rows) - existing, "updated": 0,
                                         "unchanged": existing, "rejected": 0, "errors": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await load_demo("http://seeds", "http://needs/", "k", client=client)

    seed_batches = [n for path, _, n in seen if path == "/v1/seeds:import"]
    need_batches = len(seen) - len(seed_batches)
    paths = [path for path, _, _ in seen]
    assert paths == ["/v1/seeds:import"] * len(seed_batches) + ["/v1/needs:import"] * need_batches
    assert sum(seed_batches) == len(demo_seeds()) and max(seed_batches) <= 100
    assert {auth for _, auth, _ in seen} == {"Bearer k"}
    assert result.seeds_existing == sum(seed["prefecture"] == "01" for seed in demo_seeds())
    assert result.seeds_created + result.seeds_existing == len(demo_seeds())
    assert result.needs_created + result.needs_existing == len(demo_needs())


async def test_load_demo_stops_at_a_refused_row_naming_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"received": 1, "created": 0, "updated": 0, "unchanged": 0, "rejected": 1,
                                         "errors": [{"row": 3, "field": "trl", "message": "too big"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(DemoLoadError, match="row 3 refused: trl"):
            await load_demo("http://seeds", "http://needs", "k", client=client)
