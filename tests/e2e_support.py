"""Real parts for end-to-end tests: a webhook receiver on 127.0.0.1, PostgreSQL databases, spans."""

from __future__ import annotations

import json
import os
import secrets
import socket
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
def http_post_server(
    on_post: Callable[[str, dict[str, str], bytes], None], content_type: str | None = None
) -> Iterator[str]:
    """A server on a free port of 127.0.0.1 that hands every POST to ``on_post(path, headers, body)``
    and answers 200 (empty, of ``content_type``); yields its base URL, and stops on leaving."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            on_post(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(200)
            if content_type:
                self.send_header("content-type", content_type)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with http_post_server(lambda _path, headers, body: receiver.record(headers, body)) as base_url:
        receiver.url = f"{base_url}/hooks/matchnet"
        yield receiver


@dataclass(frozen=True)
class Answer:
    """How a scripted receiver answers one POST."""

    status: int = 200
    delay_s: float = 0.0  # answer after this long (longer than the sender's timeout: a time-out)
    close: bool = False  # read the request, then close the connection without an answer
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Arrival(ReceivedWebhook):
    at: float = 0.0  # time.monotonic() when the body had arrived


class ScriptedReceiver:
    """A webhook receiver on 127.0.0.1 that answers the POSTs in turn as scripted, then as ``then``;
    it can go away (the port refuses connections) and come back on the same port."""

    def __init__(self, *script: Answer | int, then: Answer | int = 200) -> None:
        self.script = [self._answer(a) for a in script]
        self.then = self._answer(then)
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._open = 0
        self.most_open = 0  # the most requests it was answering at once

    @staticmethod
    def _answer(answer: Answer | int) -> Answer:
        return answer if isinstance(answer, Answer) else Answer(status=answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/matchnet"

    def start(self) -> ScriptedReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._count_open(+1)
                try:
                    self._answer()
                finally:
                    receiver._count_open(-1)

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                answer = receiver._record({k.lower(): v for k, v in self.headers.items()}, body)
                if answer.delay_s:
                    receiver._stopping.wait(answer.delay_s)
                if answer.close:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        # A short poll: stop() (going away) takes effect at once.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: the port refuses connections until ``start()`` again."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _count_open(self, change: int) -> None:
        with self._lock:
            self._open += change
            self.most_open = max(self.most_open, self._open)

    def _record(self, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.arrivals.append(Arrival(headers, body, time.monotonic()))
            return self.script.pop(0) if self.script else self.then

    def received(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def webhook_ids(self) -> list[str]:
        return [a.headers["webhook-id"] for a in self.received()]

    def event_ids(self) -> set[str]:
        return {a.event["id"] for a in self.received()}


@contextmanager
def scripted_receivers() -> Iterator[Callable[..., ScriptedReceiver]]:
    """A factory of started ScriptedReceivers, all stopped at the end."""
    made: list[ScriptedReceiver] = []

    def start(*script: Answer | int, then: Answer | int = 200) -> ScriptedReceiver:
        receiver = ScriptedReceiver(*script, then=then).start()
        made.append(receiver)
        return receiver

    try:
        yield start
    finally:
        for receiver in made:
            receiver.stop()


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
