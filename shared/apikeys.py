"""Every service's copy of the API-key registry, so each verifies keys locally.

The registry (the notifications service, ``KEY_REGISTRY_SERVICE``) writes a key and its
``apikey.issued`` or ``apikey.revoked`` event in one transaction (outbox). Every other service
consumes ``matchnet.apikeys`` into its own ``api_key`` table (inbox: once per event) and, since the
embedded broker forgets its topics on a restart, also loads the whole list from the registry over
HTTP when it starts and again every ``key_resync_interval_s``.

Merging is monotonic: rows are only added, and a key once revoked stays revoked whatever arrives
later (an old event redelivered, a snapshot read just before the revocation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from shared.auth import ApiKey
from shared.db import Database, OnConflictStatement
from shared.events import ApiKeyEntry, ApiKeyIssued, ApiKeyRevoked, Envelope
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# The registry's full list with the secrets' hashes (admin only): what a replica loads.
EXPORT_PATH = "/v1/api-keys:export"
EXPORT_PAGE_SIZE = 200

_API_KEY = ApiKey.__table__  # type: ignore[attr-defined]


def _merge_statement(dialect: str) -> Any:
    statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_API_KEY)
    # An entry never changes but for its revocation, and that is never undone.
    return statement.on_conflict_do_update(
        index_elements=["key_id"],
        set_={"revoked_at": func.coalesce(_API_KEY.c.revoked_at, statement.excluded.revoked_at)},
    )


_MERGE = OnConflictStatement(_merge_statement, column_keys=[column.name for column in _API_KEY.columns])


def entry_of(record: ApiKey) -> ApiKeyEntry:
    """What other services are told of a stored key (the hash travels, the secret never exists here)."""
    return ApiKeyEntry.model_validate(record.model_dump())


def store_entries(session: Session, entries: Sequence[ApiKeyEntry]) -> None:
    """Add new keys and revocations to this service's table; a revocation is never undone."""
    if not entries:
        return
    rows = [{**entry.model_dump(), "role": entry.role.value} for entry in entries]
    _MERGE.execute(session.connection(), rows)


def apply_api_key_event(session: Session, envelope: Envelope) -> None:
    """The consumer handler of ``matchnet.apikeys``."""
    payload = envelope.payload()
    if isinstance(payload, ApiKeyIssued | ApiKeyRevoked):
        store_entries(session, [payload.key])


class RegistryUnavailable(RuntimeError):
    """The key registry did not answer with its list before the deadline."""


async def load_api_keys(db: Database, client: httpx.AsyncClient) -> int:
    """Read the registry's whole list (page by page) into ``db``; returns how many entries it read.

    ``client`` is bound to the registry's base URL and carries an admin key. Raises
    ``httpx.HTTPError`` or ``ValueError`` if the registry does not answer with a list.
    """
    cursor: str | None = None
    loaded = 0
    while True:
        params: dict[str, str | int] = {"limit": EXPORT_PAGE_SIZE}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(EXPORT_PATH, params=params)
        response.raise_for_status()
        page = response.json()
        entries = [ApiKeyEntry.model_validate(item) for item in page["items"]]
        await asyncio.to_thread(_store_page, db, entries)
        loaded += len(entries)
        cursor = page.get("next_cursor")
        if not cursor:
            return loaded


def _store_page(db: Database, entries: list[ApiKeyEntry]) -> None:
    with db.session() as session:
        store_entries(session, entries)


class ApiKeyReplica:
    """A service's replica of the registry: loaded at start, reloaded periodically (events do the rest)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    def client(self) -> httpx.AsyncClient | None:
        admin_key = self.settings.key_registry_api_key or self.settings.bootstrap_admin_key
        if not admin_key:
            return None
        return httpx.AsyncClient(
            base_url=self.settings.key_registry_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10.0
        )

    async def load(self, db: Database, timeout_s: float) -> int:
        """Load the registry's list, retrying with backoff until ``timeout_s``; RegistryUnavailable after."""
        client = self.client()
        if client is None:
            raise RegistryUnavailable("no admin key to read the key registry with (MATCHNET_BOOTSTRAP_ADMIN_KEY)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        backoff = 0.1
        async with client:
            while True:
                try:
                    return await load_api_keys(db, client)
                except (httpx.HTTPError, ValueError) as error:
                    if isinstance(error, httpx.HTTPStatusError) and error.response.is_client_error:
                        raise RegistryUnavailable(  # a refused credential: waiting will not help
                            f"key registry {self.settings.key_registry_url} refused the list: "
                            f"{error.response.status_code} (MATCHNET_KEY_REGISTRY_API_KEY must be an admin key)"
                        ) from error
                    if loop.time() + backoff > deadline:
                        raise RegistryUnavailable(
                            f"key registry {self.settings.key_registry_url} unavailable: {type(error).__name__}"
                        ) from error
                    log.info("key registry not available yet (%s), retrying", type(error).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)

    async def load_at_start(self, db: Database) -> None:
        """Start-up: wait for the registry's list; without it, serve with the keys stored before."""
        try:
            loaded = await self.load(db, self.settings.key_sync_timeout_s)
        except RegistryUnavailable as error:
            log.error("%s: %s; verifying with the keys stored before until a reload succeeds",
                      self.settings.service_name, error)
            return
        log.info("%s: %d API keys loaded from the registry", self.settings.service_name, loaded)

    async def reload_periodically(self, db: Database) -> None:
        """The safety net under the key events: reload the whole list every ``key_resync_interval_s``."""
        while True:
            await asyncio.sleep(self.settings.key_resync_interval_s)
            try:
                await self.load(db, timeout_s=min(10.0, self.settings.key_resync_interval_s))
            except RegistryUnavailable as error:
                log.warning("%s: periodic key reload failed: %s", self.settings.service_name, error)
