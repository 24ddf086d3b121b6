from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NeedsSettings(ServiceSettings):
    """``MATCHNET_NEEDS_PORT``, ``MATCHNET_NEEDS_DATABASE_URL``, ``MATCHNET_NEEDS_HOST`` + the common ones."""

    service_name: ClassVar[str] = "needs"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_NEEDS_", extra="ignore", populate_by_name=True)
