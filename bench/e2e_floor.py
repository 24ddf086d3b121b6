"""The floor under ``e2e_latency.py``: the same parts and hops with none of the work.

Three Python processes on the same stack as the services (uvicorn + FastAPI, aiokafka, httpx), the
embedded broker between them, and the same receiver and load client as ``e2e_latency.py``:

    POST /v1/needs ──► front: validate (pydantic), produce, answer 201
                        └─► broker ─► middle: consume, produce ─► broker ─► back: consume, POST webhook

No database, no outbox or inbox, no ranking, no signing, no telemetry: what is left is the cost of
the hops themselves on this machine (two Kafka hops at the same fetch wait, two HTTP requests, the
processes taking turns on the cores). ``--sqlite`` adds one SQLite transaction (an insert and a
commit, SQLAlchemy Core, WAL) to each of the three stages, the least each service's durable write costs.

    .venv/bin/python bench/e2e_floor.py                  # 20 needs/s for 30 s
    .venv/bin/python bench/e2e_floor.py --sqlite --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from e2e_latency import MinimalClient, Receiver, cpu_split, percentile, post_needs  # bench/ is the script's directory
from pydantic import BaseModel

NEEDS_TOPIC = "floor.needs"
PAIRINGS_TOPIC = "floor.pairings"


class Need(BaseModel):
    """The bench's need, validated as plain fields (the services check codes and rules too)."""

    title: str
    summary: str
    description: str
    industry: str
    keywords: list[str]
    fields: list[str]
    company_name: str
    company_size: str
    prefecture: str
    wanted_forms: list[str]
    confidentiality: str
    language: str


class _Stage:
    """One durable write per stage when ``--sqlite`` is on: an insert and a commit, on an engine set up
    as the services' are (``shared.db.make_engine``: WAL, synchronous=NORMAL, BEGIN IMMEDIATE)."""

    def __init__(self, db_path: str | None) -> None:
        self.engine: Any = None
        if db_path is None:
            return
        from sqlalchemy import Column, MetaData, String, Table, Text

        from shared.db import make_engine

        self.engine = make_engine(f"sqlite:///{db_path}")
        self.table = Table("rows", MetaData(), Column("id", String, primary_key=True), Column("body", Text))
        self.table.metadata.create_all(self.engine)

    def write(self, row_id: str, body: str) -> None:
        if self.engine is None:
            return
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), {"id": row_id, "body": body})


class _Tracing:
    """The issue's tracing on the floor when ``--traced`` is on, as ``shared.telemetry`` sets it up for
    the services (spans made, none exported, as in ``e2e_latency.py`` without ``--trace-file``): an HTTP
    server span per request, a PRODUCER span per record sent with the W3C context in its headers, a
    CONSUMER span continuing it per record received, a CLIENT span per SQL statement and per webhook."""

    def __init__(self, name: str, traced: bool) -> None:
        self.tracer: Any = None
        if not traced:
            return
        from opentelemetry import trace

        from shared.telemetry import setup_telemetry

        setup_telemetry(f"floor-{name}")
        self.tracer = trace.get_tracer("floor")

    def app(self, app: Any) -> None:
        if self.tracer is not None:
            from shared.telemetry import instrument_fastapi

            instrument_fastapi(app)

    def stage(self, db_path: str | None) -> _Stage:
        """The stage's durable write, its statements traced when tracing is on."""
        stage = _Stage(db_path)
        if self.tracer is not None and stage.engine is not None:
            from shared.telemetry import instrument_engine

            instrument_engine(stage.engine)
        return stage

    @contextlib.contextmanager
    def producing(self, topic: str, headers: list[tuple[str, bytes]]) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        from opentelemetry.trace import SpanKind

        from shared.telemetry import inject_kafka_headers

        with self.tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER,
                                               attributes={"messaging.system": "kafka"}):
            inject_kafka_headers(headers)
            yield

    @contextlib.contextmanager
    def consuming(self, record: Any) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        from opentelemetry.trace import SpanKind

        from shared.telemetry import context_from_kafka_headers

        with self.tracer.start_as_current_span(
            f"process {record.topic}", context=context_from_kafka_headers(list(record.headers or ())),
            kind=SpanKind.CONSUMER, attributes={"messaging.system": "kafka"},
        ):
            yield


async def _started_consumer(topic: str, group_id: str, bootstrap: str, fetch_wait_ms: int) -> Any:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms)
    await consumer.start()
    return consumer


def _front(bootstrap: str, port_out: Connection, db_path: str | None, traced: bool) -> None:
    import uvicorn
    from aiokafka import AIOKafkaProducer
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    tracing = _Tracing("front", traced)
    stage = tracing.stage(db_path)
    producer: list[AIOKafkaProducer] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await p.start()
        producer.append(p)
        try:
            yield
        finally:
            await p.stop()

    app = FastAPI(lifespan=lifespan)
    tracing.app(app)

    @app.post("/v1/needs")
    async def create(need: Need) -> JSONResponse:
        need_id = f"need_{uuid.uuid4().hex[:16]}"
        body = need.model_dump_json().encode()
        await asyncio.to_thread(stage.write, need_id, body.decode())
        headers: list[tuple[str, bytes]] = []
        with tracing.producing(NEEDS_TOPIC, headers):
            await producer[0].send_and_wait(NEEDS_TOPIC, key=need_id.encode(), value=body, headers=headers)
        return JSONResponse({"id": need_id}, status_code=201)

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_out.send(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def _middle(bootstrap: str, fetch_wait_ms: int, db_path: str | None, traced: bool) -> None:
    from aiokafka import AIOKafkaProducer

    tracing = _Tracing("middle", traced)
    stage = tracing.stage(db_path)

    async def main() -> None:
        consumer = await _started_consumer(NEEDS_TOPIC, "floor-middle", bootstrap, fetch_wait_ms)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        async for record in consumer:
            with tracing.consuming(record):
                need_id = record.key.decode()
                pairing = json.dumps({"need": need_id, "seeds": [{"id": "seed_1", "score": 0.5}]})
                await asyncio.to_thread(stage.write, f"pairing_{need_id}", pairing)
                headers: list[tuple[str, bytes]] = []
                with tracing.producing(PAIRINGS_TOPIC, headers):
                    await producer.send_and_wait(PAIRINGS_TOPIC, key=b"office-13", value=pairing.encode(),
                                                 headers=headers)

    asyncio.run(main())


def _back(bootstrap: str, fetch_wait_ms: int, hook_url: str, db_path: str | None, traced: bool) -> None:
    import httpx

    tracing = _Tracing("back", traced)
    stage = tracing.stage(db_path)

    async def main() -> None:
        consumer = await _started_consumer(PAIRINGS_TOPIC, "floor-back", bootstrap, fetch_wait_ms)
        async with httpx.AsyncClient() as client:
            async for record in consumer:
                with tracing.consuming(record):
                    need_id = json.loads(record.value)["need"]
                    await asyncio.to_thread(stage.write, f"delivery_{need_id}", record.value.decode())
                    body = {"data": {"trigger_kind": "need", "trigger_id": need_id}}
                    await client.post(hook_url, json=body)

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="needs per second (default 20)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5, help="consumers' fetch wait (default 5)")
    parser.add_argument("--sqlite", action="store_true", help="one SQLite transaction in each stage")
    parser.add_argument("--traced", action="store_true",
                        help="the services' tracing: HTTP, Kafka, SQL and webhook spans (made, not exported)")
    args = parser.parse_args()

    from matchnet.network import LocalNetwork

    context = multiprocessing.get_context("spawn")
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="matchnet-floor-") as tmp:
        net = LocalNetwork(data_dir=Path(tmp) / "data", free_ports=True, services=())
        net.start_broker()
        from matchnet.network import _run_coroutine
        from shared.kafka import ensure_topics

        _run_coroutine(ensure_topics(net.bootstrap_servers, net.topic_partitions, [NEEDS_TOPIC, PAIRINGS_TOPIC]))
        db = (lambda name: os.path.join(tmp, f"{name}.db")) if args.sqlite else (lambda name: None)
        port_reader, port_writer = context.Pipe(duplex=False)
        processes = {
            "front": context.Process(target=_front, args=(net.bootstrap_servers, port_writer, db("front"),
                                                          args.traced), daemon=True),
            "middle": context.Process(target=_middle, args=(net.bootstrap_servers, args.fetch_max_wait_ms,
                                                            db("middle"), args.traced), daemon=True),
            "back": context.Process(target=_back, args=(net.bootstrap_servers, args.fetch_max_wait_ms, receiver.url,
                                                        db("back"), args.traced), daemon=True),
        }
        sent: dict[str, float] = {}
        try:
            for process in processes.values():
                process.start()
            front_url = f"http://127.0.0.1:{port_reader.recv()}"
            asyncio.run(_warm_up(front_url, receiver))
            print(f"load: {args.rate:g} needs/s for {args.duration:g} s "
                  f"({'one SQLite transaction per stage' if args.sqlite else 'no database'}, "
                  f"{'traced' if args.traced else 'no tracing'}, embedded broker)", flush=True)
            pids = {"broker": net.pid_of("broker"), **{name: p.pid for name, p in processes.items()}}
            cpu_before = {name: sum(cpu_split(pid)) for name, pid in pids.items()}
            errors = asyncio.run(_load(front_url, args.rate, args.duration, sent))
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline and not sent.keys() <= receiver.arrivals.keys():
                time.sleep(0.05)
            cpu_used = {name: sum(cpu_split(pid)) - cpu_before[name] for name, pid in pids.items()}
        finally:
            for process in processes.values():
                process.terminate()
                process.join(5)
            net.stop()
            receiver.stop()

    latencies = [(receiver.arrivals[nid] - t0) * 1000 for nid, t0 in sent.items() if nid in receiver.arrivals]
    if not latencies:
        raise SystemExit("no webhook arrived")
    print(f"needs posted: {len(sent)}  POST errors: {errors}  webhooks missing: {len(sent) - len(latencies)}")
    print("CPU ms per need (idle polling included): "
          + "  ".join(f"{name} {1000 * used / max(len(sent), 1):.1f}" for name, used in cpu_used.items()))
    print(
        "POST → webhook latency ms: "
        f"p50 {percentile(latencies, 0.50):.1f}  p90 {percentile(latencies, 0.90):.1f}  "
        f"p99 {percentile(latencies, 0.99):.1f}  max {max(latencies):.1f}  mean {statistics.fmean(latencies):.1f}"
    )


async def _warm_up(front_url: str, receiver: Receiver) -> None:
    """Until a need goes through (the consumers have joined their groups and hold their partitions)."""
    sent: dict[str, float] = {}
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        await _load(front_url, 10, 0.5, sent)
        await asyncio.sleep(0.5)
        if sent.keys() & receiver.arrivals.keys():
            await asyncio.sleep(1)
            return
    raise SystemExit("the floor network did not carry a need within 60 s")


async def _load(front_url: str, rate: float, duration: float, sent: dict[str, float]) -> int:
    return await post_needs(MinimalClient(front_url, {}), rate, duration, sent, progress=False)


if __name__ == "__main__":
    main()
