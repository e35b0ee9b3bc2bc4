"""What one automatic compaction costs (``[transport] snapshot_every``): a one-node raft
driver over SQLite storage applies N entries (configs of ~150 B, 20 versions each),
then snapshots and compacts at N. Prints the snapshot size, how long the compaction
took (store read + core compaction + snapshot file write and fsync), and the longest
event-loop stall seen meanwhile (the store is read in batches of 1,000 records; the
file is written in a worker thread).

Run: ``.venv/bin/python bench/raft_compaction_bench.py [N ...]`` (default 10000 50000).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time

from aether_raft.core import HardState, RaftConfig, RaftCore, Role, bootstrap
from aether_raft.driver import RaftDriver
from aether_raft.logstore import LogStore
from aether_raft.messages import ConfState

from aether_core.commands import PutConfig
from aether_core.statemachine import StateMachine
from aether_core.storage.sqlite import SqliteStorage


async def one(n: int) -> str:
    root = tempfile.mkdtemp(prefix="raft-compaction-")
    storage = SqliteStorage(f"{root}/store.db")
    await storage.open()
    os.mkdir(f"{root}/raft")
    store = LogStore(f"{root}/raft")
    store.open()
    boot = bootstrap(ConfState(("n1",)))
    store.save(HardState(boot.term, None), boot.entries)
    core = RaftCore("n1", store.open(), random.Random(1), RaftConfig(election_ticks=10))
    driver = RaftDriver(core, store, StateMachine(storage), lambda m: None,
                        tick_seconds=0.01, snapshot_every=n)
    driver.start()
    while core.role is not Role.LEADER:  # noqa: ASYNC110 - polls the core
        await asyncio.sleep(0.01)
    stalls: list[float] = []
    watching = False

    async def watch() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.002)
            now = time.monotonic()
            if watching:
                stalls.append(now - last - 0.002)
            last = now

    watcher = asyncio.create_task(watch())
    sent = 0
    while sent < n - 64:
        batch = [driver.propose(PutConfig(name=f"app/k{(sent + i) % (n // 20)}",
                                          value={"n": sent + i, "pad": "x" * 100}))
                 for i in range(64)]
        sent += len(batch)
        await asyncio.gather(*batch)
    watching = True
    while driver.snapshots_taken == 0:
        await driver.propose(PutConfig(name="app/k0", value={"n": -1, "pad": "x"}))
    watching = False
    watcher.cancel()
    snap = core.snapshot
    assert snap is not None
    line = (f"| {n:,} | {len(snap.data) / 1e6:.1f} MB | "
            f"{driver.last_snapshot_seconds * 1000:.0f} ms | {max(stalls) * 1000:.0f} ms |")
    await driver.close()
    store.close()
    await storage.close()
    return line


async def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 50_000]
    print("| snapshot_every | snapshot | compaction (read + compact + write/fsync) "
          "| longest loop stall |")
    print("|---|---|---|---|")
    for n in sizes:
        print(await one(n), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
