"""Several RedisStorage instances over one Redis: the shared-database shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from aether_redis import RedisStorage

from aether_core.records import ChangeEvent, Write


def write(name: str, expected: int, by: str) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value={"by": by},
                 author=by, timestamp=1700000000.0)


async def opened(make: Callable[..., RedisStorage], *names: str) -> list[RedisStorage]:
    stores = [make(name) for name in names]
    for store in stores:
        await store.open()
    return stores


async def test_concurrent_writers_on_several_nodes_get_gap_free_revisions_and_unique_versions(
    make_redis: Callable[..., RedisStorage],
) -> None:
    nodes = await opened(make_redis, "n1", "n2", "n3", "n4")
    docs = ["shared/a", "shared/b", "shared/c"]

    async def writer(store: RedisStorage, me: str) -> int:
        won = 0
        for i in range(12):
            name = docs[i % len(docs)]
            while True:  # compare-and-set loop, as a client doing If-Match would
                head = await store.get("config", name)
                result = await store.commit([write(name, head.version if head else 0, me)])
                if result.rejection is None:
                    won += 1
                    break
                assert result.rejection.code == "conflict" and result.records == []
        return won

    wins = await asyncio.gather(*(writer(s, f"n{i}") for i, s in enumerate(nodes)))
    assert wins == [12, 12, 12, 12]
    log = await nodes[0].records_since(0, limit=1000)
    assert [r.revision for r in log] == list(range(1, 49))
    for name in docs:
        history = await nodes[1].history("config", name)
        assert [r.version for r in history] == list(range(1, 17))
    assert len({(r.name, r.version) for r in log}) == 48
    assert {await s.revision() for s in nodes} == {48}


async def test_a_watch_on_one_node_sees_every_write_of_the_others_in_order(
    make_redis: Callable[..., RedisStorage],
) -> None:
    watcher, b, c = await opened(make_redis, "watcher", "b", "c")
    seen: list[ChangeEvent] = []

    async def watch() -> None:
        async for event in watcher.feed(0, poll=30):
            seen.append(event)
            if len(seen) == 40:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.05)

    async def burst(store: RedisStorage, me: str) -> None:
        for i in range(20):
            await store.commit([write(f"{me}/{i}", 0, me)])

    await asyncio.gather(burst(b, "b"), burst(c, "c"))
    # poll=30: only the stream wake-up, not the fallback timeout, can finish in time.
    await asyncio.wait_for(task, 10)
    assert [e.revision for e in seen] == list(range(1, 41))
    stored = await b.records_since(0)
    assert [(e.name, e.version) for e in seen] == [(r.name, r.version) for r in stored]


async def test_the_feed_resumes_without_loss_or_repeat_after_its_connection_is_killed(
    make_redis: Callable[..., RedisStorage], redis_client: aioredis.Redis,
) -> None:
    watcher, writer = await opened(make_redis, "watcher", "writer")
    events: asyncio.Queue[ChangeEvent] = asyncio.Queue()

    async def watch() -> None:
        async for event in watcher.feed(0, poll=30):
            await events.put(event)

    task = asyncio.create_task(watch())
    try:
        await writer.commit([write("a", 0, "w")])
        assert (await asyncio.wait_for(events.get(), 5)).revision == 1

        async def feed_connection_ids() -> list[str]:
            clients = await redis_client.client_list()
            return [c["id"] for c in clients if c.get("name") == watcher.feed_client_name]

        for _ in range(100):  # the listener connects when the feed first waits
            if ids := await feed_connection_ids():
                break
            await asyncio.sleep(0.02)
        [killed] = ids
        assert await redis_client.client_kill_filter(_id=killed) == 1
        # Commits while the feed connection is down, and after it is back.
        await writer.commit([write("a", 1, "w")])
        await writer.commit([write("b", 0, "w")])
        got = [await asyncio.wait_for(events.get(), 10) for _ in range(2)]
        await writer.commit([write("c", 0, "w")])
        got.append(await asyncio.wait_for(events.get(), 10))
        assert [(e.revision, e.name, e.version) for e in got] == [
            (2, "a", 2), (3, "b", 1), (4, "c", 1)]
        await asyncio.sleep(0.2)
        assert events.empty()  # nothing repeated
        [again] = await feed_connection_ids()
        assert again != killed  # a new connection, under the same name
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert task.done()


async def test_a_retried_commit_returns_its_first_outcome_instead_of_committing_twice(
    make_redis: Callable[..., RedisStorage],
) -> None:
    [store] = await opened(make_redis, "n1")
    keys = [*store.keys.data, store.keys.token("fixed-token")]
    body = b'{"kind":"config","name":"a","version":1,"value":1'
    args = [60, "", 1000, 1, b"config\0a", 0, 0, body]
    first = await store._script("COMMIT", keys, args)
    second = await store._script("COMMIT", keys, args)  # as after a lost reply
    assert first == second == b"ok:1"
    assert await store.revision() == 1
    assert [r.version for r in await store.history("config", "a")] == [1]


async def test_replace_all_swaps_atomically_for_every_node_and_leaves_no_staging_keys(
    make_redis: Callable[..., RedisStorage], redis_client: aioredis.Redis,
) -> None:
    a, b = await opened(make_redis, "a", "b")
    for i in range(3):
        await a.commit([write(f"old{i}", 0, "a")])
    replacement = [write("new", 0, "x").to_record(1), write("new", 1, "x").to_record(2)]
    waiter = asyncio.create_task(b.wait_for_change(3, 10))
    await a.replace_all(replacement, applied_index=7, compacted_revision=1)
    assert await b.records_since(0) == replacement
    assert (await b.revision(), await b.applied_index(), await b.compacted_revision()) == (
        2, 7, 1)
    assert [r.name for r in await b.heads("config")] == ["new"]
    assert (await b.commit([write("new", 2, "b")])).records[0].revision == 3
    await asyncio.wait_for(waiter, 10)
    pattern = "*" + a.settings.prefix + "*"
    keys = {k.decode() async for k in redis_client.scan_iter(match=pattern)}
    assert {k for k in keys if "}tok:" not in k} == set(a.keys.data)  # no staging keys left


async def test_deployments_with_different_prefixes_do_not_see_each_other(
    make_redis: Callable[..., RedisStorage], redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    [mine] = await opened(make_redis, "n1")
    other = make_redis("n2", prefix=redis_prefix + "other:")
    await other.open()
    await mine.commit([write("a", 0, "me")])
    assert await other.get("config", "a") is None
    assert await other.revision() == 0
    await other.commit([write("a", 0, "them")])
    assert (await mine.get("config", "a")).value == {"by": "me"}  # type: ignore[union-attr]
    await other.destroy()
    keys = [k.decode() async for k in redis_client.scan_iter(match="*" + redis_prefix + "*")]
    assert keys and all(k.startswith("{" + redis_prefix + "}") for k in keys)


async def test_records_are_stored_as_plain_json(make_redis: Callable[..., RedisStorage],
                                                redis_client: aioredis.Redis) -> None:
    [store] = await opened(make_redis, "n1")
    await store.commit([write("a", 0, "me")])
    raw = await redis_client.hget(store.keys.data[1], "1")
    assert msgspec.json.decode(raw)["revision"] == 1
