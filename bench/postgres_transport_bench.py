"""What a per-node lock would cost writers of a shared Postgres store.

``ConfigManager.put`` (validation, head read, compare-and-set commit, watch hub) through
the ``local`` transport as shipped — over a shared store it applies commands
concurrently (the database orders them, as it does between nodes), so concurrent puts
of one node share a group commit — against the same transport forced to apply one
command at a time, as it did before.

    .venv/bin/python bench/postgres_transport_bench.py [--dsn DSN] [--seconds 2] [--rounds 3]

Each figure uses a fresh schema, dropped afterwards; the two variants alternate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import psycopg
from aether_postgres import PostgresSettings, PostgresStorage
from psycopg import sql

from aether_core import ConfigManager
from aether_core.commands import Command
from aether_core.errors import Unavailable
from aether_core.records import CommitResult
from aether_core.transport.local import LocalTransport


class SerialTransport(LocalTransport):
    """``local`` with a lock even over a shared store: one command at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._one_at_a_time = asyncio.Lock()

    async def propose(self, command: Command) -> CommitResult:
        if self._state_machine is None:
            raise Unavailable("the transport is not started")
        async with self._one_at_a_time:
            return await self._state_machine.apply(command)


async def puts_per_second(dsn: str, transport: LocalTransport, clients: int,
                          seconds: float) -> float:
    schema = f"aether_tbench_{uuid.uuid4().hex[:8]}"
    store = PostgresStorage(PostgresSettings(dsn=dsn, schema=schema, pool_size=8))
    done = 0
    try:
        async with ConfigManager(store, transport=transport) as manager:
            async def loop(client: int) -> None:
                nonlocal done
                deadline = time.perf_counter() + seconds
                i = 0
                while time.perf_counter() < deadline:
                    await manager.put(f"bench/{client}/{i % 20}", {"i": i})
                    i += 1
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(loop(c) for c in range(clients)))
            return done / (time.perf_counter() - started)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


async def main(args: argparse.Namespace) -> None:
    print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print("| round | clients | one at a time (lock) puts/s | shipped (concurrent) puts/s |")
    print("|---:|---:|---:|---:|")
    for r in range(1, args.rounds + 1):
        for clients in (1, 8):
            locked = await puts_per_second(args.dsn, SerialTransport(), clients, args.seconds)
            unlocked = await puts_per_second(args.dsn, LocalTransport(), clients,
                                             args.seconds)
            print(f"| {r} | {clients} | {locked:,.0f} | {unlocked:,.0f} |", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "AETHER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
