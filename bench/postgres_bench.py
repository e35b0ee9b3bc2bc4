"""Postgres storage throughput next to raw psycopg doing the same work, in one run.

Writes: ``PostgresStorage.commit`` of one config write (compare-and-set, revision,
heads, NOTIFY — all of it) against a raw autocommit ``INSERT`` of the same row into a
plain table. Reads: ``PostgresStorage.get`` (latest version) against the raw ``SELECT``
of the latest row by the same kind of index. Both sides use the same psycopg 3 async
driver, the same server and the same number of concurrent clients.

    .venv/bin/python bench/postgres_bench.py [--dsn DSN] [--seconds 3] [--clients 1 8]

Creates and drops a schema of its own; takes well under a minute with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psycopg
from aether_postgres import PostgresSettings, PostgresStorage
from psycopg import sql

from aether_core.records import Write

DOCS_PER_CLIENT = 50
VALUE = {"host": "db.internal", "port": 5432, "pool": {"min": 1, "max": 10}, "tls": True}

Op = Callable[[int, int], Awaitable[None]]


SLICES = 6


async def measure_pair(
    clients: int, seconds: float, ours: Op, reference: Op
) -> tuple[dict[str, float], dict[str, float]]:
    """Alternate short slices of ``reference`` and ``ours`` (``clients`` loops each) for
    ``seconds`` apiece, so that load from elsewhere on the machine hits both alike."""
    latencies: dict[str, list[float]] = {"ours": [], "ref": []}
    elapsed = {"ours": 0.0, "ref": 0.0}
    counters = [0] * clients

    async def slice_of(op: Op, key: str) -> None:
        deadline = time.perf_counter() + seconds / SLICES

        async def loop(client: int) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await op(client, counters[client])
                latencies[key].append(time.perf_counter() - start)
                counters[client] += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(clients)))
        elapsed[key] += time.perf_counter() - started

    for _ in range(SLICES):
        await slice_of(reference, "ref")
        await slice_of(ours, "ours")

    def summary(key: str) -> dict[str, float]:
        lat = sorted(latencies[key])
        return {
            "ops_s": len(lat) / elapsed[key],
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        }

    return summary("ours"), summary("ref")


async def run(dsn: str, seconds: float, client_counts: list[int]) -> list[dict[str, Any]]:
    schema = f"aether_bench_{uuid.uuid4().hex[:8]}"
    top = max(client_counts)
    # Default pool_min_size (1): the pool grows to `top` only when clients run at once.
    # psycopg_pool hands out idle connections round-robin, so a pool kept at 8 would make
    # a single client touch a different backend on every call (~+0.3 ms a read here).
    store = PostgresStorage(PostgresSettings(dsn=dsn, schema=schema, pool_size=top))
    await store.open()
    raw = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(top)]
    table = sql.Identifier(schema, "raw_records")
    await raw[0].execute(sql.SQL(
        "CREATE TABLE {} (revision bigserial PRIMARY KEY, kind text COLLATE \"C\" NOT NULL, "
        "name text COLLATE \"C\" NOT NULL, version bigint NOT NULL, deleted boolean NOT NULL, "
        "body bytea NOT NULL, UNIQUE (kind, name, version))").format(table))
    insert = sql.SQL("INSERT INTO {} (kind, name, version, deleted, body) "
                     "VALUES (%s, %s, %s, %s, %s)").format(table)
    select = sql.SQL("SELECT kind, name, version, revision, deleted, body FROM {} "
                     "WHERE kind = %s AND name = %s ORDER BY version DESC LIMIT 1").format(table)
    body = msgspec.json.encode({"value": VALUE, "author": "bench"})
    versions: dict[str, int] = {}
    raw_versions: dict[str, int] = {}

    # Both sides write the same names, each into its own tables, with the same counter.
    async def storage_write(client: int, i: int) -> None:
        name = f"bench/{client}/{i % DOCS_PER_CLIENT}"
        current = versions.get(name, 0)
        result = await store.commit([Write(kind="config", name=name, expected_version=current,
                                           value=VALUE, author="bench")])
        assert result.rejection is None
        versions[name] = current + 1

    async def raw_write(client: int, i: int) -> None:
        name = f"bench/{client}/{i % DOCS_PER_CLIENT}"
        version = raw_versions.get(name, 0) + 1
        await raw[client].execute(insert, ("config", name, version, False, body))
        raw_versions[name] = version

    async def storage_read(client: int, i: int) -> None:
        assert await store.get("config", f"bench/{client}/{i % DOCS_PER_CLIENT}") is not None

    async def raw_read(client: int, i: int) -> None:
        cur = raw[client].cursor(binary=True)
        await cur.execute(select, ("config", f"bench/{client}/{i % DOCS_PER_CLIENT}"))
        row = await cur.fetchone()
        assert row is not None
        msgspec.json.decode(row[5])

    rows: list[dict[str, Any]] = []
    try:
        for client in range(top):  # every name a read may ask for exists on both sides
            for j in range(DOCS_PER_CLIENT):
                await storage_write(client, j)
                await raw_write(client, j)
        for clients in client_counts:
            for op_name, ours, reference in (("write", storage_write, raw_write),
                                             ("read", storage_read, raw_read)):
                mine, ref = await measure_pair(clients, seconds, ours, reference)
                rows.append({"op": op_name, "clients": clients, "aether": mine, "raw": ref,
                             "ratio": ref["ops_s"] / mine["ops_s"]})
    finally:
        await store.close()
        await raw[0].execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        for conn in raw:
            await conn.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "AETHER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    rows = asyncio.run(run(args.dsn, args.seconds, args.clients))
    print(f"# postgres storage vs raw psycopg — {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print("| op | clients | aether ops/s | aether p50 / p99 ms | raw ops/s | "
          "raw p50 / p99 ms | raw ÷ aether |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        a, w = r["aether"], r["raw"]
        print(f"| {r['op']} | {r['clients']} | {a['ops_s']:.0f} | "
              f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {w['ops_s']:.0f} | "
              f"{w['p50_ms']:.2f} / {w['p99_ms']:.2f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
