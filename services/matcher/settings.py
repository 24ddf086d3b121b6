from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings


class MatcherSettings(ServiceSettings):
    """``MATCHNET_MATCHER_*``: where the registries are, how long the lists are, which replica this is."""

    service_name: ClassVar[str] = "matcher"
    model_config = SettingsConfigDict(env_prefix="MATCHNET_MATCHER_", extra="ignore", populate_by_name=True)

    seeds_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['seeds']}"
    needs_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['needs']}"
    # Credential for the index rebuild; defaults to the bootstrap admin key.
    api_key: str | None = None
    top_k: int = Field(10, ge=1, le=100)
    min_score: float = Field(0.05, ge=0, le=1)
    # How many counterparts a new profile is ranked against for entering their lists: a seed that is
    # only a need's 15th match may still be that need's best seed.
    reach: int = Field(20, ge=1, le=500)
    rebuild_timeout_s: float = Field(60.0, gt=0)
    rebuild_page_size: int = Field(200, ge=1, le=200)
    # Set on each replica when more than one runs: each then also follows every profile change into
    # its own index (the ranking is shared through the consumer group). Unset: a single matcher.
    replica_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    catch_up_timeout_s: float = Field(10.0, gt=0)

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), *([self.api_key] if self.api_key else [])]
