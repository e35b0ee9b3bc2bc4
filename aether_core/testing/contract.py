"""The storage contract suite. Subclass :class:`StorageContract` and provide a
``storage`` fixture (an open, empty store); shared stores also provide ``peer_storage``
(a second instance over the same data). Every test states one rule of
:mod:`aether_core.storage.base`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aether_core.errors import BadRequest, Compacted
from aether_core.records import Write
from aether_core.storage.base import Storage
from aether_core.storage.memory import MemoryStorage


def put(name: str, expected: int = 0, value: Any = None, *, kind: str = "config",
        deleted: bool = False) -> Write:
    return Write(kind=kind, name=name, expected_version=expected,
                 value={"name": name, "n": expected} if value is None else value,
                 deleted=deleted, author="tester", comment="c", timestamp=1700000000.5)


async def _collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class StorageContract:
    """Every storage backend passes these tests unchanged."""

    @pytest.fixture
    async def peer_storage(self, storage: Storage) -> Storage | None:
        """A second instance over the same data; shared backends must override this."""
        if storage.shared:
            pytest.fail(f"{type(storage).__name__} is shared: its contract test must provide "
                        "a peer_storage fixture (a second instance over the same data)")
        return None

    async def test_an_empty_store_has_nothing(self, storage: Storage) -> None:
        assert await storage.revision() == 0
        assert await storage.applied_index() == 0
        assert await storage.get("config", "a") is None
        assert await storage.history("config", "a") == []
        assert await storage.heads("config") == []
        assert await storage.records_since(0) == []
        assert await storage.compacted_revision() == 0

    async def test_a_commit_writes_version_one_at_the_next_revision(self, storage: Storage) -> None:
        value = {"nested": {"list": [1, 2.5, None, True], "text": "héllo ✓"}, "n": 0}
        result = await storage.commit(
            [Write(kind="config", name="a/b", expected_version=0, value=value, author="ann",
                   comment="first", timestamp=1700000000.25, meta={"schema": "s"})]
        )
        assert result.rejection is None and not result.replayed
        [record] = result.records
        assert (record.version, record.revision) == (1, 1)
        stored = await storage.get("config", "a/b")
        assert stored == record
        assert stored.value == value and stored.author == "ann" and stored.comment == "first"
        assert stored.timestamp == 1700000000.25 and stored.meta == {"schema": "s"}
        assert await storage.revision() == 1

    async def test_versions_count_per_document_and_revisions_are_global(
        self, storage: Storage
    ) -> None:
        await storage.commit([put("a", 0)])
        await storage.commit([put("b", 0)])
        result = await storage.commit([put("a", 1)])
        assert [(r.name, r.version, r.revision) for r in result.records] == [("a", 2, 3)]
        assert [r.version for r in await storage.history("config", "a")] == [1, 2]
        assert (await storage.get("config", "a", 1)).value == {"name": "a", "n": 0}  # type: ignore[union-attr]
        assert await storage.get("config", "a", 3) is None
        assert [r.revision for r in await storage.records_since(0)] == [1, 2, 3]

    async def test_a_stale_expected_version_is_a_rejection_that_writes_nothing(
        self, storage: Storage
    ) -> None:
        await storage.commit([put("a", 0)])
        result = await storage.commit([put("a", 0)])
        assert result.records == []
        assert result.rejection is not None
        assert result.rejection.code == "conflict"
        assert (result.rejection.expected_version, result.rejection.current_version) == (0, 1)
        assert await storage.revision() == 1

    async def test_a_batch_is_all_or_nothing(self, storage: Storage) -> None:
        await storage.commit([put("b", 0)])
        result = await storage.commit([put("a", 0), put("b", 5)])
        assert result.rejection is not None and result.rejection.name == "b"
        assert await storage.get("config", "a") is None
        ok = await storage.commit([put("a", 0), put("b", 1)])
        assert [(r.name, r.revision) for r in ok.records] == [("a", 2), ("b", 3)]

    async def test_kinds_are_separate_namespaces(self, storage: Storage) -> None:
        await storage.commit([put("x", 0, kind="config"), put("x", 0, kind="schema")])
        assert (await storage.get("config", "x")).version == 1  # type: ignore[union-attr]
        assert [r.kind for r in await storage.heads("schema")] == ["schema"]

    async def test_a_log_index_is_applied_once(self, storage: Storage) -> None:
        first = await storage.commit([put("a", 0)], log_index=5)
        assert first.records and await storage.applied_index() == 5
        again = await storage.commit([put("a", 0)], log_index=5)
        assert again.replayed and again.records == [] and again.rejection is None
        older = await storage.commit([put("z", 0)], log_index=3)
        assert older.replayed and await storage.get("config", "z") is None
        rejected = await storage.commit([put("a", 0)], log_index=6)
        assert rejected.rejection is not None
        assert await storage.applied_index() == 6
        assert (await storage.commit([], log_index=9)).records == []
        assert await storage.applied_index() == 9
        assert await storage.revision() == 1

    async def test_tombstones_keep_history_and_leave_listings(self, storage: Storage) -> None:
        await storage.commit([put("a", 0)])
        await storage.commit([put("a", 1, deleted=True)])
        head = await storage.get("config", "a")
        assert head is not None and head.deleted and head.version == 2
        assert await storage.heads("config") == []
        assert [r.deleted for r in await storage.history("config", "a")] == [False, True]
        recreated = await storage.commit([put("a", 2)])
        assert recreated.records[0].version == 3
        assert [r.name for r in await storage.heads("config")] == ["a"]

    async def test_heads_are_ordered_by_name_filtered_by_prefix_and_paginated(
        self, storage: Storage
    ) -> None:
        names = ["app/b", "app/a", "apple", "app/c/d", "zeta", "ap"]
        for name in names:
            await storage.commit([put(name, 0)])
        under = [r.name for r in await storage.heads("config", "app/")]
        assert under == ["app/a", "app/b", "app/c/d"]
        assert [r.name for r in await storage.heads("config", "app")] == [
            "app/a", "app/b", "app/c/d", "apple"]
        page1 = await storage.heads("config", "", limit=2)
        page2 = await storage.heads("config", "", after=page1[-1].name, limit=2)
        page3 = await storage.heads("config", "", after=page2[-1].name, limit=10)
        assert [r.name for r in page1 + page2 + page3] == sorted(names)
        assert await storage.heads("config", "app/", after="app/c/d") == []
        assert [r.name for r in await storage.heads("config", "app/", after="a")] == [
            "app/a", "app/b", "app/c/d"]

    async def test_records_since_is_in_revision_order_and_limited(self, storage: Storage) -> None:
        for i in range(5):
            await storage.commit([put(f"k{i}", 0)])
        assert [r.revision for r in await storage.records_since(2)] == [3, 4, 5]
        assert [r.revision for r in await storage.records_since(0, limit=2)] == [1, 2]
        assert await storage.records_since(5) == []

    async def test_compaction_refuses_old_feed_reads_but_keeps_history(
        self, storage: Storage
    ) -> None:
        for i in range(4):
            await storage.commit([put("a", i)])
        await storage.compact(2)
        assert await storage.compacted_revision() == 2
        with pytest.raises(Compacted) as info:
            await storage.changes(1)
        assert info.value.oldest_revision == 2
        assert [r.revision for r in await storage.changes(2)] == [3, 4]
        assert len(await storage.history("config", "a")) == 4
        await storage.compact(1)  # never moves back
        assert await storage.compacted_revision() == 2

    async def test_snapshot_restores_identical_state_in_this_and_another_backend(
        self, storage: Storage
    ) -> None:
        await storage.commit([put("a", 0), put("s", 0, kind="schema")], log_index=1)
        await storage.commit([put("a", 1, deleted=True)], log_index=2)
        await storage.commit([put("b", 0, value={"x": [1, "two"]})], log_index=4)
        await storage.compact(1)
        chunks = await _collect(storage.snapshot())
        original = await storage.records_since(0)

        elsewhere = MemoryStorage()
        header = await elsewhere.restore(_replay(chunks))
        assert (header.revision, header.applied_index, header.records) == (4, 4, 4)
        assert await elsewhere.records_since(0) == original
        assert await elsewhere.compacted_revision() == 1

        await storage.commit([put("c", 0)])
        await storage.restore(_replay(chunks))
        assert await storage.records_since(0) == original
        assert await storage.applied_index() == 4
        assert await storage.revision() == 4
        assert [r.name for r in await storage.heads("config")] == ["b"]
        assert (await storage.commit([put("b", 1)])).records[0].revision == 5

    async def test_a_bad_snapshot_changes_nothing(self, storage: Storage) -> None:
        await storage.commit([put("a", 0)])
        good = await _collect(storage.snapshot())
        bad_inputs = [
            [b"not json\n"],
            [good[0]],  # header promises a record that is missing
            [good[0].replace(b"aether-snapshot", b"other"), *good[1:]],
            [good[0], b'{"kind": "config"}\n'],
        ]
        for chunks in bad_inputs:
            with pytest.raises(BadRequest):
                await storage.restore(_replay(chunks))
        assert [r.name for r in await storage.heads("config")] == ["a"]

    async def test_the_feed_delivers_stored_then_live_changes(self, storage: Storage) -> None:
        await storage.commit([put("a", 0)])
        feed = storage.feed(0, poll=0.05)
        first = await asyncio.wait_for(anext(feed), 5)
        assert (first.revision, first.name, first.type) == (1, "a", "put")
        pending = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0.01)
        await storage.commit([put("a", 1, deleted=True)])
        second = await asyncio.wait_for(pending, 5)
        assert (second.revision, second.type, second.value) == (2, "delete", None)
        await feed.aclose()  # type: ignore[attr-defined]

    async def test_concurrent_commits_get_distinct_gap_free_revisions(
        self, storage: Storage
    ) -> None:
        results = await asyncio.gather(*(storage.commit([put(f"c{i}", 0)]) for i in range(20)))
        revisions = sorted(r.records[0].revision for r in results)
        assert revisions == list(range(1, 21))

    async def test_a_shared_store_orders_writers_on_every_instance(
        self, storage: Storage, peer_storage: Storage | None
    ) -> None:
        if peer_storage is None:
            assert not storage.shared
            return
        outcomes = await asyncio.gather(
            storage.commit([put("race", 0, value={"by": 1})]),
            peer_storage.commit([put("race", 0, value={"by": 2})]),
        )
        assert sorted(o.rejection is None for o in outcomes) == [False, True]
        await peer_storage.commit([put("other", 0)])
        assert [r.revision for r in await storage.records_since(0)] == [1, 2]
        waiter = asyncio.ensure_future(storage.wait_for_change(2, 10))
        await peer_storage.commit([put("third", 0)])
        await asyncio.wait_for(waiter, 10)
        assert await storage.revision() == 3

    async def test_close_is_idempotent(self, storage: Storage) -> None:
        await storage.close()
        await storage.close()

