"""``matchnet``: run the network locally, load the demo data, run one service, issue API keys.

    matchnet up [--demo] [--data-dir .data] [--otlp URL] [--postgres URL-PREFIX] [--fresh]
    matchnet demo-load [--seeds-url URL] [--needs-url URL] [--api-key KEY]
    matchnet serve [seeds|needs|matcher|notifications]      (default $MATCHNET_SERVICE)
    matchnet migrate seeds|needs|matcher|notifications|all [--data-dir DIR] [--postgres URL-PREFIX]
    matchnet keys issue --role office --office-id office-13 [--label TEXT]
    matchnet keys list [--role office] [--revoked | --active]
    matchnet keys revoke KEY_ID
    matchnet import seeds|needs FILE [--url URL] [--api-key KEY] [--batch-rows 200]
    matchnet receive [--host 127.0.0.1] [--port 9000] [--secret whsec_…] [--status 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import importlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

import httpx
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from matchnet.demo import DemoLoadError, load_demo
from matchnet.importer import add_import_parser, cmd_import
from matchnet.network import ADMIN_KEY_ENV, SERVICES, LocalNetwork, NetworkError, reset_data_dir
from matchnet.service_calls import ServiceCallError, call_service
from shared.auth import Principal, Role
from shared.db import normalise_database_url
from shared.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    Envelope,
    EventType,
    InvalidEvent,
    NeedCreated,
    NeedProfile,
    PairingFeedbackGiven,
    PairingsEvent,
    PairingsRetracted,
    SeedCreated,
    SeedProfile,
    SubscriptionDisabled,
    Topic,
)
from shared.migrations import head_revision, new_revision, upgrade
from shared.reference import Confidentiality, office_id_for
from shared.service import COMMON_TABLES
from shared.settings import DEFAULT_BROKER_PORT, DEFAULT_PORTS, ServiceSettings

SERVICE_ENV = "MATCHNET_SERVICE"
EVENT_LOG_FETCH_WAIT_MS = 200
TITLE_COLUMNS = 32  # display width of a title in an event line (a CJK character counts 2)


# ---- arguments -------------------------------------------------------------------------------


def _service_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SERVICES)} (comma-separated)")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matchnet", description="The seeds–needs matching network.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the broker and all services locally, stream events")
    up.add_argument("--demo", action="store_true", help="load the demo seeds and needs once ready")
    up.add_argument("--data-dir", type=Path, default=Path(".data"), help="databases, logs, traces (default .data)")
    up.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    up.add_argument("--otlp", metavar="URL", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                    help="also export traces over OTLP/HTTP to this endpoint")
    up.add_argument("--trace-file", type=Path, help="JSON-lines trace file (default DATA_DIR/traces.jsonl)")
    up.add_argument("--no-trace-file", action="store_true", help="do not write a trace file")
    up.add_argument("--postgres", metavar="URL-PREFIX",
                    help="use PostgreSQL: each service's database URL is this prefix + its name "
                         "(e.g. postgresql://user:pw@127.0.0.1:5432/matchnet_ → …/matchnet_seeds)")
    up.add_argument("--services", type=_service_list, default=list(SERVICES), metavar="NAMES",
                    help=f"comma-separated subset to start (default {','.join(SERVICES)})")
    up.add_argument("--broker-port", type=int, default=DEFAULT_BROKER_PORT)
    for name in SERVICES:
        up.add_argument(f"--{name}-port", type=int, default=DEFAULT_PORTS[name], dest=f"{name}_port")
    up.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    up.add_argument("--ready-timeout", type=float, default=60.0, metavar="SECONDS")
    up.add_argument("--fetch-max-wait-ms", type=int, default=5)

    demo = commands.add_parser("demo-load", help="load the demo data into a running network")
    demo.add_argument("--seeds-url", default=f"http://127.0.0.1:{DEFAULT_PORTS['seeds']}")
    demo.add_argument("--needs-url", default=f"http://127.0.0.1:{DEFAULT_PORTS['needs']}")
    demo.add_argument("--api-key", default=os.environ.get(ADMIN_KEY_ENV),
                      help=f"an admin (or office) key; default ${ADMIN_KEY_ENV}")

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=SERVICES, nargs="?", default=os.environ.get(SERVICE_ENV),
                       help=f"default ${SERVICE_ENV} (how the container image picks its service)")

    migrate = commands.add_parser("migrate", help="migrate a service's database (or all four) to the newest revision")
    migrate.add_argument("service", choices=[*SERVICES, "all"])
    migrate.add_argument("--data-dir", type=Path,
                         help="where the SQLite files are (default $MATCHNET_DATA_DIR or .data)")
    migrate.add_argument("--postgres", metavar="URL-PREFIX",
                         help="PostgreSQL databases named prefix + service, as for up")
    migrate.add_argument("--database-url", metavar="URL", help="this database (one service only)")
    migrate.add_argument("--new", metavar="MESSAGE",
                         help="write the service's next revision from its models (one service only)")

    keys = commands.add_parser("keys", help="issue, list and revoke API keys (asks the key registry)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    issue = key_commands.add_parser("issue", help="issue a key; prints it (it is shown only once)")
    issue.add_argument("--role", required=True, choices=[role.value for role in Role])
    issue.add_argument("--office-id", help="for --role office, e.g. office-13")
    issue.add_argument("--partner-id", help="for --role partner")
    issue.add_argument("--label", help="who or what holds the key")
    listing = key_commands.add_parser("list", help="list the issued keys (never their secrets)")
    listing.add_argument("--role", choices=[role.value for role in Role])
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--revoked", action="store_const", const=True, dest="revoked", help="revoked keys only")
    state.add_argument("--active", action="store_const", const=False, dest="revoked", help="usable keys only")
    revoke = key_commands.add_parser("revoke", help="revoke a key: every service refuses it within about a second")
    revoke.add_argument("key_id", help="the key's id (key_…), as listed or as in mnk_<key id>_<secret>")
    for command in (issue, listing, revoke):
        command.add_argument("--registry-url", default=None,
                             help="the key registry (the notifications service); default "
                                  "$MATCHNET_KEY_REGISTRY_URL or http://127.0.0.1:8004")
        command.add_argument("--api-key", default=None, help=f"an admin key; default ${ADMIN_KEY_ENV}")

    add_import_parser(commands)

    receive = commands.add_parser("receive", help="a local webhook receiver: print each webhook, check its signature")
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    receive.add_argument("--port", type=_port, default=9000, help="default 9000; 0 picks a free port")
    receive.add_argument("--secret", type=_webhook_secret, metavar="WHSEC",
                         help="the subscription's whsec_… secret: check each signature, answer 401 if it fails")
    receive.add_argument("--status", type=_http_status, default=200,
                         help="the status to answer every webhook with (default 200; try 503 or 410)")
    return parser


def postgres_urls(prefix: str, services: Sequence[str] = SERVICES) -> dict[str, str]:
    """One database per service: ``<prefix><service>``."""
    return {name: f"{prefix}{name}" for name in services}


def network_from_args(args: argparse.Namespace, progress: Callable[[str], None] | None = None) -> LocalNetwork:
    """The LocalNetwork that ``matchnet up`` runs for these arguments."""
    trace_file = None if args.no_trace_file else (args.trace_file or args.data_dir / "traces.jsonl")
    return LocalNetwork(
        args.data_dir,
        ports=None if args.free_ports else {name: getattr(args, f"{name}_port") for name in SERVICES},
        broker_port=None if args.free_ports else args.broker_port,
        free_ports=args.free_ports,
        database_urls=postgres_urls(args.postgres) if args.postgres else None,
        admin_key=os.environ.get(ADMIN_KEY_ENV) or None,
        trace_file=trace_file,
        otlp_endpoint=args.otlp,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        services=args.services,
        ready_timeout_s=args.ready_timeout,
        progress=progress,
    )


# ---- event lines -----------------------------------------------------------------------------


def short_event_type(event_type: str) -> str:
    """``jp.matchnet.need.created.v1`` → ``need.created``."""
    name = event_type.removeprefix("jp.matchnet.")
    head, _, version = name.rpartition(".")
    return head if version.startswith("v") and version[1:].isdigit() else name


def short_id(entity_id: str) -> str:
    """``need_0190f…a1b2c3`` → ``need_…a1b2c3`` (the random tail tells ids apart)."""
    prefix, sep, rest = entity_id.partition("_")
    return f"{prefix}_…{rest[-6:]}" if sep and len(rest) > 6 else entity_id


def clip(text: str, columns: int = TITLE_COLUMNS) -> str:
    """``text`` cut to ``columns`` terminal columns, with an ellipsis when cut."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used > columns - 1 and index < len(text) - 1:
            return text[:index] + "…"
    return text


def describe_event(envelope: Envelope) -> str:
    """One readable line for an event, e.g. ``12:01:02 need.created      need_…3f9a1c 工場の排熱を… (office-01)``."""
    when = envelope.time.astimezone().strftime("%H:%M:%S")
    kind = f"{short_event_type(envelope.type):<17}"
    payload = envelope.payload()
    profile = getattr(payload, "seed", None) or getattr(payload, "need", None)
    if isinstance(profile, SeedProfile | NeedProfile):  # a seed or need event
        hidden = isinstance(profile, NeedProfile) and profile.confidentiality == Confidentiality.confidential
        title = "(confidential)" if hidden else clip(profile.title)
        state = "" if isinstance(payload, SeedCreated | NeedCreated) else f" v{profile.version} {profile.status.value}"
        return f"{when} {kind} {short_id(profile.id)} {title} ({office_id_for(profile.prefecture)}){state}"
    if isinstance(payload, PairingsRetracted):
        count = len(payload.pairings)
        return (f"{when} {kind} {payload.office_id} {short_id(payload.trigger_id)} {payload.reason}: "
                f"{count} pairing{'s' if count != 1 else ''} withdrawn")
    if isinstance(payload, PairingFeedbackGiven):
        return f"{when} {kind} {short_id(payload.pairing_id)} {payload.verdict} ({payload.office_id})"
    if isinstance(payload, PairingsEvent):
        other = "seed" if payload.trigger_kind == "need" else "need"
        head = f"{when} {kind} {payload.office_id} {short_id(payload.trigger_id)} →"
        if not payload.pairings:
            return f"{head} no candidates"
        top = min(payload.pairings, key=lambda pairing: pairing.rank)
        count = len(payload.pairings)
        top_title = top.seed.title if other == "seed" else top.need.title
        return f"{head} {count} {other}{'s' if count != 1 else ''}, top {top.score:.2f} {clip(top_title)}"
    if isinstance(payload, ApiKeyIssued | ApiKeyRevoked):
        key = payload.key
        return f"{when} {kind} {key.key_id} {key.role.value} {key.office_id or key.partner_id or ''}".rstrip()
    if isinstance(payload, SubscriptionDisabled):
        subscription = payload.subscription
        whose = subscription.office_id or subscription.partner_id
        return f"{when} {kind} {subscription.id} ({whose}) {payload.reason}: {payload.last_error or '?'}"
    return f"{when} {kind} {envelope.subject}"


# ---- matchnet up -----------------------------------------------------------------------------


async def open_event_consumer(
    bootstrap_servers: str, fetch_max_wait_ms: int, timeout_s: float = 15.0
) -> AIOKafkaConsumer:
    """A group-less consumer on every topic, positioned at the end (only new events are shown)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        client_id="matchnet-cli",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        consumer.subscribe([topic.value for topic in Topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not consumer.assignment():
            if loop.time() > deadline:
                raise TimeoutError("no topic partitions assigned to the event stream")
            await asyncio.sleep(0.05)
        # Resolve "latest" now, before anything is published, so no event slips past unseen.
        await consumer.seek_to_end()
        for partition in consumer.assignment():
            await consumer.position(partition)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def stream_events(consumer: AIOKafkaConsumer, network: LocalNetwork, out: TextIO) -> None:
    """Print each event as one line, and say so when a child process dies."""
    reported: set[str] = set()
    while True:
        batch = await consumer.getmany(timeout_ms=1000, max_records=500)
        records = sorted((r for rs in batch.values() for r in rs), key=lambda record: record.timestamp)
        for record in records:
            try:
                line = describe_event(Envelope.from_kafka(record.key, record.value, list(record.headers or ())))
            except InvalidEvent as error:
                line = f"?? {record.topic}[{record.partition}]@{record.offset} not a valid event: {error}"
            print(line, file=out, flush=True)
        for name, code in network.exited().items():
            if name not in reported:
                reported.add(name)
                print(f"!! {name} exited with code {code} — see {network.log_file(name)}", file=out, flush=True)


async def _run_until_signal(network: LocalNetwork, demo: bool, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Only a display: a longer fetch wait spares the CPU the services need (the broker answers a
    # waiting fetch only when the wait expires, so each idle fetch costs both sides).
    consumer = await open_event_consumer(network.bootstrap_servers, EVENT_LOG_FETCH_WAIT_MS)
    try:
        print("events (Ctrl-C to stop):", file=out, flush=True)
        streaming = asyncio.create_task(stream_events(consumer, network, out))
        stopping = asyncio.create_task(stop.wait())
        if demo:
            loading = asyncio.create_task(
                load_demo(network.urls["seeds"], network.urls["needs"], network.admin_key)
            )
            await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if loading.done():
                try:
                    print(f"  ✓ demo data: {loading.result().summary()}", file=out, flush=True)
                except (DemoLoadError, OSError, ValueError) as error:
                    print(f"  ✗ demo data not loaded: {error}", file=out, flush=True)
            else:
                loading.cancel()
        await asyncio.wait({streaming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (streaming, stopping):
            task.cancel()
        await asyncio.gather(streaming, stopping, return_exceptions=True)
        if not streaming.cancelled() and (failure := streaming.exception()) is not None:
            raise failure
    finally:
        await consumer.stop()


def _print_summary(network: LocalNetwork, out: TextIO) -> None:
    print("matchnet is up", file=out)
    for name, url in network.urls.items():
        print(f"  {name:<14} {url}   (API docs {url}/docs)", file=out)
    print(f"  {'broker':<14} {network.bootstrap_servers}", file=out)
    print(f"  {'admin key':<14} {network.admin_key}", file=out)
    targets = [str(network.trace_file)] if network.trace_file else []
    if network.otlp_endpoint:
        targets.append(f"OTLP {network.otlp_endpoint}")
    print(f"  {'traces':<14} {' and '.join(targets) or 'not exported'}", file=out)
    print(f"  {'logs':<14} {network.log_dir}/", file=out)
    registry = "" if network.urls.get("notifications") == ServiceSettings().key_registry_url else (
        f" --registry-url {network.url_of('notifications')}"
    )
    print(f"  issue keys with: {ADMIN_KEY_ENV}=<admin key> matchnet keys issue --role office --office-id office-13"
          f"{registry}", file=out, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.fresh:
        if args.postgres:
            print("note: --fresh wipes local files only; the PostgreSQL databases are kept", file=sys.stderr)
        try:
            reset_data_dir(args.data_dir)
        except NetworkError as error:
            print(f"matchnet up: {error}", file=sys.stderr)
            return 1
    network = network_from_args(args, progress=lambda step: print(f"  ✓ {step}", file=out, flush=True))
    # SIGTERM behaves as Ctrl-C while starting; the event loop handles both while running. SIGINT is
    # set explicitly because a non-interactive shell starts background jobs with it ignored.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        print(f"starting matchnet (data in {network.data_dir})", file=out, flush=True)
        network.start()
        _print_summary(network, out)
        asyncio.run(_run_until_signal(network, args.demo, out))
    except KeyboardInterrupt:
        pass
    except NetworkError as error:
        print(f"matchnet up failed: {error}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and orphan a child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping …", file=out, flush=True)
        network.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
        print("stopped", file=out, flush=True)
    return status


# ---- the other commands ----------------------------------------------------------------------


def cmd_demo_load(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not args.api_key:
        print(f"demo-load needs --api-key or ${ADMIN_KEY_ENV}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(load_demo(args.seeds_url, args.needs_url, args.api_key))
    except (DemoLoadError, OSError) as error:
        print(f"demo-load failed: {error}", file=sys.stderr)
        return 1
    print(f"loaded {result.summary()}", file=out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.service not in SERVICES:
        print(f"matchnet serve: name a service ({', '.join(SERVICES)}) or set ${SERVICE_ENV}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}"])
    return 0  # not reached: exec replaces this process


def migration_database_url(service: str, args: argparse.Namespace) -> str:
    """The database ``matchnet migrate`` works on: as given, else where the service itself would look."""
    if args.database_url:
        return str(args.database_url)
    if args.postgres:
        return postgres_urls(args.postgres, [service])[service]
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_class = next(
        value for value in vars(settings_module).values()
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value.service_name == service
    )
    settings = settings_class(**({"data_dir": args.data_dir} if args.data_dir else {}))
    return settings.resolved_database_url


def cmd_migrate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    services = list(SERVICES) if args.service == "all" else [args.service]
    if (args.database_url or args.new) and len(services) > 1:
        print("--database-url and --new work on one service", file=sys.stderr)
        return 2
    for service in services:
        url = migration_database_url(service, args)
        shown = make_url(normalise_database_url(url)).render_as_string(hide_password=True)
        try:
            if args.new:
                tables = [*COMMON_TABLES, *importlib.import_module(f"services.{service}.models").TABLES]
                path = new_revision(service, url, args.new, tables)
                print(f"{service}: wrote {path} (read it, then commit it)", file=out)
                continue
            revision = upgrade(service, url)
        except Exception as error:  # a database that is away or refuses: say which, go on with none
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"{service}: migration failed on {shown}: {reason}", file=sys.stderr)
            return 1
        note = "newest" if revision == head_revision(service) else f"newest is {head_revision(service)}"
        print(f"{service}: {shown} at {revision} ({note})", file=out)
    return 0


def _registry_call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    return call_service(client, "the key registry", method, path, **kwargs)


def _key_scope(key: Mapping[str, Any]) -> str:
    return key.get("office_id") or key.get("partner_id") or "-"


def cmd_keys(
    args: argparse.Namespace, out: TextIO | None = None, transport: httpx.BaseTransport | None = None
) -> int:
    """``matchnet keys issue|list|revoke``: admin calls to the key registry (the notifications service)."""
    out = out or sys.stdout
    if args.keys_command == "issue":
        try:  # the same rule the registry applies, checked before asking it
            Principal(role=Role(args.role), office_id=args.office_id, partner_id=args.partner_id, key_id="new")
        except ValidationError as error:
            problems = "; ".join(str(item["msg"]) for item in error.errors())
            print(f"cannot issue this key: {problems}", file=sys.stderr)
            return 2
    settings = ServiceSettings()
    admin_key = args.api_key or settings.key_registry_api_key or settings.bootstrap_admin_key
    if not admin_key:
        print(f"matchnet keys needs an admin key: --api-key or ${ADMIN_KEY_ENV}", file=sys.stderr)
        return 2
    client = httpx.Client(
        base_url=args.registry_url or settings.key_registry_url, timeout=10.0, trust_env=False,
        headers={"Authorization": f"Bearer {admin_key}"}, transport=transport,
    )
    try:
        with client:
            return _run_keys_command(args, client, out)
    except ServiceCallError as error:
        print(f"matchnet keys {args.keys_command}: {error}", file=sys.stderr)
        return 1


def _run_keys_command(args: argparse.Namespace, client: httpx.Client, out: TextIO) -> int:
    if args.keys_command == "issue":
        body = {"role": args.role, "office_id": args.office_id, "partner_id": args.partner_id, "label": args.label}
        issued = _registry_call(client, "POST", "/v1/api-keys", json={k: v for k, v in body.items() if v is not None})
        print(f"issued {issued['key_id']} ({issued['role']} {_key_scope(issued)}); the key is shown only now:",
              file=sys.stderr)
        print(issued["api_key"], file=out)
        return 0
    if args.keys_command == "revoke":
        revoked = _registry_call(client, "DELETE", f"/v1/api-keys/{args.key_id}")
        print(f"revoked {revoked['key_id']} at {revoked['revoked_at']}", file=out)
        return 0
    params: dict[str, Any] = {"limit": 200}
    if args.role:
        params["role"] = args.role
    if args.revoked is not None:
        params["revoked"] = str(args.revoked).lower()
    while True:
        page = _registry_call(client, "GET", "/v1/api-keys", params=params)
        if "cursor" not in params:
            print(f"{'key id':<34} {'role':<9} {'office / partner':<18} {'created':<20} {'revoked':<20} label",
                  file=out)
        for key in page["items"]:
            created = key["created_at"][:19].replace("T", " ")
            revoked_at = (key["revoked_at"] or "-")[:19].replace("T", " ")
            print(f"{key['key_id']:<34} {key['role']:<9} {_key_scope(key):<18} {created:<20} {revoked_at:<20} "
                  f"{key['label'] or ''}", file=out)
        if not page.get("next_cursor"):
            return 0
        params["cursor"] = page["next_cursor"]


# ---- matchnet receive ------------------------------------------------------------------------

WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_TOLERANCE_S = 5 * 60  # Standard Webhooks: refuse a timestamp further off than this
MAX_WEBHOOK_BODY = 16 * 1024 * 1024


class InvalidSignature(ValueError):
    """A webhook whose Standard Webhooks signature does not check out; the message says why."""


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the base64 after the prefix); ValueError if there is none."""
    text = secret.strip().removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 after the whsec_ prefix") from None
    if not key:
        raise ValueError("empty secret")
    return key


def _decode_signature(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _signature_headers(headers: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """(webhook-id, webhook-timestamp, the well-formed ``v<n>,<base64>`` signatures); InvalidSignature if missing."""
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "").strip()
    missing = [name for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", lowered.get("webhook-signature", "")))
               if not value]
    if missing:
        raise InvalidSignature(f"missing {', '.join(missing)}")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        raise InvalidSignature(f"webhook-timestamp {timestamp[:40]!r} is not a Unix time in seconds")
    signatures = []
    for token in lowered["webhook-signature"].split():
        version, comma, signature = token.partition(",")
        if comma and version and "," not in signature and _decode_signature(signature) is not None:
            signatures.append(token)
    if not signatures:
        raise InvalidSignature("no well-formed signature in webhook-signature")
    return webhook_id, timestamp, signatures


def _key(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else webhook_secret_key(secret)


def _standardwebhooks() -> Any | None:
    try:
        import standardwebhooks
    except ImportError:
        return None
    return standardwebhooks


def verify_webhook_builtin(
    secret: str | bytes, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Standard Webhooks verification with the standard library; raises InvalidSignature.

    ``secret`` is the ``whsec_…`` text or the key it decodes to."""
    webhook_id, timestamp, signatures = _signature_headers(headers)
    now = time.time() if now is None else now
    if int(timestamp) < now - WEBHOOK_TOLERANCE_S:
        raise InvalidSignature("webhook-timestamp too old")
    if int(timestamp) > now + WEBHOOK_TOLERANCE_S:
        raise InvalidSignature("webhook-timestamp too new")
    expected = hmac.new(_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for token in signatures:
        version, _, signature = token.partition(",")
        given = _decode_signature(signature)
        if version == "v1" and given is not None and hmac.compare_digest(expected, given):
            return
    raise InvalidSignature("no matching signature")


def verify_webhook(secret: str | bytes, headers: Mapping[str, str], body: bytes) -> None:
    """Standard Webhooks verification with the ``standardwebhooks`` package when it is installed, else
    :func:`verify_webhook_builtin`; raises InvalidSignature."""
    library = _standardwebhooks()
    if library is None:
        verify_webhook_builtin(secret, headers, body)
        return
    webhook_id, timestamp, signatures = _signature_headers(headers)
    cleaned = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": " ".join(signatures)}
    try:
        library.Webhook(_key(secret)).verify(body, cleaned, json_parse=False)
    except library.WebhookVerificationError as error:
        raise InvalidSignature(str(error).lower()) from None
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8") from None


def webhook_verifier_name() -> str:
    return "the standardwebhooks package" if _standardwebhooks() is not None else "the built-in verifier"


def _pairing_line(pairing: Mapping[str, Any]) -> str:
    explanation = pairing.get("explanation") or {}
    terms = ", ".join(str(term) for term in explanation.get("shared_terms") or [])
    fields = ", ".join(str(field) for field in explanation.get("shared_fields") or [])
    why = f"  [{terms or '—'} | {fields or '—'}]" if terms or fields else ""
    seed, need = clip(str(pairing["seed"]["title"])), clip(str(pairing["need"]["title"]))
    return f"{int(pairing['rank'])}. {float(pairing['score']):.2f}  {seed} ← {need}{why}"


def describe_webhook_body(body: bytes) -> list[str]:
    """The lines that show a webhook body: a header and a line per pairing for a pairings event,
    else the JSON compacted (or the text as it came)."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        return ["(empty body)"]
    try:
        event = json.loads(text)
    except ValueError:
        return text.strip().splitlines()
    compact = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    if not (isinstance(event, dict) and event.get("type") == EventType.pairings_proposed.value):
        return [compact]
    try:
        data = event["data"]
        pairings = sorted(data["pairings"], key=lambda pairing: int(pairing["rank"]))
        count = f"{len(pairings)} pairing{'s' if len(pairings) != 1 else ''}" if pairings else "no pairings"
        trigger = f"{data['trigger_kind']} {data['trigger_id']}"
        head = f"{short_event_type(event['type'])} for {data['office_id']}, {trigger}: {count}"
        return [head, *(_pairing_line(pairing) for pairing in pairings)]
    except (KeyError, TypeError, ValueError, AttributeError):
        return [compact]  # not the shape v1 promises: show it as it is


def format_webhook(
    webhook_id: str | None,
    body: bytes,
    *,
    received_at: datetime,
    status: int,
    verdict: str | None = None,
) -> str:
    """One block per webhook: time, webhook-id, the answer code, the signature verdict, the body."""
    when = received_at.astimezone().strftime("%H:%M:%S")
    lines = [f"{when}  webhook-id {webhook_id or '(none)'}  → answered {status}"]
    if verdict is not None:
        lines.append(verdict)
    lines.extend(describe_webhook_body(body))
    return "\n".join([lines[0], *(f"  {line}" for line in lines[1:])])


class _WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "matchnet-receive"

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except ValueError as error:
            self.send_error(400, str(error))
            return
        if body is None:
            self.send_error(413, f"body over {MAX_WEBHOOK_BODY} bytes")
            return
        receiver = cast(WebhookReceiver, self.server)
        status = receiver.handle_webhook({name.lower(): value for name, value in self.headers.items()}, body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        text = self.headers.get("Content-Length", "0").strip() or "0"
        if not text.isdigit():
            raise ValueError("bad Content-Length")
        if int(text) > MAX_WEBHOOK_BODY:
            return None
        return self.rfile.read(int(text))

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        size_read = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("bad chunk size") from None
            if size == 0:
                break
            size_read += size
            if size_read > MAX_WEBHOOK_BODY:
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after the chunk
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(parts)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None  # each webhook is printed as a block; errors still go to stderr


class WebhookReceiver(ThreadingHTTPServer):
    """``matchnet receive``: answers every POST with ``status`` (401 if a signature is checked and
    fails) and prints a block per webhook to ``out``."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, *, status: int = 200, secret_key: bytes | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.status = status
        self.secret_key = secret_key
        self.out = out or sys.stdout
        self._print_lock = threading.Lock()
        super().__init__((host, port), _WebhookHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> int:
        """Check, print, and say which status to answer."""
        received_at = datetime.now(UTC)
        status, verdict = self.status, None
        if self.secret_key is not None:
            try:
                verify_webhook(self.secret_key, headers, body)
                verdict = "signature ok"
            except InvalidSignature as error:
                status, verdict = 401, f"SIGNATURE INVALID ({error})"
        block = format_webhook(headers.get("webhook-id"), body, received_at=received_at, status=status,
                               verdict=verdict)
        with self._print_lock:
            print(block, file=self.out, flush=True)
        return status


def serve_webhooks(receiver: WebhookReceiver, out: TextIO | None = None) -> int:
    """Say where to point a subscription, then serve until Ctrl-C or ``receiver.shutdown()``."""
    out = out or receiver.out
    try:
        print(f"listening on {receiver.url} — register it with POST /v1/subscriptions", file=out)
        if receiver.secret_key is None:
            print("signatures not checked: start with --secret whsec_… (POST /v1/subscriptions returns it)",
                  file=out)
        else:
            print(f"checking signatures with {webhook_verifier_name()}", file=out)
        print(f"answering {receiver.status} (Ctrl-C to stop)", file=out, flush=True)
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
    print("stopped", file=out, flush=True)
    return 0


def _webhook_secret(text: str) -> bytes:
    try:
        return webhook_secret_key(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a whsec_… secret: {error}") from None


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError("a port number 0-65535 (0 picks a free one)")
    return int(text)


def _http_status(text: str) -> int:
    if not text.isdigit() or not 200 <= int(text) <= 599:
        raise argparse.ArgumentTypeError("an HTTP status 200-599")
    return int(text)


def cmd_receive(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        receiver = WebhookReceiver(args.host, args.port, status=args.status, secret_key=args.secret, out=out)
    except OSError as error:
        print(f"matchnet receive: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    # Ctrl-C and SIGTERM both stop it; SIGINT is set explicitly for background jobs of a script.
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return serve_webhooks(receiver, out)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 0
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def _utf8_safe(stream: TextIO) -> None:
    # A non-UTF-8 terminal must not crash on Japanese titles or ✓.
    if isinstance(stream, io.TextIOWrapper):
        with contextlib.suppress(ValueError):
            stream.reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    _utf8_safe(sys.stdout)
    _utf8_safe(sys.stderr)
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "demo-load":
        return cmd_demo_load(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "migrate":
        return cmd_migrate(args)
    if args.command == "keys":
        return cmd_keys(args)
    if args.command == "receive":
        return cmd_receive(args)
    if args.command == "import":
        return cmd_import(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
