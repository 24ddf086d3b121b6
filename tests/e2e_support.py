"""Real parts for end-to-end tests: a webhook receiver on 127.0.0.1, PostgreSQL databases, spans."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVICES = ("seeds", "needs", "matcher", "notifications")


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server that records every POST and answers 200."""

    received: list[ReceivedWebhook] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.received.append(ReceivedWebhook(headers, body))

    def for_need(self, need_id: str) -> list[ReceivedWebhook]:
        with self._lock:
            return [w for w in self.received if w.event.get("data", {}).get("trigger_id") == need_id]


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            receiver.record({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/matchnet"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def postgres_databases(admin_url: str, services: Sequence[str] = SERVICES) -> Iterator[dict[str, str]]:
    """One fresh PostgreSQL database per service (dropped afterwards): {service: url}."""
    import psycopg

    prefix = f"matchnet_test_{secrets.token_hex(4)}"
    base = admin_url.rsplit("/", 1)[0]
    names = {service: f"{prefix}_{service}" for service in services}
    with psycopg.connect(admin_url, autocommit=True) as connection:
        for name in names.values():
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {service: f"{base}/{name}" for service, name in names.items()}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            for name in names.values():
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def read_spans(trace_file: Path) -> list[dict[str, Any]]:
    if not trace_file.exists():
        return []
    return [json.loads(line) for line in trace_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def postgres_admin_url() -> str | None:
    return os.environ.get("MATCHNET_TEST_POSTGRES_URL") or None
