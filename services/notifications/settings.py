from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    """``MATCHNET_NOTIFICATIONS_PORT``, ``..._DATABASE_URL``, ``..._DELIVERY_*`` + the common ones."""

    service_name: ClassVar[str] = "notifications"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_NOTIFICATIONS_", extra="ignore", populate_by_name=True)

    delivery_poll_interval_s: float = Field(0.5, gt=0)
    delivery_concurrency: int = Field(16, ge=1)
    delivery_concurrency_per_subscription: int = Field(4, ge=1)
    delivery_timeout_s: float = Field(5.0, gt=0)
    delivery_max_attempts: int = Field(8, ge=1)
    delivery_backoff_base_s: float = Field(1.0, gt=0)
    delivery_backoff_cap_s: float = Field(86_400.0, gt=0)
