"""The watch hub: every change after a revision, once, in order; compaction; slow readers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aether_core import ChangeEvent, ConfigManager, MemoryStorage
from aether_core.errors import Compacted
from aether_core.watch import SubscriberDropped, Watcher


async def take(subscription: Any, n: int, timeout: float = 5) -> list[ChangeEvent]:
    out: list[ChangeEvent] = []
    async with asyncio.timeout(timeout):
        async for event in subscription:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_history_then_live_in_order_with_no_gap_and_no_duplicate(
    manager: ConfigManager,
) -> None:
    for i in range(5):
        await manager.put(f"app/k{i}", {"i": i})
    subscription = await manager.watch("", since=2)

    async def writer() -> None:
        for i in range(5, 40):
            await manager.put(f"app/k{i % 7}", {"i": i})
            if i % 5 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    events = await take(subscription, 38)
    await task
    assert [e.revision for e in events] == list(range(3, 41))
    assert events[0].name == "app/k2" and events[0].value == {"i": 2}


async def test_resume_from_the_last_revision_seen(manager: ConfigManager) -> None:
    for i in range(6):
        await manager.put("a", i)
    first = await take(await manager.watch("", since=0), 3)
    resumed = await take(await manager.watch("", since=first[-1].revision), 3)
    assert [e.revision for e in first + resumed] == [1, 2, 3, 4, 5, 6]


async def test_a_prefix_filter_sees_only_its_names(manager: ConfigManager) -> None:
    subscription = await manager.watch("billing/", since=0)
    await manager.put("billing/a", 1)
    await manager.put("shipping/a", 1)
    await manager.delete("billing/a")
    events = await take(subscription, 2)
    assert [(e.name, e.type) for e in events] == [("billing/a", "put"), ("billing/a", "delete")]


async def test_asking_for_compacted_history_says_where_to_resume(
    manager: ConfigManager,
) -> None:
    for i in range(5):
        await manager.put("a", i)
    await manager.storage.compact(3)
    with pytest.raises(Compacted) as info:
        await take(await manager.watch("", since=1), 1)
    assert info.value.oldest_revision == 3 and info.value.status == 410
    assert [e.revision for e in await take(await manager.watch("", since=3), 2)] == [4, 5]


async def test_a_slow_subscriber_is_cut_off_and_writers_never_wait() -> None:
    async with ConfigManager(MemoryStorage(), watch_queue_size=4) as manager:
        slow = await manager.watch("", since=None)
        events = aiter(slow)
        await manager.put("a", 0)
        assert (await anext(events)).revision == 1
        for i in range(50):  # the reader stalls while these commit
            await manager.put("a", i)
        assert await manager.revision() == 51
        await asyncio.sleep(0.05)  # let the pump fan out
        assert manager.hub.subscriber_count == 0
        with pytest.raises(SubscriberDropped, match="fell 4 events behind") as info:
            await anext(events)
        assert info.value.extra["resume_from"] == 1
        resumed = await take(await manager.watch("", since=1), 50)
        assert [e.revision for e in resumed] == list(range(2, 52))


class Recorder(Watcher):
    name = "recorder"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[int] = []
        self.attempts = 0
        self.got_five = asyncio.Event()

    async def deliver(self, event: ChangeEvent) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("downstream is down")
        self.seen.append(event.revision)
        if len(self.seen) == 5:
            self.got_five.set()


async def test_a_failing_watcher_is_retried_without_delaying_commits() -> None:
    async with ConfigManager(MemoryStorage()) as manager:
        watcher = Recorder(failures=3)
        manager.hub.add_watcher(watcher, since=0)
        for i in range(5):
            await manager.put("a", i)  # commits finish while the watcher fails
        assert await manager.revision() == 5
        async with asyncio.timeout(10):
            await watcher.got_five.wait()
        assert watcher.seen == [1, 2, 3, 4, 5]
        assert watcher.attempts == 8


async def test_a_watcher_behind_a_compaction_resumes_after_it() -> None:
    async with ConfigManager(MemoryStorage()) as manager:
        for i in range(5):
            await manager.put("a", i)
        await manager.storage.compact(3)
        watcher = Recorder(failures=0)
        manager.hub.add_watcher(watcher, since=0)
        for i in range(5, 10):
            await manager.put("a", i)
        async with asyncio.timeout(10):
            await watcher.got_five.wait()
        assert watcher.seen[:5] == [4, 5, 6, 7, 8]  # 1..3 are compacted away


class FlakyFeedStorage(MemoryStorage):
    """Memory storage whose change feed fails a few times, as a database outage would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def records_since(self, revision: int, limit: int = 1000) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database went away")
        return await super().records_since(revision, limit)


async def test_the_hub_outlives_a_failing_change_feed() -> None:
    storage = FlakyFeedStorage(failures=0)
    async with ConfigManager(storage) as manager:
        subscription = await manager.watch("", since=0)
        events = aiter(subscription)
        await manager.put("a", 1)
        assert (await asyncio.wait_for(anext(events), 5)).revision == 1
        storage.failures = 3  # the pump (and nothing else reading) hits the outage
        await manager.put("a", 2)
        await manager.put("a", 3)
        got = [(await asyncio.wait_for(anext(events), 10)).revision for _ in range(2)]
        assert got == [2, 3]


async def test_a_batch_holds_every_ready_event_and_a_wake_ends_a_wait(
    manager: ConfigManager,
) -> None:
    # ``also`` lets one name outside the prefix through (a server follows its caller's
    # user and token this way).
    subscription = await manager.hub.subscribe(
        "app/", since=None, also=frozenset({("config", "other/x")}))
    for name in ("app/a", "shipping/y", "app/b", "other/x", "app/c"):
        await manager.put(name, 1)
    got: list[str] = []
    calls = 0
    async with asyncio.timeout(5):
        while len(got) < 4:
            calls += 1
            got.extend(event.name for event in await subscription.next_batch())
    assert got == ["app/a", "app/b", "other/x", "app/c"]
    assert calls <= 4

    async def wake_soon() -> None:
        await asyncio.sleep(0.05)
        subscription.wake()

    waker = asyncio.create_task(wake_soon())
    async with asyncio.timeout(5):
        assert await subscription.next_batch() == []  # woken with nothing ready
    await waker
    await manager.put("app/d", 1)
    async with asyncio.timeout(5):
        assert [e.name for e in await subscription.next_batch()] == ["app/d"]
    subscription.close()
    assert manager.hub.subscriber_count == 0


async def test_a_plain_watch_carries_configs_and_schemas_only(manager: ConfigManager) -> None:
    from aether_core.commands import PutUser

    await manager.propose(PutUser(name="alice", uid="u-1", password_hash="x", roles=["viewer"]))
    await manager.put("app/a", {"a": 1})
    events = await take(await manager.watch("", since=0), 1)
    assert [(e.kind, e.name) for e in events] == [("config", "app/a")]
    everything = await take(await manager.watch("", since=0, kinds=None), 2)
    assert [e.kind for e in everything] == ["user", "config"]
