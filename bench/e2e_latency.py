"""End-to-end latency: a need's POST to its webhook arriving, at a steady rate.

Starts the real network (embedded broker + four services, SQLite by default) on free ports, a
webhook receiver in a process of its own, subscribes office-13, registers a few seeds, then posts
needs at ``--rate`` per second for ``--duration`` seconds (a minimal keep-alive HTTP/1.1 client: the
clock starts when the request is on the socket) and prints p50/p90/p99/max.

    .venv/bin/python bench/e2e_latency.py            # 20 needs/s for 30 s
    .venv/bin/python bench/e2e_latency.py --rate 50 --duration 10 --postgres postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from matchnet.network import LocalNetwork

SEED_TOPICS = [
    ("排熱を電気に変える熱電変換シート", "低温排熱から発電できる有機熱電材料", ["energy", "materials"]),
    ("AI画像検査による外観不良の自動検出", "少量の不良画像で学習できる外観検査AI", ["ai_data", "manufacturing"]),
    ("Low-power LoRa sensor network for farms", "Soil moisture sensing with solar nodes",
     ["agriculture_food", "information"]),
    ("高強度アルミ合金の摩擦攪拌接合", "異種金属を低入熱で接合する技術", ["manufacturing", "materials"]),
    ("食品の鮮度を判定するにおいセンサー", "揮発成分から鮮度を推定する", ["agriculture_food", "measurement"]),
]


def _since(now: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return now[0] - before[0], now[1] - before[1]


def cpu_split(pid: int | None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (Linux /proc): system is the kernel's share,
    the sockets, wake-ups and context switches."""
    if pid is None:
        return 0.0, 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Receiver:
    """The office's webhook endpoint, in a process of its own, as a real receiver would be.

    A minimal asyncio HTTP/1.1 server (keep-alive) stamps each request when its body has arrived,
    answers 200, and reports ``(need id, stamp)`` to this process over a pipe. ``time.perf_counter``
    is CLOCK_MONOTONIC on Linux, one clock for every process, so stamps compare with the POSTs'.
    Running it here instead would make every arrival wait for this process's load loop.
    """

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        context = multiprocessing.get_context("spawn")
        self._reader, writer = context.Pipe(duplex=False)
        port_reader, port_writer = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve_webhooks, args=(writer, port_writer), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{port_reader.recv()}/hook"
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                need_id, stamp = self._reader.recv()
                self.arrivals.setdefault(need_id, stamp)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)


def content_length(head: bytes) -> int:
    """The Content-Length of an HTTP/1.1 message head (0 without one)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _serve_webhooks(arrivals: Connection, port_out: Connection) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(content_length(head))
                stamp = time.perf_counter()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                data = json.loads(body).get("data", {})
                if data.get("trigger_kind") == "need":
                    arrivals.send((data["trigger_id"], stamp))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class MinimalClient:
    """Keep-alive HTTP/1.1 POSTs of JSON over plain asyncio streams, as lean as the receiver.

    The clock starts when a request's bytes are handed to the socket: what a client library spends
    building a request (httpx: about a millisecond of CPU here) is the company's, not the network's.
    """

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        split = urlsplit(base_url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, body: dict[str, object]) -> tuple[int, bytes, float]:
        """(status, response body, perf_counter stamp of the send)."""
        payload = json.dumps(body, ensure_ascii=False).encode()
        request = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{self.head}"
                   f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n").encode() + payload
        reader, writer = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        stamp = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        answer = await reader.readexactly(content_length(head))
        self._idle.append((reader, writer))
        return status, answer, stamp

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


def bench_need(i: int) -> dict[str, object]:
    return {
        "title": f"工場の排熱を有効活用したい {i}", "summary": "排熱を使いたい。",
        "description": "鋳造工程の排熱を電気に変えたい", "industry": "E",
        "keywords": ["排熱"], "fields": ["energy"], "company_name": f"ベンチ工業{i}", "company_size": "sme",
        "prefecture": "13", "wanted_forms": ["license"], "confidentiality": "members", "language": "ja",
    }


async def post_needs(
    client: MinimalClient, rate: float, duration: float, sent: dict[str, float], progress: bool = True
) -> int:
    """POST a need every 1/rate seconds for ``duration`` (not waiting for answers); records each
    created need's send stamp in ``sent`` and returns how many POSTs failed."""
    errors = 0

    async def post(i: int) -> None:
        nonlocal errors
        try:
            status, answer, started = await asyncio.wait_for(client.post_json("/v1/needs", bench_need(i)), 10)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            errors += 1
            return
        if status != 201:
            errors += 1
            return
        sent[json.loads(answer)["id"]] = started

    total = int(rate * duration)
    begin = time.perf_counter()
    tasks = []
    try:
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
            if progress and i and i % int(rate * 5) == 0:
                print(f"  … {i}/{total} needs posted", flush=True)
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return errors


def needs_client(net: LocalNetwork) -> MinimalClient:
    return MinimalClient(net.urls["needs"], {"authorization": f"Bearer {net.admin_key}"})


async def warm_up(net: LocalNetwork, arrivals: dict[str, float], timeout_s: float = 60.0) -> float:
    """POST one need and wait for its webhook (not counted); returns how long that took."""
    client = needs_client(net)
    try:
        status, answer, started = await client.post_json("/v1/needs", bench_need(-1))
    finally:
        await client.close()
    if status != 201:
        raise SystemExit(f"the warm-up need was refused: {status} {answer[:300]!r}")
    need_id = json.loads(answer)["id"]
    while need_id not in arrivals:
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"the warm-up need was not delivered within {timeout_s:g} s")
        await asyncio.sleep(0.02)
    return arrivals[need_id] - started


async def run_load(net: LocalNetwork, rate: float, duration: float, sent: dict[str, float]) -> int:
    return await post_needs(needs_client(net), rate, duration, sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="needs per second (default 20)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server: one database per service")
    parser.add_argument("--trace-file", type=Path, help="write every service's spans to this JSON-lines file")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5, help="consumers' fetch wait (default 5)")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per topic (default: the network's)")
    parser.add_argument("--env", action="append", default=[], type=lambda kv: tuple(kv.split("=", 1)),
                        metavar="NAME=VALUE", help="extra environment for every service (repeatable)")
    args = parser.parse_args()

    sent: dict[str, float] = {}
    receiver = Receiver()
    arrivals = receiver.arrivals
    hook_url = receiver.url
    with tempfile.TemporaryDirectory(prefix="matchnet-bench-") as tmp:
        database_urls = None
        pg = None
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' helpers
            from tests.e2e_support import postgres_databases

            pg = postgres_databases(args.postgres)
            database_urls = pg.__enter__()
        net = LocalNetwork(
            data_dir=Path(tmp) / "data", free_ports=True, database_urls=database_urls, log_dir=Path(tmp) / "logs",
            trace_file=args.trace_file, fetch_max_wait_ms=args.fetch_max_wait_ms, env=dict(args.env),
            **({"topic_partitions": args.partitions} if args.partitions else {}),
            progress=lambda m: print(f"  {m}", flush=True),
        )
        try:
            net.start()
            auth = {"Authorization": f"Bearer {net.admin_key}"}
            r = httpx.post(f"{net.urls['notifications']}/v1/subscriptions", headers=auth,
                           json={"kind": "office", "prefecture": "13", "url": hook_url})
            r.raise_for_status()
            for title, description, fields in SEED_TOPICS:
                httpx.post(f"{net.urls['seeds']}/v1/seeds", headers=auth, json={
                    "title": title, "summary": description, "description": description, "keywords": [],
                    "fields": fields, "owner_org": "ベンチ大学", "owner_type": "university", "prefecture": "01",
                    "offers": ["license"], "language": "ja", "ip_status": "know_how", "trl": 4,
                    "contact_name": "ベンチ大学 産学連携", "contact_email": "bench@example.ac.jp",
                }).raise_for_status()
            # The seeds must be in the matcher's index before the clock starts (topics are independent).
            deadline = time.monotonic() + 30
            while httpx.get(f"{net.urls['matcher']}/v1/index", headers=auth).json()["seeds"] < len(SEED_TOPICS):
                if time.monotonic() > deadline:
                    raise SystemExit("the matcher did not index the seeds within 30 s")
                time.sleep(0.05)
            # …and one need through end to end: every consumer group has formed and the kernels are
            # compiled (an index fed by a replica's follower fills before its ranking consumer has joined).
            print(f"  warm-up: a first need delivered after {asyncio.run(warm_up(net, arrivals)):.1f} s", flush=True)
            print(f"load: {args.rate:g} needs/s for {args.duration:g} s "
                  f"({'PostgreSQL' if args.postgres else 'SQLite'}, embedded broker)", flush=True)
            processes = ["broker", "seeds", "needs", "matcher", "notifications"]
            cpu_before = {name: cpu_split(net.pid_of(name)) for name in processes}
            errors = asyncio.run(run_load(net, args.rate, args.duration, sent))
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline and not sent.keys() <= arrivals.keys():
                time.sleep(0.05)
            cpu_used = {name: _since(cpu_split(net.pid_of(name)), cpu_before[name]) for name in processes}
        finally:
            net.stop()
            receiver.stop()
            if pg is not None:
                pg.__exit__(None, None, None)

    latencies = [(arrivals[nid] - t0) * 1000 for nid, t0 in sent.items() if nid in arrivals]
    missing = len(sent) - len(latencies)
    if not latencies:
        print("no webhook arrived")
        sys.exit(1)
    print(f"needs posted: {len(sent)}  POST errors: {errors}  webhooks missing: {missing}")
    per_need = "  ".join(f"{name} {1000 * sum(used) / max(len(sent), 1):.1f}" for name, used in cpu_used.items())
    print(f"CPU ms per need (idle polling included): {per_need}")
    kernel = "  ".join(f"{name} {100 * used[1] / max(sum(used), 1e-9):.0f}%" for name, used in cpu_used.items())
    print(f"of which in the kernel (system time): {kernel}")
    print(
        "POST → webhook latency ms: "
        f"p50 {percentile(latencies, 0.50):.1f}  p90 {percentile(latencies, 0.90):.1f}  "
        f"p99 {percentile(latencies, 0.99):.1f}  max {max(latencies):.1f}  mean {statistics.fmean(latencies):.1f}"
    )


if __name__ == "__main__":
    main()
