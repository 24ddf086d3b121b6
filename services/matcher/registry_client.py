"""The one call the matcher makes back to a registry on the event path: a confidential need's text.

Need events are public-safe (shared/events.py): a confidential need arrives with its text replaced
by the office's redacted summary. The matcher must rank it on the full text, so it reads the need
from the needs service with its own key. A failure raises: the consumer retries the event (the
partition waits), so a need is never ranked on its redacted summary.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from shared.events import NeedProfile
from shared.reference import ProfileStatus

from .settings import MatcherSettings

log = logging.getLogger(__name__)
ATTEMPTS = 3


class NeedTextUnavailable(RuntimeError):
    """The needs service could not give the full text of a confidential need (yet)."""


class NeedTextSource:
    """Fetches full needs from the needs service; one pooled client per process, thread-safe."""

    def __init__(self, settings: MatcherSettings, transport: httpx.BaseTransport | None = None) -> None:
        api_key = settings.api_key or settings.bootstrap_admin_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._base_url = settings.needs_url.rstrip("/")
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(headers=self._headers, timeout=5.0, transport=self._transport)
            return self._client

    def full(self, need: NeedProfile) -> NeedProfile:
        """``need`` itself, or, when its text is redacted, the same need read with its full text."""
        if not need.text_redacted or need.status != ProfileStatus.open:
            return need  # a need that is not open leaves the index: its text is not needed
        backoff = 0.05
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._http().get(f"{self._base_url}/v1/needs/{need.id}")
                if response.status_code == 200:
                    full = NeedProfile.model_validate(response.json())
                    if full.version >= need.version and not full.text_redacted:
                        return full
                elif response.status_code not in (404, 429) and response.status_code < 500:
                    raise NeedTextUnavailable(f"needs service answered {response.status_code} for {need.id}")
            except httpx.HTTPError as error:
                log.warning("matcher: reading need %s failed (%s), attempt %d", need.id, error, attempt)
            time.sleep(backoff)
            backoff *= 2
        raise NeedTextUnavailable(f"the full text of need {need.id} v{need.version} is not available yet")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
