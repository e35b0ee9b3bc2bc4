"""Redis and S3 storage throughput next to the raw client doing the same work, in one run.

Redis — writes: ``RedisStorage.commit`` of one config write (the Lua compare-and-set
script: version check, revision, record, indexes, stream entry, commit token) against a
raw redis-py ``SET`` of the same JSON value; reads: ``RedisStorage.get`` (latest
version, one Lua script) against a raw ``GET``. Same redis-py client library, same
server.

S3 on moto — writes: ``S3Storage.commit`` (read the next log key, conditional PUT of
the entry) against a raw boto3 ``put_object`` of the same value; reads:
``S3Storage.get`` (one GET of the next log key, then memory) against a raw
``get_object``. Same boto3, both in worker threads, same moto server (the serialised
one the tests use, started here on a free port).

    .venv/bin/python bench/redis_s3_bench.py [--seconds 1.5] [--clients 1 8]

Measurements alternate short slices of raw and Aether so that noise from elsewhere on
the machine hits both alike. Cleans up its keys and stops its server; < 1 minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import msgspec
import redis.asyncio as aioredis
from aether_redis import RedisSettings, RedisStorage
from aether_s3 import S3Settings, S3Storage

from aether_core.records import Write

VALUE = {"host": "db.internal", "port": 5432, "pool": {"min": 1, "max": 10}, "tls": True}
DOCS_PER_CLIENT = 20
SLICES = 4
MOTO = Path(__file__).resolve().parents[1] / "plugins/aether-s3/tests/moto_serialized.py"

Op = Callable[[int, int], Awaitable[None]]


async def measure_pair(clients: int, seconds: float, ours: Op, ref: Op
                       ) -> dict[str, tuple[float, float]]:
    """ops/s and p99 (ms) of each side, ``clients`` concurrent loops, alternating slices."""
    latencies: dict[str, list[float]] = {"ours": [], "ref": []}
    elapsed = {"ours": 0.0, "ref": 0.0}
    counters = {"ours": [0] * clients, "ref": [0] * clients}

    async def run_slice(op: Op, side: str) -> None:
        deadline = time.perf_counter() + seconds / SLICES

        async def loop(client: int) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await op(client, counters[side][client])
                latencies[side].append(time.perf_counter() - start)
                counters[side][client] += 1

        began = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(clients)))
        elapsed[side] += time.perf_counter() - began

    for _ in range(SLICES):
        await run_slice(ref, "ref")
        await run_slice(ours, "ours")
    out = {}
    for side in ("ours", "ref"):
        lat = sorted(latencies[side])
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        out[side] = (len(lat) / elapsed[side], p99)
    return out


class Writer:
    """Compare-and-set writes to a few documents per client, tracking their versions."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.versions: dict[str, int] = {}

    async def __call__(self, client: int, i: int) -> None:
        name = f"bench/{client}/{i % DOCS_PER_CLIENT}"
        expected = self.versions.get(name, 0)
        result = await self.store.commit([Write(kind="config", name=name,
                                                expected_version=expected, value=VALUE,
                                                author="bench", timestamp=1.0)])
        assert result.rejection is None, result.rejection
        self.versions[name] = expected + 1


    async def seed(self, clients: int) -> None:
        """Make sure every document the readers ask for exists."""
        for client in range(clients):
            for i in range(DOCS_PER_CLIENT):
                if f"bench/{client}/{i}" not in self.versions:
                    await self(client, i)


async def reader(store: Any, client: int, i: int) -> None:
    record = await store.get("config", f"bench/{client}/{i % DOCS_PER_CLIENT}")
    assert record is not None


async def bench_redis(args: argparse.Namespace) -> list[tuple[str, int, dict[str, Any]]]:
    prefix = f"aether-bench:{uuid.uuid4().hex[:8]}:"
    store = RedisStorage(RedisSettings(url=args.redis_url, prefix=prefix, pool_size=16))
    raw = aioredis.Redis.from_url(args.redis_url, max_connections=16)
    await store.open()
    payload = msgspec.json.encode(VALUE)
    rows = []
    write = Writer(store)  # one per store: it tracks the versions of its documents
    for client in range(max(args.clients)):
        for i in range(DOCS_PER_CLIENT):
            await raw.set(f"{prefix}raw:{client}:{i}", payload)
    try:
        for clients in args.clients:
            async def raw_set(client: int, i: int) -> None:
                await raw.set(f"{prefix}raw:{client}:{i % DOCS_PER_CLIENT}", payload)

            async def raw_get(client: int, i: int) -> None:
                assert await raw.get(f"{prefix}raw:{client}:{i % DOCS_PER_CLIENT}") is not None

            rows.append(("redis write", clients, await measure_pair(
                clients, args.seconds, write, raw_set)))
            await write.seed(clients)
            rows.append(("redis read", clients, await measure_pair(
                clients, args.seconds, lambda c, i: reader(store, c, i), raw_get)))
    finally:
        await store.destroy()
        keys = [k async for k in raw.scan_iter(match=prefix + "*")]
        if keys:
            await raw.delete(*keys)
        await store.close()
        await raw.aclose()
    return rows


async def bench_s3(args: argparse.Namespace, endpoint: str
                   ) -> list[tuple[str, int, dict[str, Any]]]:
    bucket = "aether-bench"
    raw = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bench", aws_secret_access_key="bench")
    raw.create_bucket(Bucket=bucket)
    payload = msgspec.json.encode(VALUE)
    for client in range(max(args.clients)):
        for i in range(DOCS_PER_CLIENT):
            raw.put_object(Bucket=bucket, Key=f"raw/{client}/{i}", Body=payload)
    rows = []
    for clients in args.clients:
        # A fresh prefix per round keeps the replayed log the same size for each.
        store = S3Storage(S3Settings.model_validate({
            "bucket": bucket, "endpoint_url": endpoint, "prefix": f"c{clients}/",
            "access_key_id": "bench", "secret_access_key": "bench"}))
        await store.open()
        write = Writer(store)

        async def raw_put(client: int, i: int) -> None:
            await asyncio.to_thread(raw.put_object, Bucket=bucket,
                                    Key=f"raw/{client}/{i % DOCS_PER_CLIENT}", Body=payload)

        async def raw_get(client: int, i: int) -> None:
            response = await asyncio.to_thread(
                raw.get_object, Bucket=bucket, Key=f"raw/{client}/{i % DOCS_PER_CLIENT}")
            response["Body"].read()

        rows.append(("s3 (moto) write", clients, await measure_pair(
            clients, args.seconds, write, raw_put)))
        await write.seed(clients)
        rows.append(("s3 (moto) read", clients, await measure_pair(
            clients, args.seconds, lambda c, i, s=store: reader(s, c, i), raw_get)))
        await store.close()
    return rows


async def run(args: argparse.Namespace, endpoint: str) -> None:
    started = time.perf_counter()
    rows = await bench_redis(args) + await bench_s3(args, endpoint)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print("| operation | clients | raw ops/s | raw p99 ms | Aether ops/s | Aether p99 ms "
          "| Aether/raw |")
    print("|---|---|---|---|---|---|---|")
    for label, clients, result in rows:
        (ours, ours_p99), (ref, ref_p99) = result["ours"], result["ref"]
        print(f"| {label} | {clients} | {ref:,.0f} | {ref_p99:.2f} | {ours:,.0f} | "
              f"{ours_p99:.2f} | {ours / ref:.0%} |")
    ratios = [r["ours"][0] / r["ref"][0] for _, _, r in rows]
    print(f"geometric mean Aether/raw: {statistics.geometric_mean(ratios):.0%}; "
          f"took {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="seconds per side per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    # The moto server the S3 tests use (one request at a time, like S3's atomic create).
    proc = subprocess.Popen([sys.executable, str(MOTO)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        endpoint = f"http://127.0.0.1:{int(proc.stdout.readline().split()[1])}"
        asyncio.run(run(args, endpoint))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

if __name__ == "__main__":
    main()
