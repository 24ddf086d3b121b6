"""For the matcher's end-to-end tests: a tap on the pairings topic, and a second matcher process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from matchnet.network import LocalNetwork, pick_free_ports
from shared.events import Envelope, Topic
from tests.e2e_support import wait_for


@dataclass
class PairingsTap:
    """Every event on the pairings topic since the tap started, as the broker holds them.

    The outbox relay publishes at least once: a record may come twice with the same event id, which
    every consumer drops (inbox). ``events`` keeps one of each id; ``records`` counts them all.
    """

    events: list[Envelope] = field(default_factory=list)
    records: int = 0
    _ids: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, envelope: Envelope) -> None:
        with self._lock:
            self.records += 1
            if envelope.id not in self._ids:
                self._ids.add(envelope.id)
                self.events.append(envelope)

    def of(self, kind: str, *, office: str | None = None, trigger: str | None = None) -> list[Envelope]:
        """The events of one kind (proposed, updated, retracted, feedback), optionally for one office
        or one trigger (the need or seed whose list it is, or that left)."""
        with self._lock:
            return [
                e for e in self.events
                if e.type == f"jp.matchnet.pairings.{kind}.v1" or e.type == f"jp.matchnet.pairing.{kind}.v1"
                if office is None or e.data.get("office_id") == office
                if trigger is None or e.data.get("trigger_id") == trigger
            ]

    def snapshot(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(kind, office, trigger, pairing ids) of every event so far."""
        with self._lock:
            return [
                (e.type.split(".")[-2], e.data.get("office_id", ""), e.data.get("trigger_id", ""),
                 tuple(p["pairing_id"] for p in e.data.get("pairings", [])))
                for e in self.events
            ]


@contextmanager
def pairings_tap(network: LocalNetwork) -> Iterator[PairingsTap]:
    """Read the pairings topic from its beginning, in a thread, until the block ends."""
    tap = PairingsTap()
    ready = threading.Event()
    stop = threading.Event()

    async def consume() -> None:
        consumer = AIOKafkaConsumer(
            Topic.pairings.value, bootstrap_servers=network.bootstrap_servers, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=20,
        )
        await consumer.start()
        ready.set()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    for record in records:
                        tap.add(Envelope.from_kafka(record.key, record.value, list(record.headers or ())))
        finally:
            await consumer.stop()

    thread = threading.Thread(target=asyncio.run, args=(consume(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield tap
    finally:
        stop.set()
        thread.join(10)


@dataclass
class MatcherReplica:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def matcher_replica(network: LocalNetwork, replica_id: str, log_dir: Path) -> Iterator[MatcherReplica]:
    """One more matcher process of ``network`` (same database, same consumer group), as a replica."""
    [port] = pick_free_ports(1)
    env = {
        **os.environ, **network.env_for("matcher"),
        "MATCHNET_MATCHER_PORT": str(port), "MATCHNET_MATCHER_REPLICA_ID": replica_id,
    }
    log_path = log_dir / f"matcher-{replica_id}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.matcher"], env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    replica = MatcherReplica(f"http://127.0.0.1:{port}", process, log_path)
    try:
        def ready() -> bool:
            assert process.poll() is None, f"replica {replica_id} exited:\n{replica.log_tail()}"
            try:
                return httpx.get(replica.url + "/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, f"matcher replica {replica_id} ready", interval_s=0.1)
        yield replica
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
