"""The kernel glue: three in-process nodes over real fsync'd log stores and the kernel's
MemoryStorage; a far-behind node catches up by the storage's own snapshot; a restart
replays safely because storage is idempotent by log index."""

from __future__ import annotations

import random
from pathlib import Path

from aether_raft.core import RaftConfig
from aether_raft.logstore import LogStore
from aether_raft.messages import ConfState, Message
from aether_raft.node import RaftNode, snapshot_of

from aether_core import MemoryStorage
from aether_core.commands import PutConfig
from aether_core.statemachine import StateMachine


class Net:
    def __init__(self) -> None:
        self.queue: list[Message] = []
        self.nodes: dict[str, RaftNode] = {}
        self.down: set[str] = set()

    async def settle(self) -> None:
        while True:
            busy = False
            for node in self.nodes.values():
                if node.id not in self.down:
                    busy |= await node.process_ready()
            if not self.queue and not busy:
                return
            queue = list(self.queue)
            self.queue.clear()
            for m in queue:
                if m.dst not in self.down:
                    self.nodes[m.dst].core.step(m)


async def make(net: Net, name: str, root: Path, founders: ConfState) -> RaftNode:
    node = RaftNode(
        name,
        LogStore(str(root / name)),
        StateMachine(MemoryStorage()),
        net.queue.append,
        rng=random.Random(name),
        config=RaftConfig(snapshot_chunk_bytes=256),
    )
    (root / name).mkdir(exist_ok=True)
    await node.start(founders)
    net.nodes[name] = node
    return node


async def test_cluster_applies_commands_and_snapshots_through_the_kernel(tmp_path: Path) -> None:
    founders = ConfState(("n1", "n2", "n3"))
    net = Net()
    for name in founders.voters:
        await make(net, name, tmp_path, founders)
    n1 = net.nodes["n1"]
    n1.core.campaign()
    await net.settle()
    net.down.add("n3")
    indexes = [n1.propose(PutConfig(name=f"app/c{i}", value={"i": i})) for i in range(20)]
    await net.settle()
    assert all(n1.results[i].rejection is None for i in indexes)
    compacted = await n1.compact()
    assert compacted == n1.core.commit and n1.core.log.entries == []
    # n3 comes back far behind: the leader must send the kernel snapshot, in chunks.
    net.down.discard("n3")
    n1.core.tick()
    await net.settle()
    n3 = net.nodes["n3"]
    assert await n3.state_machine.storage.applied_index() == n1.core.commit
    assert await snapshot_of(n3.state_machine.storage) == await snapshot_of(
        n1.state_machine.storage
    )
    record = await n3.state_machine.storage.get("config", "app/c19")
    assert record is not None and record.value == {"i": 19}


async def test_restart_replays_from_the_log_without_double_applying(tmp_path: Path) -> None:
    founders = ConfState(("n1",))
    net = Net()
    node = await make(net, "n1", tmp_path, founders)
    node.core.campaign()
    node.propose(PutConfig(name="a", value=1))
    node.propose(PutConfig(name="a", value=2))
    await net.settle()
    storage = node.state_machine.storage
    assert (await storage.get("config", "a")).value == 2  # type: ignore[union-attr]
    node.store.close()
    # Same storage (it survived), same log: nothing is applied twice.
    again = RaftNode("n1", LogStore(str(tmp_path / "n1")), node.state_machine, net.queue.append)
    await again.start(founders)
    net.nodes["n1"] = again
    again.core.campaign()
    await net.settle()
    record = await storage.get("config", "a")
    assert record is not None and record.version == 2
