from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import RegistrySettings


class NeedsSettings(RegistrySettings):
    """``MATCHNET_NEEDS_PORT``, ``_DATABASE_URL``, ``_HOST``, ``_EXPIRY_SWEEP_INTERVAL_S`` + the common ones."""

    service_name: ClassVar[str] = "needs"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_NEEDS_", extra="ignore", populate_by_name=True)
