"""The built-in stores pass the shared storage contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aether_core.storage.memory import MemoryStorage
from aether_core.storage.sqlite import SqliteStorage
from aether_core.testing import StorageContract


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[MemoryStorage]:
        store = MemoryStorage()
        await store.open()
        yield store
        await store.close()


class TestSqliteStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[SqliteStorage]:
        store = SqliteStorage(tmp_path / "aether.db")
        await store.open()
        yield store
        await store.close()


class TestSqliteStorageUnderALog(StorageContract):
    """What raft runs: commits without their own fsync, on the event loop."""

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[SqliteStorage]:
        store = SqliteStorage(tmp_path / "aether.db")
        await store.open()
        await store.rely_on_log()
        yield store
        await store.close()


async def test_sqlite_keeps_everything_across_reopen(tmp_path: Path) -> None:
    from aether_core.records import Write

    path = tmp_path / "aether.db"
    store = SqliteStorage(path)
    await store.open()
    await store.commit([Write(kind="config", name="a", expected_version=0, value=[1])],
                       log_index=7)
    await store.close()
    again = SqliteStorage(path)
    await again.open()
    assert (await again.get("config", "a")).value == [1]  # type: ignore[union-attr]
    assert await again.applied_index() == 7
    await again.close()


async def test_sqlite_uses_wal_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "aether.db")
    await store.open()
    mode = await store._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    sync = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert (mode, sync) == ("wal", 2)
    await store.close()


async def test_sqlite_under_a_log_commits_with_normal_sync(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "aether.db")
    await store.open()
    await store.rely_on_log()
    sync = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert sync == 1  # NORMAL: atomic, not forced to disk; the raft log is
    await store.close()
