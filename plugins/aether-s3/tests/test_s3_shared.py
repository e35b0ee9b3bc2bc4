"""Several S3Storage instances over one bucket: the shared-database shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from aether_s3 import S3Storage
from aether_s3.storage import Entry, _Taken

from aether_core.records import ChangeEvent, Write


def write(name: str, expected: int, by: str) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value={"by": by},
                 author=by, timestamp=1700000000.0)


async def opened(make: Callable[..., S3Storage], *names: str, **overrides: Any
                 ) -> list[S3Storage]:
    stores = [make(name, **overrides) for name in names]
    for store in stores:
        await store.open()
    return stores


def log_keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    found = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in found)


async def test_concurrent_writers_on_several_nodes_get_gap_free_revisions_and_unique_versions(
    make_s3: Callable[..., S3Storage], s3_client: Any, s3_bucket: str,
) -> None:
    nodes = await opened(make_s3, "n1", "n2", "n3")
    docs = ["shared/a", "shared/b"]

    async def writer(store: S3Storage, me: str) -> int:
        won = 0
        for i in range(6):
            name = docs[i % len(docs)]
            while True:  # compare-and-set loop, as a client sending If-Match would
                head = await store.get("config", name)
                result = await store.commit([write(name, head.version if head else 0, me)])
                if result.rejection is None:
                    won += 1
                    break
                assert result.rejection.code == "conflict" and result.records == []
        return won

    assert await asyncio.gather(*(writer(s, f"n{i}") for i, s in enumerate(nodes))) == [6] * 3
    log = await nodes[0].records_since(0)
    assert [r.revision for r in log] == list(range(1, 19))
    for name in docs:
        assert [r.version for r in await nodes[2].history("config", name)] == list(range(1, 10))
    assert len({(r.name, r.version) for r in log}) == 18
    # One immutable object per commit, numbered densely: the log is the store.
    keys = log_keys(s3_client, s3_bucket, "deploy/gen/0/log/")
    assert keys == [f"deploy/gen/0/log/{n:012d}.json" for n in range(1, 19)]


async def test_a_multi_write_commit_is_one_log_object(
    make_s3: Callable[..., S3Storage], s3_client: Any, s3_bucket: str,
) -> None:
    [store] = await opened(make_s3, "n1")
    result = await store.commit([write("a", 0, "x"), write("b", 0, "x"), write("c", 0, "x")])
    assert [r.revision for r in result.records] == [1, 2, 3]
    [key] = log_keys(s3_client, s3_bucket, "deploy/gen/")
    body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    entry = msgspec.json.decode(body, type=Entry)
    assert (entry.seq, entry.revision, [r.name for r in entry.records]) == (1, 3, ["a", "b", "c"])


async def test_a_watch_on_one_node_sees_every_write_of_the_others_in_order(
    make_s3: Callable[..., S3Storage],
) -> None:
    watcher, b, c = await opened(make_s3, "watcher", "b", "c")
    seen: list[ChangeEvent] = []

    async def watch() -> None:
        async for event in watcher.feed(0, poll=30):
            seen.append(event)
            if len(seen) == 16:
                return

    task = asyncio.create_task(watch())

    async def burst(store: S3Storage, me: str) -> None:
        for i in range(8):
            await store.commit([write(f"{me}/{i}", 0, me)])

    await asyncio.gather(burst(b, "b"), burst(c, "c"))
    # poll=30 for the feed: only the storage's own polling (0.05 s) can finish in time.
    await asyncio.wait_for(task, 10)
    assert [e.revision for e in seen] == list(range(1, 17))
    stored = await c.records_since(0)
    assert [(e.name, e.version) for e in seen] == [(r.name, r.version) for r in stored]


async def test_a_commit_whose_reply_was_lost_is_recognised_not_repeated(
    make_s3: Callable[..., S3Storage], monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, peer = await opened(make_s3, "n1", "n2")
    real_create = store._create

    async def create_then_lose_reply(key: str, data: bytes) -> None:
        await real_create(key, data)  # the object is written …
        raise _Taken(key)  # … but the retry after a lost reply meets 412

    monkeypatch.setattr(store, "_create", create_then_lose_reply)
    result = await store.commit([write("a", 0, "n1")])
    assert result.rejection is None and [r.revision for r in result.records] == [1]
    assert [r.version for r in await peer.history("config", "a")] == [1]
    assert await peer.revision() == 1


async def test_replace_all_moves_every_node_to_the_new_generation(
    make_s3: Callable[..., S3Storage], s3_client: Any, s3_bucket: str,
) -> None:
    a, b = await opened(make_s3, "a", "b")
    for i in range(3):
        await a.commit([write(f"old{i}", 0, "a")])
    assert await b.revision() == 3
    replacement = [write("new", 0, "x").to_record(1), write("new", 1, "x").to_record(2)]
    await a.replace_all(replacement, applied_index=7, compacted_revision=1)
    assert await b.records_since(0) == replacement
    assert (await b.revision(), await b.applied_index(), await b.compacted_revision()) == (
        2, 7, 1)
    assert [r.name for r in await b.heads("config")] == ["new"]
    assert (await b.commit([write("new", 2, "b")])).records[0].revision == 3
    # A node that starts now follows the hint straight to the new generation.
    [late] = await opened(make_s3, "late")
    assert [r.revision for r in await late.records_since(0)] == [1, 2, 3]
    hint = s3_client.get_object(Bucket=s3_bucket, Key="deploy/current")["Body"].read()
    assert msgspec.json.decode(hint)["generation"] != "0"


async def test_deployments_with_different_prefixes_do_not_see_each_other(
    make_s3: Callable[..., S3Storage],
) -> None:
    [mine] = await opened(make_s3, "n1")
    [other] = await opened(make_s3, "n2", prefix="other/")
    await mine.commit([write("a", 0, "me")])
    assert await other.get("config", "a") is None
    await other.commit([write("a", 0, "them")])
    assert (await mine.get("config", "a")).value == {"by": "me"}  # type: ignore[union-attr]
