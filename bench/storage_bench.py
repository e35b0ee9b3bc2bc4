"""Every storage backend in one run — SQLite, Postgres, Redis, S3 on moto — each next to
its raw client doing the same operation, as one table of write/read ops/s and p99.

- SQLite: ``SqliteStorage.commit`` / ``get`` against sqlite3 ``INSERT`` (one
  ``BEGIN IMMEDIATE … COMMIT`` each, WAL, ``synchronous=FULL``: the same durability) and
  ``SELECT`` by primary key.
- Postgres: ``bench/postgres_bench.py`` (raw psycopg ``INSERT`` / ``SELECT``).
- Redis and S3: ``bench/redis_s3_bench.py`` (raw redis-py ``SET`` / ``GET``, raw boto3
  ``put_object`` / ``get_object`` on the same serialised moto server the tests use).

    .venv/bin/python bench/storage_bench.py [--seconds 1.5] [--clients 1 8]
                                            [--backends sqlite postgres redis s3]

Each measurement alternates short slices of raw and Aether so that noise from
elsewhere on the machine hits both alike. Cleans up its schema, keys and server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import postgres_bench
from redis_s3_bench import (
    DOCS_PER_CLIENT,
    MOTO,
    VALUE,
    Writer,
    bench_redis,
    bench_s3,
    measure_pair,
    reader,
)

from aether_core import SqliteStorage

BACKENDS = ("sqlite", "postgres", "redis", "s3")

#: (operation, clients, Aether ops/s, Aether p99 ms, raw ops/s, raw p99 ms)
Row = tuple[str, int, float, float, float, float]


async def bench_sqlite(args: argparse.Namespace, directory: Path) -> list[Row]:
    store = SqliteStorage(directory / "aether.db")
    await store.open()
    raw = sqlite3.connect(directory / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE records (kind TEXT NOT NULL, name TEXT NOT NULL, "
                "version INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (kind, name, version))")
    body = msgspec.json.encode({"value": VALUE, "author": "bench"})
    raw_versions: dict[str, int] = {}

    async def raw_insert(client: int, i: int) -> None:
        name = f"bench/{client}/{i % DOCS_PER_CLIENT}"
        version = raw_versions.get(name, 0) + 1
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO records VALUES ('config', ?, ?, ?)", (name, version, body))
        raw.execute("COMMIT")
        raw_versions[name] = version

    async def raw_select(client: int, i: int) -> None:
        row = raw.execute("SELECT body FROM records WHERE kind = 'config' AND name = ? "
                          "ORDER BY version DESC LIMIT 1",
                          (f"bench/{client}/{i % DOCS_PER_CLIENT}",)).fetchone()
        assert row is not None
        msgspec.json.decode(row[0])

    rows: list[Row] = []
    write = Writer(store)
    try:
        for clients in args.clients:
            result = await measure_pair(clients, args.seconds, write, raw_insert)
            rows.append(_row("sqlite write", clients, result))
            await write.seed(clients)
            for client in range(clients):
                for i in range(DOCS_PER_CLIENT):
                    if f"bench/{client}/{i}" not in raw_versions:
                        await raw_insert(client, i)
            result = await measure_pair(clients, args.seconds,
                                        lambda c, i: reader(store, c, i), raw_select)
            rows.append(_row("sqlite read", clients, result))
    finally:
        await store.close()
        raw.close()
    return rows


def _row(label: str, clients: int, result: dict[str, tuple[float, float]]) -> Row:
    (ours, ours_p99), (ref, ref_p99) = result["ours"], result["ref"]
    return (label, clients, ours, ours_p99, ref, ref_p99)


async def bench_postgres(args: argparse.Namespace) -> list[Row]:
    found = await postgres_bench.run(args.dsn, args.seconds, args.clients)
    return [(f"postgres {r['op']}", r["clients"], r["aether"]["ops_s"], r["aether"]["p99_ms"],
             r["raw"]["ops_s"], r["raw"]["p99_ms"]) for r in found]


async def run(args: argparse.Namespace, endpoint: str | None) -> list[Row]:
    rows: list[Row] = []
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
            rows += await bench_sqlite(args, Path(tmp))
    if "postgres" in args.backends:
        rows += await bench_postgres(args)
    found = await bench_redis(args) if "redis" in args.backends else []
    if endpoint is not None:
        found += await bench_s3(args, endpoint)
    return rows + [_row(label, clients, result) for label, clients, result in found]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"load {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="seconds per side per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--dsn", default=os.environ.get(
        "AETHER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--data-dir", default=".", help="where the SQLite files go (a disk, "
                        "not tmpfs, for the fsyncs to mean anything)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                        help="which backends to measure (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    before = machine()
    if "s3" in args.backends:
        proc = subprocess.Popen([sys.executable, str(MOTO)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            endpoint = f"http://127.0.0.1:{int(proc.stdout.readline().split()[1])}"
            rows = asyncio.run(run(args, endpoint))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    else:
        rows = asyncio.run(run(args, None))
    print(f"machine: {before}; after the run: load {os.getloadavg()[0]:.2f}")
    print("| operation | clients | raw ops/s | raw p99 ms | Aether ops/s | Aether p99 ms "
          "| Aether/raw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, clients, ours, ours_p99, ref, ref_p99 in rows:
        print(f"| {label} | {clients} | {ref:,.0f} | {ref_p99:.2f} | {ours:,.0f} | "
              f"{ours_p99:.2f} | {ours / ref:.0%} |")
    ratios: dict[str, Any] = {}
    for label, _, ours, _, ref, _ in rows:
        ratios.setdefault(label.split()[0], []).append(ours / ref)
    print("geometric mean Aether/raw: " + ", ".join(
        f"{k} {statistics.geometric_mean(v):.0%}" for k, v in ratios.items())
        + f"; took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
