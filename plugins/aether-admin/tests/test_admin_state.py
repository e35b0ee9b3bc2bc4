"""``/cluster/state``: a digest of the store that changes with every write and is equal
on two stores holding the same records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aether_admin.controllers.state import state_digest
from litestar.testing import TestClient

from aether_core import ConfigManager, MemoryStorage
from aether_core.storage.sqlite import SqliteStorage


def test_the_state_digest_follows_the_records_and_needs_a_token(
    api: TestClient[Any], admin: dict[str, str]
) -> None:
    assert api.get("/cluster/state").status_code == 401
    before = api.get("/cluster/state", headers=admin).json()
    assert api.put("/configs/app/db", headers=admin, json={"value": {"port": 1}}
                   ).status_code == 201
    after = api.get("/cluster/state", headers=admin).json()
    assert after["revision"] == before["revision"] + 1
    assert after["records"] == before["records"] + 1
    assert after["sha256"] != before["sha256"] and len(after["sha256"]) == 64



async def test_two_backends_holding_the_same_records_have_the_same_digest(
    tmp_path: Path,
) -> None:
    source = ConfigManager(MemoryStorage())
    await source.start()
    await source.put("app/db", {"port": 1, "host": "a"})
    await source.put("app/db", {"host": "b", "port": 2})
    copy = SqliteStorage(tmp_path / "copy.db")
    await copy.open()
    try:
        await copy.restore(source.storage.snapshot())
        mine, theirs = await state_digest(source.storage), await state_digest(copy)
        assert mine == theirs and mine.records >= 2
        await source.put("app/db", {"port": 3})
        assert (await state_digest(source.storage)).sha256 != theirs.sha256
    finally:
        await copy.close()
        await source.close()
