#!/usr/bin/env python3
"""Raft core throughput: proposals committed per second through the pure core with real
fsync'd log stores (1 node and 3 nodes in process), and through the core alone with
in-memory stores; next to the machine's unbatched fsync rate measured in the same run
(../shared/bench/fsync_latency.py when present, else the same loop inline).

Usage: .venv/bin/python bench/raft_core_bench.py [seconds-per-row=3]
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aether_raft.core import RaftConfig, RaftCore, bootstrap
from aether_raft.logstore import LogStore
from aether_raft.messages import ConfState, Entry, Message
from aether_raft.sim import MemoryDurable

PAYLOAD = os.urandom(256)
FSYNC_SCRIPT = Path("/work/shared/bench/fsync_latency.py")


def unbatched_fsync_rate(n: int = 1000) -> float:
    if FSYNC_SCRIPT.exists():
        out = subprocess.run(
            [sys.executable, str(FSYNC_SCRIPT), str(n), "append"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"fsyncs_per_s=(\d+)", out)
        if match:
            return float(match.group(1))
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        fd = os.open(f"{d}/f", os.O_WRONLY | os.O_CREAT, 0o600)
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, PAYLOAD)
            os.fsync(fd)
        os.close(fd)
        return n / (time.perf_counter() - start)


def store_rate(batch: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        store = LogStore(d)
        store.open()
        index, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            store.save(None, [Entry(1, index + i + 1, data=PAYLOAD) for i in range(batch)])
            index += batch
        elapsed = time.perf_counter() - start
        store.close()
        return index / elapsed


class Cluster:
    """Cores wired in process; ``disk`` selects real LogStores or memory."""

    def __init__(self, size: int, root: str | None) -> None:
        names = [f"n{i + 1}" for i in range(size)]
        boot = bootstrap(ConfState(tuple(names)))
        self.queue: list[Message] = []
        self.stores: dict[str, LogStore | MemoryDurable] = {}
        self.cores: dict[str, RaftCore] = {}
        for name in names:
            store: LogStore | MemoryDurable
            if root is not None:
                os.makedirs(f"{root}/{name}")
                store = LogStore(f"{root}/{name}")
                store.open()
                store.save(None, boot.entries)
            else:
                store = MemoryDurable(entries=list(boot.entries))
            self.stores[name] = store
            self.cores[name] = RaftCore(name, boot, random.Random(name), RaftConfig())
        self.leader = self.cores[names[0]]
        self.leader.campaign()
        self.settle()

    def settle(self) -> None:
        while True:
            busy = False
            for name, core in self.cores.items():
                if core.has_ready():
                    busy = True
                    rd = core.ready()
                    store = self.stores[name]
                    if isinstance(store, LogStore):
                        store.save(rd.hard_state, rd.entries, rd.snapshot, restore=rd.restore)
                    else:
                        store.save(rd)
                    self.queue.extend(rd.messages)
                    core.advance(rd)
            if not busy and not self.queue:
                return
            queue, self.queue = self.queue, []
            for m in queue:
                self.cores[m.dst].step(m)

    def rate(self, batch: int, seconds: float) -> float:
        start_commit = self.leader.commit
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(batch):
                self.leader.propose(PAYLOAD)
            self.settle()
        return (self.leader.commit - start_commit) / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    fsync = unbatched_fsync_rate()
    rows = [("unbatched fsync (256 B append + fsync)", "-", fsync)]
    for batch in (1, 16, 128):
        rows.append(
            (f"log store append+fsync, {batch} entries/fsync", batch, store_rate(batch, seconds))
        )
    for size in (1, 3):
        for batch in (1, 64):
            with tempfile.TemporaryDirectory(dir="/tmp") as d:
                rate = Cluster(size, d).rate(batch, seconds)
            rows.append(
                (f"core + fsync'd stores, {size} node(s), {batch} proposals/round", batch, rate)
            )
    for batch in (1, 64):
        rows.append(
            (
                f"core only (memory stores), 3 nodes, {batch} proposals/round",
                batch,
                Cluster(3, None).rate(batch, seconds),
            )
        )
    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}, python {sys.version.split()[0]}")
    print("| what | batch | entries/s | vs unbatched fsync |")
    print("|---|---|---|---|")
    for what, batch, rate in rows:
        print(f"| {what} | {batch} | {rate:,.0f} | {rate / fsync:.1f}x |")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
