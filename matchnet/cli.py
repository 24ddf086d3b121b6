"""``matchnet``: run the network locally, load the demo data, run one service, issue API keys.

    matchnet up [--demo] [--data-dir .data] [--otlp URL] [--postgres URL-PREFIX] [--fresh]
    matchnet demo-load [--seeds-url URL] [--needs-url URL] [--api-key KEY]
    matchnet serve seeds|needs|matcher|notifications
    matchnet keys issue --role office --office-id office-13
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from matchnet.demo import DemoLoadError, load_demo
from matchnet.network import SERVICES, LocalNetwork, NetworkError, reset_data_dir
from shared.auth import Role, mint_api_key
from shared.events import (
    Envelope,
    InvalidEvent,
    NeedCreated,
    PairingsProposed,
    SeedCreated,
    Topic,
)
from shared.reference import Confidentiality, office_id_for
from shared.settings import DEFAULT_BROKER_PORT, DEFAULT_PORTS, ServiceSettings

ADMIN_KEY_ENV = "MATCHNET_BOOTSTRAP_ADMIN_KEY"
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
    serve.add_argument("service", choices=SERVICES)

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    issue = key_commands.add_parser(
        "issue", help="mint a key signed with MATCHNET_AUTH_SECRET (else the bootstrap admin key)"
    )
    issue.add_argument("--role", required=True, choices=[role.value for role in Role])
    issue.add_argument("--office-id", help="for --role office, e.g. office-13")
    issue.add_argument("--partner-id", help="for --role partner")
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
    if isinstance(payload, SeedCreated):
        seed = payload.seed
        return f"{when} {kind} {short_id(seed.id)} {clip(seed.title)} ({office_id_for(seed.prefecture)})"
    if isinstance(payload, NeedCreated):
        need = payload.need
        title = "(confidential)" if need.confidentiality == Confidentiality.confidential else clip(need.title)
        return f"{when} {kind} {short_id(need.id)} {title} ({office_id_for(need.prefecture)})"
    if isinstance(payload, PairingsProposed):
        other = "seed" if payload.trigger_kind == "need" else "need"
        head = f"{when} {kind} {payload.office_id} {short_id(payload.trigger_id)} →"
        if not payload.pairings:
            return f"{head} no candidates"
        top = min(payload.pairings, key=lambda pairing: pairing.rank)
        count = len(payload.pairings)
        top_title = top.seed.title if other == "seed" else top.need.title
        return f"{head} {count} {other}{'s' if count != 1 else ''}, top {top.score:.2f} {clip(top_title)}"
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
    consumer = await open_event_consumer(network.bootstrap_servers, network.fetch_max_wait_ms)
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
    print(f"  mint keys with: {ADMIN_KEY_ENV}=<admin key> matchnet keys issue --role office --office-id office-13",
          file=out, flush=True)


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
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}"])
    return 0  # not reached: exec replaces this process


def cmd_keys_issue(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    settings = ServiceSettings()
    if not (settings.auth_secret or settings.bootstrap_admin_key):
        print("warning: neither MATCHNET_AUTH_SECRET nor MATCHNET_BOOTSTRAP_ADMIN_KEY is set; the key is "
              "signed with the insecure development secret", file=sys.stderr)
    try:
        key = mint_api_key(settings.signing_secret, Role(args.role), args.office_id, args.partner_id)
    except ValidationError as error:
        problems = "; ".join(str(item["msg"]) for item in error.errors())
        print(f"cannot issue this key: {problems}", file=sys.stderr)
        return 2
    print(key, file=out)
    return 0


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
    if args.command == "keys":
        return cmd_keys_issue(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
