"""Rollout commands replicate: applied from log bytes on another node they give the
same records, and a replay after a crash changes nothing."""

from __future__ import annotations

from aether_core import ConfigManager, MemoryStorage
from aether_core.commands import Command, decode, encode
from aether_core.records import CommitResult
from aether_core.rollout import PROMOTED, ROLLED_BACK
from aether_core.statemachine import StateMachine
from aether_core.transport.local import LocalTransport


class LoggingTransport(LocalTransport):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[bytes] = []

    async def propose(self, command: Command) -> CommitResult:
        self.log.append(encode(command))
        return await super().propose(command)


async def export(storage: MemoryStorage) -> list[bytes]:
    return [chunk async for chunk in storage.snapshot()][1:]


async def test_replaying_rollout_commands_gives_the_same_state() -> None:
    transport = LoggingTransport()
    leader = ConfigManager(MemoryStorage(), transport)
    async with leader:
        await leader.put("svc", {"v": 1})
        await leader.rollouts.start("svc", {"v": 2}, 0.1)
        await leader.rollouts.widen("svc", 0.5)
        await leader.rollouts.report("svc", "a", 2, "ack")
        await leader.rollouts.report("svc", "b", 2, "nack", "bad")
        await leader.rollouts.start("svc", {"v": 3}, 0.2)
        await leader.rollouts.promote("svc")
        leader_export = await export(leader.storage)  # type: ignore[arg-type]
        before = [(await leader.get_for_client("svc", f"c{i}")).version for i in range(50)]

    follower = MemoryStorage()
    await follower.open()
    machine = StateMachine(follower)
    for index, entry in enumerate(transport.log, start=1):
        await machine.apply(decode(entry), index)
    assert await export(follower) == leader_export
    for index, entry in enumerate(transport.log, start=1):
        assert (await machine.apply(decode(entry), index)).replayed
    assert await export(follower) == leader_export

    async with ConfigManager(follower) as replica:
        history = await replica.storage.history("rollout", "svc")
        assert [r.value["state"] for r in history][-3:] == [ROLLED_BACK, "running", PROMOTED]
        assert (await replica.get("svc")).value == {"v": 3}
        after = [(await replica.get_for_client("svc", f"c{i}")).version for i in range(50)]
        assert after == before == [2] * 50
