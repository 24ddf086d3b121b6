from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

DAY_S = 86_400.0


class NotificationsSettings(ServiceSettings):
    """``MATCHNET_NOTIFICATIONS_PORT``, ``..._DATABASE_URL``, ``..._DELIVERY_*`` + the common ones."""

    service_name: ClassVar[str] = "notifications"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_NOTIFICATIONS_", extra="ignore", populate_by_name=True)

    # Off in production: webhook targets must then be https and resolve to public addresses (no
    # server-side request forgery into our own network). `matchnet up` and the tests turn it on.
    development_mode: bool = Field(
        False, validation_alias=AliasChoices("MATCHNET_NOTIFICATIONS_DEVELOPMENT_MODE", "development_mode")
    )

    delivery_poll_interval_s: float = Field(0.5, gt=0)
    delivery_concurrency: int = Field(64, ge=1)
    delivery_concurrency_per_subscription: int = Field(4, ge=1)
    # The whole attempt (connect, send, answer) must end within this.
    delivery_timeout_s: float = Field(5.0, gt=0)
    # The schedule: waits of base × 2^(n-1), capped, each drawn in [half, all] of it; with the
    # defaults 17 attempts span about a day (15 to 29 hours), then the delivery is dead.
    delivery_max_attempts: int = Field(17, ge=1)
    delivery_backoff_base_s: float = Field(5.0, gt=0)
    delivery_backoff_cap_s: float = Field(6 * 3600.0, gt=0)
    # How long a worker holds a delivery it is sending; None: max(30 s, 6 × the timeout).
    delivery_lease_s: float | None = Field(None, gt=0)
    # A subscription whose every attempt failed for longer than this is disabled.
    subscription_disable_after_s: float = Field(DAY_S, gt=0)
    # Both secrets sign for this long after a rotation, unless the rotation asks otherwise.
    secret_rotation_overlap_s: float = Field(DAY_S, ge=0, le=7 * DAY_S)
    # The event log behind GET /v1/stream and replays; at least seven days are promised.
    event_log_retention_s: float = Field(8 * DAY_S, gt=0)
    # A finished delivery (succeeded, failed, dead, cancelled) and its attempts are kept this long.
    delivery_log_retention_s: float = Field(90 * DAY_S, gt=0)
    stream_keepalive_s: float = Field(15.0, gt=0)
    # Daily digests cover one calendar day in this zone and leave just after it ends.
    digest_time_zone: str = "Asia/Tokyo"
    digest_check_interval_s: float = Field(60.0, gt=0)

    @property
    def lease_s(self) -> float:
        return self.delivery_lease_s or max(30.0, 6 * self.delivery_timeout_s)
