"""Membership and compaction in one event loop (fast, no processes): drivers with
``snapshot_every``, a node that joins with an empty log and catches up by snapshot,
the learner → voter flow, a conflicting change (409), unknown members (404), bad input
(400), leadership transfer, and writes that were certainly not applied (``NotApplied``)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from aether_raft.core import HardState, RaftConfig, RaftCore, Role, bootstrap
from aether_raft.driver import NotApplied, RaftDriver
from aether_raft.logstore import LogStore
from aether_raft.members import ClusterOps, MembershipConflict
from aether_raft.messages import ConfState, Message
from aether_raft.node import snapshot_of

from aether_core import MemoryStorage
from aether_core.commands import PutConfig
from aether_core.errors import BadRequest, NotFound
from aether_core.statemachine import StateMachine

EVERY = 10


class Group:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.drivers: dict[str, RaftDriver] = {}

    def add(self, name: str, founders: ConfState | None) -> RaftDriver:
        (self.root / name).mkdir()
        store = LogStore(str(self.root / name))
        store.open()
        if founders is not None:
            boot = bootstrap(founders)
            store.save(HardState(boot.term, None), boot.entries)
        core = RaftCore(name, store.open(), random.Random(name),
                        RaftConfig(election_ticks=10, snapshot_chunk_bytes=512))

        def send(m: Message) -> None:
            if m.dst in self.drivers:
                self.drivers[m.dst].deliver(m)

        driver = RaftDriver(core, store, StateMachine(MemoryStorage()), send,
                            tick_seconds=0.01, snapshot_every=EVERY)
        self.drivers[name] = driver
        driver.start()
        return driver

    async def leader(self) -> RaftDriver:
        for _ in range(500):
            for d in self.drivers.values():
                if d.core.role is Role.LEADER:
                    return d
            await asyncio.sleep(0.01)
        raise AssertionError("no leader")

    def ops(self, driver: RaftDriver) -> ClusterOps:
        return ClusterOps(driver, leader_wait=5, catch_up_wait=0.5, transfer_wait=5, peers={})

    async def close(self) -> None:
        for d in self.drivers.values():
            await d.close()
            d.store.close()
        assert all(d.failure is None for d in self.drivers.values())


async def test_a_joining_node_catches_up_by_snapshot_and_becomes_a_voter(tmp_path: Path) -> None:
    group = Group(tmp_path)
    founders = ConfState(("n1", "n2", "n3"))
    for name in founders.voters:
        group.add(name, founders)
    try:
        leader = await group.leader()
        for i in range(3 * EVERY):
            async with asyncio.timeout(5):
                await leader.propose(PutConfig(name="app/x", value=i))
        assert leader.snapshots_taken >= 2
        assert leader.core.log.snapshot.index >= 2 * EVERY  # compacted as it applied
        assert all(d.snapshots_taken >= 2 for d in group.drivers.values())
        # Built a batch at a time, the snapshot is byte for byte the storage contract's.
        storage = leader.state_machine.storage
        index, data = await snapshot_of(storage)
        assert index == await storage.applied_index() and index >= 3 * EVERY
        assert data == b"".join([chunk async for chunk in storage.snapshot()])

        joiner = group.add("n4", None)  # join: no bootstrap, an empty log
        assert joiner.core.conf.members() == ()
        ops = group.ops(leader)
        async with asyncio.timeout(10):
            added = await ops.add("n4", "127.0.0.1:7404")
        assert added["role"] == "voter" and set(added["voters"]) == {"n1", "n2", "n3", "n4"}
        assert added["voters"]["n4"] == "127.0.0.1:7404"
        assert dict(leader.core.conf.addresses) == {"n4": "127.0.0.1:7404"}
        assert joiner.snapshots_installed == 1  # the log it needed was compacted away
        record = await joiner.state_machine.storage.get("config", "app/x")
        assert record is not None and record.value == 3 * EVERY - 1
        async with asyncio.timeout(5):
            while joiner.core.conf != leader.core.conf:  # noqa: ASYNC110 - polls the core
                await asyncio.sleep(0.01)

        # Two changes at once: the second is refused while the first is uncommitted.
        results = await asyncio.gather(ops.run("add", "n5", "127.0.0.1:7405"),
                                       ops.run("add", "n6", "127.0.0.1:7406"),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, MembershipConflict)]
        assert len(refused) == 1 and "not committed" in refused[0].detail, results
        done = next(r for r in results if isinstance(r, dict))
        assert done["role"] == "learner" and "has not caught up" in done["detail"]
        with pytest.raises(MembershipConflict):
            await ops.run("add", "n2", "127.0.0.1:1")  # already a voter
        with pytest.raises(MembershipConflict):
            await ops.run("transfer", done["node"])  # a learner cannot lead
        with pytest.raises(NotFound):
            await ops.run("remove", "n9")
        with pytest.raises(BadRequest):
            await ops.run("add", "n7", "nowhere")
        await ops.run("remove", done["node"])
        assert leader.core.conf.learners == ()

        moved = await ops.run("transfer", "n4")
        assert moved["leader"] == "n4" and (await group.leader()) is joiner
        # The old leader refuses a proposal it cannot make: certainly not applied.
        with pytest.raises(NotApplied):
            await leader.propose(PutConfig(name="app/x", value=-1))
        async with asyncio.timeout(5):
            await joiner.propose(PutConfig(name="app/x", value=100))
            await leader.read_barrier(timeout=2)
        record = await leader.state_machine.storage.get("config", "app/x")
        assert record is not None and record.value == 100
    finally:
        await group.close()
