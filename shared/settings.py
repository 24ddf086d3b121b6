"""Settings from environment variables, one prefix for the whole network: ``MATCHNET_``.

Network-wide settings (broker, data directory, keys, telemetry) are read from ``MATCHNET_<NAME>``;
a service's own settings (port, database) from ``MATCHNET_<SERVICE>_<NAME>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# One place for every default port.
DEFAULT_PORTS: dict[str, int] = {"seeds": 8001, "needs": 8002, "matcher": 8003, "notifications": 8004}
DEFAULT_BROKER_PORT = 9092
# What the embedded broker gives a topic it creates itself (on any client's first metadata request
# after it restarts empty): topics made with as many keep their layout, and every key its partition.
DEFAULT_TOPIC_PARTITIONS = 4
# The one service that issues, lists and revokes API keys (the others replicate them): it already
# deals with the offices and partner portals as webhook subscribers, so who they are lives there.
KEY_REGISTRY_SERVICE = "notifications"


def sqlite_database_url(data_dir: Path, service_name: str) -> str:
    """The database a service uses when given no URL: ``<data_dir>/<service>.db``."""
    return f"sqlite:///{(Path(data_dir) / f'{service_name}.db').resolve()}"


def _common(name: str, *extra: str) -> AliasChoices:
    return AliasChoices(f"MATCHNET_{name.upper()}", *extra)


class ServiceSettings(BaseSettings):
    """Settings every service reads. Subclasses set ``service_name`` and their own env prefix."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path(".data"), validation_alias=_common("data_dir"))
    kafka_bootstrap_servers: str = Field(
        f"127.0.0.1:{DEFAULT_BROKER_PORT}", validation_alias=_common("kafka_bootstrap_servers")
    )
    # The embedded broker answers a waiting fetch only when this expires: keep it low.
    kafka_fetch_max_wait_ms: int = Field(5, ge=1, le=1000, validation_alias=_common("kafka_fetch_max_wait_ms"))
    kafka_topic_partitions: int = Field(
        DEFAULT_TOPIC_PARTITIONS, ge=1, validation_alias=_common("kafka_topic_partitions")
    )
    # How long a consumer may be silent before its group gives its partitions to another (heartbeats
    # every third of it). The embedded broker completes a group join only after a fraction of it and,
    # after a restart, sometimes only once the old member's session ran out: the local network sets 3 s.
    kafka_session_timeout_ms: int = Field(
        10_000, ge=1_000, le=300_000, validation_alias=_common("kafka_session_timeout_ms")
    )
    # Off where topics are declared with their replication and retention (Strimzi, the compose init job).
    kafka_create_topics: bool = Field(True, validation_alias=_common("kafka_create_topics"))
    log_level: str = Field("INFO", validation_alias=_common("log_level"))
    bootstrap_admin_key: str | None = Field(None, validation_alias=_common("bootstrap_admin_key"))
    # The service that owns the API-key registry; the others load its list at start (shared.apikeys).
    key_registry_url: str = Field(
        f"http://127.0.0.1:{DEFAULT_PORTS[KEY_REGISTRY_SERVICE]}", validation_alias=_common("key_registry_url")
    )
    # An admin key to read the registry with; defaults to the bootstrap admin key.
    key_registry_api_key: str | None = Field(None, validation_alias=_common("key_registry_api_key"))
    # How long a start waits for the registry before it serves with the keys it stored before.
    key_sync_timeout_s: float = Field(30.0, gt=0, validation_alias=_common("key_sync_timeout_s"))
    # The full reload from the registry repeats this often: a safety net under the key events.
    key_resync_interval_s: float = Field(60.0, gt=0, validation_alias=_common("key_resync_interval_s"))
    # Key events are rare: a long fetch wait costs no idle CPU and bounds how late a revocation lands.
    key_events_fetch_max_wait_ms: int = Field(
        250, ge=1, le=1000, validation_alias=_common("key_events_fetch_max_wait_ms")
    )
    otlp_endpoint: str | None = Field(
        None, validation_alias=AliasChoices("MATCHNET_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    # Push metrics over OTLP too (off for a traces-only backend such as Jaeger; /metrics serves them anyway).
    otlp_metrics: bool = Field(True, validation_alias=_common("otlp_metrics"))
    # Writes every finished span as one JSON line to this file (tests, local debugging).
    trace_file: Path | None = Field(None, validation_alias=_common("trace_file"))
    outbox_poll_interval_s: float = Field(0.5, gt=0, validation_alias=_common("outbox_poll_interval_s"))
    # That poll leaves rows younger than this to the replica that committed them (it publishes them).
    outbox_settle_s: float = Field(2.0, ge=0, validation_alias=_common("outbox_settle_s"))
    # Housekeeping (shared/housekeeping.py), hourly: published outbox rows are kept this long, and
    # the inbox's processed event ids this long (longer than any topic keeps an event: 30 days).
    outbox_retention_s: float = Field(7 * 86_400.0, gt=0, validation_alias=_common("outbox_retention_s"))
    inbox_retention_s: float = Field(35 * 86_400.0, gt=0, validation_alias=_common("inbox_retention_s"))
    # On SIGTERM /readyz fails at once; the server stops this much later (load balancers notice first).
    shutdown_delay_s: float = Field(0.0, ge=0, validation_alias=_common("shutdown_delay_s"))
    # Stopping consumers, finishing requests and flushing the outbox must end within this.
    drain_timeout_s: float = Field(10.0, gt=0, validation_alias=_common("drain_timeout_s"))

    # Container allocations between two young collections of the garbage collector (Python's
    # default is 700). Reference counting frees everything but cycles, so a higher threshold only
    # collects cycles later; at 700 a service that allocates per event collects thousands of times a
    # second (the matcher: about a tenth of a need's CPU, and most of its slowest needs). See README.
    gc_young_threshold: int = Field(50_000, ge=100, validation_alias=_common("gc_young_threshold"))

    host: str = "127.0.0.1"
    port: int = 0
    database_url: str | None = None

    def model_post_init(self, __context: object) -> None:
        if self.port == 0:
            self.port = DEFAULT_PORTS.get(self.service_name, 8000)

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return sqlite_database_url(self.data_dir, self.service_name)

    def secret_values(self) -> list[str]:
        """The configured credentials, so logs can leave them out wherever they appear."""
        return [value for value in (self.bootstrap_admin_key, self.key_registry_api_key) if value]

    @property
    def owns_api_keys(self) -> bool:
        """Whether this service is the API-key registry (the others replicate it)."""
        return self.service_name == KEY_REGISTRY_SERVICE


class RegistrySettings(ServiceSettings):
    """What the seeds and needs registries add: how often the expiry sweep looks for expired profiles."""

    expiry_sweep_interval_s: float = Field(60.0, gt=0)
