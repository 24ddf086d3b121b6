from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SeedsSettings(ServiceSettings):
    """``MATCHNET_SEEDS_PORT``, ``MATCHNET_SEEDS_DATABASE_URL``, ``MATCHNET_SEEDS_HOST`` + the common ones."""

    service_name: ClassVar[str] = "seeds"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_SEEDS_", extra="ignore", populate_by_name=True)
