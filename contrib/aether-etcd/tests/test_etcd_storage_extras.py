"""What the contract does not cover: restores larger than one etcd transaction, a dead
endpoint in the list, what a fault looks like, and the manifest's checks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aether_core import manifest
from aether_core.errors import ConfigurationError, StorageFault
from aether_core.records import Write
from etcd_server import EtcdServer

from aether_etcd.gateway import Gateway, kvs, prefix_end, range_op
from aether_etcd.provider import EtcdStorage


def put(name: str, expected: int) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value={"n": expected})


async def _chunks(data: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in data:
        yield chunk


async def test_a_restore_larger_than_one_transaction_replaces_everything(
    etcd_server: EtcdServer,
) -> None:
    prefix = f"aether-test/{uuid.uuid4().hex[:12]}/"
    store = EtcdStorage([etcd_server.url], prefix, max_txn_ops=7)
    await store.open()
    try:
        for i in range(12):
            await store.commit([put(f"doc{i % 4}", i // 4)])
        snapshot = [chunk async for chunk in store.snapshot()]
        before = await store.records_since(0)
        await store.commit([put("extra", 0)])
        header = await store.restore(_chunks(snapshot))
        assert (header.revision, header.records) == (12, 12)
        assert await store.records_since(0) == before
        assert [r.name for r in await store.heads("config")] == ["doc0", "doc1", "doc2", "doc3"]
        assert await store.get("config", "extra") is None
        # Only one generation is left in etcd: meta plus 12 log, 12 version, 4 head keys.
        gateway = Gateway([etcd_server.url], timeout=5)
        try:
            [found] = await gateway.read([range_op(prefix.encode(),
                                                   prefix_end(prefix.encode()))])
        finally:
            await gateway.close()
        assert len(kvs(found)) == 1 + 12 + 12 + 4
    finally:
        await store.close()


async def test_a_dead_endpoint_is_skipped_and_all_dead_is_a_fault(
    etcd_server: EtcdServer,
) -> None:
    prefix = f"aether-test/{uuid.uuid4().hex[:12]}/"
    store = EtcdStorage(["http://127.0.0.1:9", etcd_server.url], prefix, timeout=2)
    await store.open()
    try:
        assert (await store.commit([put("a", 0)])).records[0].revision == 1
    finally:
        await store.close()
    dead = EtcdStorage(["http://127.0.0.1:9"], prefix, timeout=1)
    with pytest.raises(StorageFault, match=r"etcd is unreachable \(http://127.0.0.1:9"):
        await dead.open()
    await dead.close()


@pytest.mark.parametrize(("line", "message"), [
    ('endpoints = ["tcp://10.0.0.1:2379"]', "is not an http:// or https:// URL"),
    ('endpoints = ["http://user:pw@10.0.0.1:2379"]', "must not carry credentials"),
    ("endpoints = []", "endpoints"),
    ("timeout = 0", "timeout"),
    ("pool = 3", "pool: unknown key"),
])
def test_bad_settings_are_manifest_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "aether.toml"
    path.write_text(f'[storage]\nuse = "etcd"\n{line}\n[transport]\nuse = "local"\n')
    with pytest.raises(ConfigurationError, match=r"aether.toml: \[storage\] .*" + message):
        manifest.load(path)


def test_a_manifest_naming_etcd_loads_the_shared_store(tmp_path: Path) -> None:
    path = tmp_path / "aether.toml"
    path.write_text('[storage]\nuse = "etcd"\n[transport]\nuse = "local"\n')
    loaded = manifest.load(path)
    assert loaded.storage.use == "etcd"
    assert loaded.plugins is not None and loaded.plugins.get("storage", "etcd").shared
