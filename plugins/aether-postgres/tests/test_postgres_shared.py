"""Several instances ("nodes") over one schema: ordering, the change feed, migrations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from aether_postgres import PostgresStorage
from aether_postgres.migrations import LATEST, migrate
from psycopg import sql

from aether_core.errors import BadRequest, StorageFault
from aether_core.manager import ConfigManager
from aether_core.records import ChangeEvent, Record, Write
from aether_core.storage.sqlite import SqliteStorage

MakeStorage = Callable[..., Awaitable[PostgresStorage]]


def put(name: str, expected: int, value: object) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value=value)


async def all_records(store: PostgresStorage) -> list[Record]:
    out: list[Record] = []
    while batch := await store.records_since(out[-1].revision if out else 0):
        out.extend(batch)
    return out


async def test_concurrent_writers_on_three_nodes_keep_revisions_gap_free(
    make_storage: MakeStorage,
) -> None:
    nodes = [await make_storage() for _ in range(3)]
    acknowledged: list[Record] = []
    conflicts = 0

    async def fresh_documents(node: int, task: int) -> None:
        for k in range(8):
            result = await nodes[node].commit([put(f"doc/{node}-{task}-{k}", 0, k)])
            assert result.rejection is None
            acknowledged.extend(result.records)

    async def hot_document(node: int, task: int) -> None:
        nonlocal conflicts
        done = 0
        while done < 6:
            head = await nodes[node].get("config", "hot")
            result = await nodes[node].commit(
                [put("hot", head.version if head else 0, {"by": [node, task, done]})])
            if result.rejection is not None:
                assert result.rejection.code == "conflict"
                conflicts += 1
                continue
            acknowledged.extend(result.records)
            done += 1

    await asyncio.wait_for(asyncio.gather(
        *(fresh_documents(n, t) for n in range(3) for t in range(3)),
        *(hot_document(n, t) for n in range(3) for t in range(3)),
    ), 60)

    stored = await all_records(nodes[1])
    assert [r.revision for r in stored] == list(range(1, 9 * 8 + 9 * 6 + 1))
    assert sorted(acknowledged, key=lambda r: r.revision) == stored
    hot = await nodes[2].history("config", "hot")
    assert [r.version for r in hot] == list(range(1, 9 * 6 + 1))
    assert len({tuple(r.value["by"]) for r in hot}) == len(hot)
    assert conflicts > 0  # the writers really raced on the hot document
    for node in nodes:
        assert await node.revision() == len(stored)


async def test_a_watch_on_node_b_sees_node_a_writes_in_order(make_storage: MakeStorage) -> None:
    a = ConfigManager(await make_storage())
    b = ConfigManager(await make_storage())
    async with a, b:
        subscription = await b.watch("app/", since=0)
        written: list[Record] = []
        for i in range(10):
            written.append(await a.put("app/x" if i % 2 else "app/y", {"i": i}))
        written.append(await a.delete("app/x"))
        await b.put("other/z", {"ignored": True})
        seen: list[ChangeEvent] = []

        async def collect() -> None:
            async for event in subscription:
                seen.append(event)
                if len(seen) == len(written):
                    return

        await asyncio.wait_for(collect(), 10)
    assert [(e.revision, e.name, e.version, e.type) for e in seen] == [
        (r.revision, r.name, r.version, "delete" if r.deleted else "put") for r in written]
    assert [e.value for e in seen[:-1]] == [r.value for r in written[:-1]]


async def test_notify_wakes_a_waiter_on_another_node_without_polling(
    make_storage: MakeStorage,
) -> None:
    a, b = await make_storage(), await make_storage()
    feed = b.feed(0, poll=60)  # a poll this long would fail the test: only NOTIFY can wake it
    pending = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.05)
    assert b.listener is not None
    await asyncio.wait_for(b.listener.listening.wait(), 5)
    started = time.monotonic()
    await a.commit([put("k", 0, 1)])
    event = await asyncio.wait_for(pending, 5)
    assert event.revision == 1 and time.monotonic() - started < 5
    await feed.aclose()  # type: ignore[attr-defined]


async def test_a_killed_listen_connection_reconnects_without_losing_or_repeating(
    make_storage: MakeStorage, pg_dsn: str,
) -> None:
    a, b = await make_storage(), await make_storage()
    feed = b.feed(0, poll=60)
    for i in range(3):
        await a.commit([put(f"before/{i}", 0, i)])
    got = [(await asyncio.wait_for(anext(feed), 5)).revision for _ in range(3)]
    assert b.listener is not None
    await asyncio.wait_for(b.listener.listening.wait(), 5)
    first_pid = b.listener.pid
    assert first_pid is not None

    pending = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.05)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,)).fetchone()
        assert row == (True,)
    # Written while the listener is down or reconnecting: only catch-up can deliver these.
    for i in range(3):
        await a.commit([put(f"during/{i}", 0, i)])
    got.append((await asyncio.wait_for(pending, 10)).revision)
    got += [(await asyncio.wait_for(anext(feed), 10)).revision for _ in range(2)]

    await asyncio.wait_for(b.listener.listening.wait(), 5)
    assert b.listener.sessions >= 2 and b.listener.pid not in (None, first_pid)
    await a.commit([put("after", 0, 1)])
    got.append((await asyncio.wait_for(anext(feed), 5)).revision)
    assert got == list(range(1, 8))
    nothing_more = asyncio.ensure_future(anext(feed))
    done, _ = await asyncio.wait({nothing_more}, timeout=0.3)
    assert not done, "the feed repeated a change"
    nothing_more.cancel()


async def test_migrations_run_concurrently_apply_once(pg_dsn: str, pg_schema: str) -> None:
    connections = [await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
                   for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, pg_schema) for c in connections))
        assert sorted(results) == [[], [], list(range(1, LATEST + 1))]
        again = await asyncio.gather(*(migrate(c, pg_schema) for c in connections[:2]))
        assert again == [[], []]
        cur = await connections[0].execute(sql.SQL(
            "SELECT version FROM {}.schema_migrations ORDER BY version"
        ).format(sql.Identifier(pg_schema)))
        assert [row[0] for row in await cur.fetchall()] == list(range(1, LATEST + 1))
    finally:
        for c in connections:
            await c.close()


async def test_nodes_starting_together_share_one_schema(make_storage: MakeStorage) -> None:
    nodes = await asyncio.gather(*(make_storage() for _ in range(3)))
    results = await asyncio.gather(*(n.commit([put(f"n{i}", 0, i)])
                                     for i, n in enumerate(nodes)))
    assert sorted(r.records[0].revision for r in results) == [1, 2, 3]


async def test_a_schema_from_a_newer_release_is_refused(
    make_storage: MakeStorage, pg_dsn: str, pg_schema: str
) -> None:
    await make_storage()
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL(
            "INSERT INTO {}.schema_migrations (version, description) VALUES (999, 'future')"
        ).format(sql.Identifier(pg_schema)))
    with pytest.raises(StorageFault, match="migration 999, newer than"):
        await make_storage()


async def test_lost_pool_connections_are_a_503_then_service_resumes(
    make_storage: MakeStorage, pg_dsn: str,
) -> None:
    # A name of this test's own: other runs on the same server must not lose connections.
    app_name = f"aether-outage-{uuid.uuid4().hex[:8]}"
    store = await make_storage(application_name=app_name, pool_min_size=2)
    first = await store.commit([put("a", 0, 1)])
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = %s AND pid <> pg_backend_pid()", (app_name,))
    faults = 0
    for _ in range(6):  # each stale pooled connection fails once, then is replaced
        try:
            await store.get("config", "a")
        except StorageFault as exc:
            assert exc.status == 503 and "schema" in exc.detail
            faults += 1
    assert faults >= 1
    assert await store.get("config", "a") == first.records[0]
    second = await store.commit([put("a", 1, 2)])
    assert second.records[0].revision == 2


async def test_a_watch_survives_lost_connections_with_no_gap(
    make_storage: MakeStorage, pg_dsn: str,
) -> None:
    a = ConfigManager(await make_storage())
    app_name = f"aether-watch-outage-{uuid.uuid4().hex[:8]}"
    b = ConfigManager(await make_storage(application_name=app_name))
    async with a, b:
        subscription = await b.watch("w/", since=0)
        events = aiter(subscription)
        first = await a.put("w/1", 1)
        assert (await asyncio.wait_for(anext(events), 5)).revision == first.revision
        # Let the subscription finish its history read and wait on the hub's pump, so
        # that what follows is delivered by the pump alone.
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.2)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (app_name,)).fetchone()
            assert killed is not None and killed[0] >= 2  # the pool and the listener
        later = [await a.put(f"w/{i}", i) for i in range(2, 6)]
        got = [(await asyncio.wait_for(pending, 10)).revision]
        got += [(await asyncio.wait_for(anext(events), 10)).revision for _ in later[1:]]
        assert got == [r.revision for r in later]
        assert not b.hub._tasks[0].done()  # the hub's pump is still running


async def test_export_from_sqlite_imports_into_postgres_and_back_unchanged(
    make_storage: MakeStorage, tmp_path: Path,
) -> None:
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as source:
        await source.put_schema("svc", {"type": "object"}, bind=["svc/"])
        for i in range(3):
            await source.put("svc/db", {"port": 5432 + i}, author="ann", comment=f"c{i}")
        await source.put("svc/cache", {"ttl": 1.5, "text": "héllo ✓"})
        await source.delete("svc/cache")
        await source.storage.compact(2)
        exported = b"".join([chunk async for chunk in source.export()])
        original = await source.storage.records_since(0)

    target = ConfigManager(await make_storage())
    async with target:
        header = await target.import_(_chunks(exported))
        assert (header.revision, header.records) == (len(original), len(original))
        assert await target.storage.records_since(0) == original
        assert await target.storage.compacted_revision() == 2
        assert (await target.get("svc/db")).value == {"port": 5434}
        again = b"".join([chunk async for chunk in target.export()])
        assert again == exported
        with pytest.raises(BadRequest, match="empty store"):
            await target.import_(_chunks(exported))
        nxt = await target.put("svc/db", {"port": 1})
        assert (nxt.version, nxt.revision) == (4, len(original) + 1)

    async with ConfigManager(SqliteStorage(tmp_path / "b.db")) as back:
        await back.import_(_chunks(again))
        assert await back.storage.records_since(0) == original


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 100):  # lines split across chunks, as over HTTP
        yield data[start:start + 100]
