"""Embedded node: in-process write and read ops/s against raw SQLite, in one run.

Both sides use the same file system, the same row size and the same durability
settings (WAL, synchronous=FULL: one fsync per committed transaction).

    .venv/bin/python bench/embedded_bench.py [--writes 2000] [--reads 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import msgspec

from aether_core import ConfigManager, SqliteStorage

VALUE = {"host": "db.internal", "port": 5432, "pool": {"min": 2, "max": 20}, "tags": ["a", "b"]}


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10,.0f} ops/s  ({seconds * 1e6 / n:7.1f} µs/op)"


def raw_sqlite(path: Path, writes: int, reads: int, row: bytes) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
    start = time.perf_counter()
    for i in range(writes):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO kv(id, name, body) VALUES (?, ?, ?)", (i, f"k{i % 50}", row))
        conn.execute("COMMIT")
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(reads):
        conn.execute("SELECT body FROM kv WHERE id = ?", (i % writes,)).fetchone()
    read_s = time.perf_counter() - start
    conn.close()
    return write_s, read_s


async def aether(path: Path, writes: int, reads: int, concurrency: int) -> tuple[float, ...]:
    async with ConfigManager(SqliteStorage(path)) as manager:
        start = time.perf_counter()
        for i in range(writes):
            await manager.put(f"bench/k{i % 50}", VALUE)
        write_s = time.perf_counter() - start

        async def writer(w: int) -> None:
            for i in range(writes // concurrency):
                await manager.put(f"bench/c{w}/k{i % 5}", VALUE)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(concurrency)))
        concurrent_s = time.perf_counter() - start

        start = time.perf_counter()
        for i in range(reads):
            await manager.get(f"bench/k{i % 50}")
        read_s = time.perf_counter() - start
        return write_s, concurrent_s, read_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    record = msgspec.json.encode(
        {"kind": "config", "name": "bench/k1", "version": 1, "revision": 1, "value": VALUE,
         "deleted": False, "author": "", "comment": "", "timestamp": time.time(), "meta": {}})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores, {cpu}; python {platform.python_version()}")
    print(f"row: {len(record)} bytes; writes={args.writes} reads={args.reads}")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        raw_w, raw_r = raw_sqlite(Path(tmp) / "raw.db", args.writes, args.reads, record)
        a_w, a_c, a_r = asyncio.run(
            aether(Path(tmp) / "aether.db", args.writes, args.reads, args.concurrency))
    print(f"raw sqlite   write (1 txn + fsync each): {rate(args.writes, raw_w)}")
    print(f"aether       put, one at a time:         {rate(args.writes, a_w)}"
          f"   = {raw_w / a_w:4.0%} of raw")
    n = args.writes // args.concurrency * args.concurrency
    print(f"aether       put, {args.concurrency} concurrent writers:   {rate(n, a_c)}"
          f"   = {raw_w / args.writes * n / a_c:4.0%} of raw")
    print(f"raw sqlite   read by primary key:        {rate(args.reads, raw_r)}")
    print(f"aether       get latest:                 {rate(args.reads, a_r)}"
          f"   = {raw_r / a_r:4.0%} of raw")


if __name__ == "__main__":
    main()
