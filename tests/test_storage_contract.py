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


async def test_sqlite_snapshot_is_one_consistent_read_while_commits_go_on(
        tmp_path: Path) -> None:
    """Raft compacts from SQLite's snapshot without pausing its applies: a commit that
    lands while the snapshot is being read must be in neither its records nor its
    applied index."""
    import sqlite3

    import msgspec

    from aether_core.records import Write
    from aether_core.storage.base import SnapshotHeader

    path = tmp_path / "aether.db"
    late = SqliteStorage(path)  # a second writer, as the node's writer connection is
    await late.open()

    class Racing(SqliteStorage):
        landed = False

        @staticmethod
        def _state(conn: sqlite3.Connection, key: str) -> int:
            value = SqliteStorage._state(conn, key)
            if key == "compacted_revision" and not Racing.landed:
                Racing.landed = True  # the snapshot has begun reading: a commit lands
                with sqlite3.connect(path, isolation_level=None) as other:
                    other.execute("BEGIN IMMEDIATE")
                    late._commit_locked(other, [Write(kind="config", name="late",
                                                      expected_version=0, value=2)], 2)
                    other.execute("COMMIT")
            return value

    store = Racing(path)
    await store.open()
    try:
        await store.commit([Write(kind="config", name="early", expected_version=0, value=1)],
                           log_index=1)
        data = b"".join([chunk async for chunk in store.snapshot()])
        assert Racing.landed
        header = msgspec.json.decode(data.partition(b"\n")[0], type=SnapshotHeader)
        assert (header.applied_index, header.revision, header.records) == (1, 1, 1)
        assert b'"late"' not in data
        assert await store.applied_index() == 2  # it did land, after the read began
    finally:
        await store.close()
        await late.close()
