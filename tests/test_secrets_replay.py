"""Secret commands replicate: decoded from log bytes and applied on another node, they
give the same records; a replay after a crash is a no-op."""

from __future__ import annotations

from pathlib import Path

from aether_core import ConfigManager, MemoryStorage
from aether_core.commands import Command, decode, encode
from aether_core.records import CommitResult
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator
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
    """Every record (the header differs: the leader's local transport has no log index)."""
    return [chunk async for chunk in storage.snapshot()][1:]


async def test_a_follower_applying_the_log_holds_the_same_secrets(tmp_path: Path) -> None:
    transport = LoggingTransport()
    leader = ConfigManager(MemoryStorage(), transport)
    keys = LocalKeyProvider(tmp_path / "secrets.keys")
    async with leader:
        secrets = SecretManager(leader, keys)
        await secrets.put("a", "one")
        await secrets.stage("a", "two")
        await secrets.promote("a", 2)
        await secrets.rollback("a")
        await secrets.put("b", {"k": "v"})
        await secrets.delete("b")
        await KeyRotator(secrets, batch=1).rotate()
        leader_export = await export(leader.storage)  # type: ignore[arg-type]
    assert len(leader_export) == 10

    follower = MemoryStorage()
    await follower.open()
    machine = StateMachine(follower)
    for index, entry in enumerate(transport.log, start=1):
        await machine.apply(decode(entry), index)
    assert await export(follower) == leader_export
    # A replay of the whole log after a crash changes nothing.
    for index, entry in enumerate(transport.log, start=1):
        assert (await machine.apply(decode(entry), index)).replayed
    assert await export(follower) == leader_export

    async with ConfigManager(follower) as replica:
        revealed = await SecretManager(replica, LocalKeyProvider(tmp_path / "secrets.keys")
                                       ).reveal("a")
        assert (revealed.value, revealed.version) == ("one", 1)
