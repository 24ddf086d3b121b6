from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import RegistrySettings


class SeedsSettings(RegistrySettings):
    """``MATCHNET_SEEDS_PORT``, ``_DATABASE_URL``, ``_HOST``, ``_EXPIRY_SWEEP_INTERVAL_S`` + the common ones."""

    service_name: ClassVar[str] = "seeds"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_SEEDS_", extra="ignore", populate_by_name=True)
