"""The ``raft`` transport: three ConfigManagers in one loop over real loopback sockets,
and the manifest settings (secrets by reference only, peers need a secret)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aether_raft.transport import RaftSettings, RaftTransport

from aether_core import MemoryStorage
from aether_core.errors import ConfigurationError, Unavailable
from aether_core.manager import ConfigManager
from aether_core.manifest import read, resolve
from aether_core.providers import NodeInfo
from aether_core.testing.processes import free_ports as _ports

SECRET = "cluster-secret-0123456789abcdef"




def _settings(name: str, addresses: dict[str, str], secret: str = SECRET) -> RaftSettings:
    return RaftSettings.model_validate({
        "listen": addresses[name],
        "peers": {n: a for n, a in addresses.items() if n != name},
        "election_timeout_ms": 400, "heartbeat_interval_ms": 40,
        "cluster_secret": secret,
    })


async def _leader(managers: dict[str, ConfigManager]) -> str:
    async with asyncio.timeout(15):
        while True:
            for name, m in managers.items():
                t = m.transport
                assert isinstance(t, RaftTransport)
                if t.leader().is_self:
                    return name
            await asyncio.sleep(0.02)


async def test_three_transports_over_sockets_forward_writes_and_read_everywhere(
    tmp_path: Path,
) -> None:
    addresses = {f"n{i}": f"127.0.0.1:{p}" for i, p in enumerate(_ports(3), 1)}
    managers: dict[str, ConfigManager] = {}

    async def boot(name: str) -> ConfigManager:
        transport = RaftTransport(_settings(name, addresses),
                                  NodeInfo(name=name, data_dir=tmp_path / name))
        manager = ConfigManager(MemoryStorage(), transport)
        await manager.start()
        return manager

    for name in addresses:
        managers[name] = await boot(name)
    try:
        leader = await _leader(managers)
        follower = next(n for n in managers if n != leader)
        # A write on a follower is forwarded, and readable at once on that follower.
        record = await managers[follower].put("app/x", {"n": 1})
        assert record.version == 1
        assert (await managers[follower].get("app/x", consistent=False)).value == {"n": 1}
        await managers[leader].put("app/x", {"n": 2})
        for m in managers.values():  # linearizable reads on every node
            assert (await m.get("app/x")).value == {"n": 2}
            assert m.transport.ready()
        # The leader stops; the two others elect a new one and keep every write.
        await managers.pop(leader).close()
        second = await _leader(managers)
        assert second != leader
        other = next(n for n in managers if n != second)
        assert (await managers[other].put("app/x", {"n": 3})).version == 3
        assert (await managers[second].get("app/x")).value == {"n": 3}
        # The old leader restarts from its log and catches up.
        managers[leader] = await boot(leader)
        async with asyncio.timeout(15):
            while True:
                try:
                    got = await managers[leader].get("app/x")
                except Unavailable:
                    got = None
                if got is not None and got.version == 3:
                    break
                await asyncio.sleep(0.05)
    finally:
        for m in managers.values():
            await m.close()


async def test_a_one_node_cluster_elects_itself_without_a_secret(tmp_path: Path) -> None:
    settings = RaftSettings.model_validate({"election_timeout_ms": 150,
                                            "heartbeat_interval_ms": 30})
    manager = ConfigManager(MemoryStorage(),
                            RaftTransport(settings, NodeInfo(name="solo", data_dir=tmp_path)))
    async with manager:
        assert (await manager.put("a/b", 1)).version == 1
        assert manager.transport.leader().is_self
        assert (await manager.get("a/b")).value == 1
    # Restart: the log replays, nothing is lost or applied twice.
    manager = ConfigManager(MemoryStorage(),
                            RaftTransport(settings, NodeInfo(name="solo", data_dir=tmp_path)))
    async with manager:
        assert (await manager.get("a/b")).version == 1


def _manifest(tmp_path: Path, transport: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f"""
[node]
name = "n1"
data_dir = "data"

[storage]
use = "memory"

[transport]
use = "raft"
{transport}
""")
    return path


def test_the_manifest_builds_the_raft_transport(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFT_SECRET", SECRET)
    manifest = resolve(read(_manifest(tmp_path, 'listen = "127.0.0.1:7501"\n'
                                      'peers = { n2 = "127.0.0.1:7502" }\n'
                                      'cluster_secret = "${env:RAFT_SECRET}"')))
    settings = manifest.transport.settings
    assert isinstance(settings, RaftSettings)
    assert settings.peers == {"n2": "127.0.0.1:7502"}
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(("body", "message"), [
    ('peers = { n2 = "127.0.0.1:7502" }', "cluster_secret is required"),
    ('peers = { n2 = "127.0.0.1:7502" }\ncluster_secret = "inline-secret-0123456789"',
     "reference"),
    ('peers = { n2 = "nowhere" }\ncluster_secret = "${env:RAFT_SECRET}"', "host:port"),
    ('peers = { n2 = "127.0.0.1:7502" }\ncluster_secret = "${env:SHORT_SECRET}"',
     "at least 16 bytes"),
])
def test_bad_raft_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       body: str, message: str) -> None:
    monkeypatch.setenv("RAFT_SECRET", SECRET)
    monkeypatch.setenv("SHORT_SECRET", "short")
    with pytest.raises(ConfigurationError, match=message) as caught:
        resolve(read(_manifest(tmp_path, body)))
    assert SECRET not in str(caught.value)
    assert "inline-secret" not in str(caught.value)
