"""Group commit of the embedded store: commands that queue while one group is made
durable go together in the next (one fsync), each acknowledged only once durable;
nothing of a group is visible to others before its COMMIT; one failing command takes
back only its own writes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from aether_core import ConfigManager, SqliteStorage
from aether_core.errors import StorageFault
from aether_core.records import CommitResult, Write


class CountingStorage(SqliteStorage):
    """SQLite that counts its groups, and fails any commit of the name ``boom``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.groups = 0

    @contextlib.asynccontextmanager
    async def group(self) -> AsyncIterator[None]:
        self.groups += 1
        async with super().group():
            yield

    async def commit(self, writes: Sequence[Write], log_index: int | None = None
                     ) -> CommitResult:
        if any(w.name == "boom" for w in writes):
            # Half a commit, then a failure: the savepoint must take the half back.
            await super().commit([Write(kind="config", name="half", expected_version=None,
                                        value=1)])
            raise StorageFault("boom")
        return await super().commit(writes, log_index)


async def test_concurrent_puts_share_groups_and_are_durable_when_acknowledged(
        tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path / "aether.db")
    commits: list[str] = []
    async with ConfigManager(storage) as manager:
        assert storage._conn is not None
        storage._conn.set_trace_callback(
            lambda sql: commits.append(sql) if sql.startswith("COMMIT") else None)
        results = await asyncio.gather(*(manager.put(f"g/{i}", {"i": i}) for i in range(64)))
    assert sorted(r.revision for r in results) == list(range(1, 65))  # gap-free
    # One transaction (one fsync) per group, and far fewer groups than commands.
    assert len(commits) == storage.groups < 64 / 4, (len(commits), storage.groups)
    # Reopened from the file: every acknowledged write is there.
    again = SqliteStorage(tmp_path / "aether.db")
    await again.open()
    try:
        assert await again.revision() == 64
        for i in range(64):
            record = await again.get("config", f"g/{i}")
            assert record is not None and record.value == {"i": i}
    finally:
        await again.close()


async def test_a_failing_command_takes_back_only_its_own_writes(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path / "aether.db")
    async with ConfigManager(storage) as manager:
        outcomes = await asyncio.gather(
            manager.put("a", 1), manager.put("boom", 2), manager.put("b", 3),
            return_exceptions=True)
        assert isinstance(outcomes[1], StorageFault)
        assert [o.version for o in (outcomes[0], outcomes[2])] == [1, 1]  # type: ignore[union-attr]
        assert await manager.storage.get("config", "half") is None
        assert await manager.storage.get("config", "boom") is None
        assert [r.name for r in await manager.storage.records_since(0)] == ["a", "b"]


async def test_nothing_of_an_open_group_is_visible_to_other_tasks(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "aether.db")
    await storage.open()
    try:
        written = asyncio.Event()
        release = asyncio.Event()

        async def writer() -> None:
            async with storage.group():
                await storage.commit([Write(kind="config", name="x", expected_version=0,
                                            value=1)])
                # The group's own task reads its commit ...
                assert await storage.get("config", "x") is not None
                written.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await written.wait()
        # ... no other task does, until the group is durable.
        assert await storage.get("config", "x") is None
        assert await storage.revision() == 0
        release.set()
        await task
        assert await storage.get("config", "x") is not None
    finally:
        await storage.close()


async def test_a_group_that_fails_keeps_nothing(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "aether.db")
    await storage.open()
    try:
        with pytest.raises(RuntimeError):
            async with storage.group():
                await storage.commit([Write(kind="config", name="x", expected_version=0,
                                            value=1)])
                raise RuntimeError("the block failed")
        assert await storage.revision() == 0
        # The store is usable afterwards.
        await storage.commit([Write(kind="config", name="y", expected_version=0, value=2)])
        assert await storage.revision() == 1
    finally:
        await storage.close()
