"""The asyncio driver: three nodes in one event loop, fsync'd stores, the kernel's state
machine; writes through the leader, linearizable reads, a leader crash."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from aether_raft.core import HardState, RaftConfig, RaftCore, Role, bootstrap
from aether_raft.driver import RaftDriver
from aether_raft.logstore import LogStore
from aether_raft.messages import ConfState, Message

from aether_core import MemoryStorage
from aether_core.commands import PutConfig
from aether_core.errors import Unavailable
from aether_core.statemachine import StateMachine


async def test_three_drivers_elect_replicate_and_survive_a_leader_crash(tmp_path: Path) -> None:
    conf = ConfState(("n1", "n2", "n3"))
    drivers: dict[str, RaftDriver] = {}
    down: set[str] = set()

    def sender(src: str):  # type: ignore[no-untyped-def]
        def send(m: Message) -> None:
            if src not in down and m.dst not in down:
                drivers[m.dst].deliver(m)

        return send

    for name in conf.voters:
        (tmp_path / name).mkdir()
        store = LogStore(str(tmp_path / name))
        state = store.open()
        boot = bootstrap(conf)
        store.save(None, boot.entries)
        store.save(HardState(boot.term, None))
        core = RaftCore(name, store.open(), random.Random(name), RaftConfig(election_ticks=10))
        assert state.entries == []
        drivers[name] = RaftDriver(
            core, store, StateMachine(MemoryStorage()), sender(name), tick_seconds=0.01
        )
    for d in drivers.values():
        d.start()
    try:

        async def leader() -> RaftDriver:
            for _ in range(500):
                for name, d in drivers.items():
                    if name not in down and d.core.role is Role.LEADER:
                        return d
                await asyncio.sleep(0.01)
            raise AssertionError("no leader")

        first = await leader()
        for i in range(10):
            result = await asyncio.wait_for(
                first.propose(PutConfig(name="app/x", value=i)), timeout=5
            )
            assert result.rejection is None
        # A follower refuses writes with Unavailable naming the leader.
        follower = next(d for d in drivers.values() if d is not first)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(follower.propose(PutConfig(name="app/x", value=-1)), 5)
        # Linearizable read on a follower sees the last write.
        await asyncio.wait_for(follower.read_barrier(), timeout=5)
        record = await follower.state_machine.storage.get("config", "app/x")
        assert record is not None and record.value == 9
        # The leader dies; the others elect a new one and keep every write.
        down.add(first.core.id)
        await first.close()
        second = await leader()
        assert second is not first
        await asyncio.wait_for(second.propose(PutConfig(name="app/x", value=10)), timeout=5)
        record = await second.state_machine.storage.get("config", "app/x")
        assert record is not None and record.version == 11
    finally:
        for d in drivers.values():
            await d.close()
            d.store.close()
        assert all(d.failure is None for d in drivers.values()), [
            repr(d.failure) for d in drivers.values()
        ]


async def test_a_request_whose_caller_gave_up_does_not_stop_the_driver(tmp_path: Path) -> None:
    # A read that times out before the driver task runs its request leaves a cancelled
    # future behind; answering it "not the leader" once raised InvalidStateError inside
    # the driver loop and stopped the node for good (found by the fault runs).
    store = LogStore(str(tmp_path))
    store.open()
    conf = ConfState(("n1", "n2", "n3"))
    boot = bootstrap(conf)
    store.save(None, boot.entries)
    store.save(HardState(boot.term, None))
    core = RaftCore("n1", store.open(), random.Random(1), RaftConfig(election_ticks=10))
    driver = RaftDriver(core, store, StateMachine(MemoryStorage()), lambda m: None,
                        tick_seconds=0.01)
    driver.start()
    try:
        reader = asyncio.create_task(driver.read_barrier())
        await asyncio.sleep(0)  # the reader queued its request; the driver has not run
        reader.cancel()  # ... and gives up before the driver gets to it
        with pytest.raises(asyncio.CancelledError):
            await reader
        await asyncio.sleep(0.05)  # the driver runs the abandoned request
        assert driver.failure is None
        with pytest.raises(Unavailable, match="not the leader"):
            await driver.propose(PutConfig(name="app/x", value=1))
    finally:
        await driver.close()
        store.close()
