"""Group commit: the commands one node receives while a commit is in flight go to the
database together, in one transaction, and each caller still gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from aether_postgres import PostgresStorage
from psycopg import sql

from aether_core.errors import StorageFault
from aether_core.records import CommitResult, Write

MakeStorage = Callable[..., Awaitable[PostgresStorage]]


def put(name: str, expected: int, value: object = None) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value=value)


def transactions(dsn: str, schema: str) -> dict[int, str]:
    """revision -> the id of the transaction that wrote it."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql.SQL("SELECT revision, xmin::text FROM {}.records").format(
            sql.Identifier(schema))).fetchall()
    return {int(rev): str(xid) for rev, xid in rows}


async def test_concurrent_commits_share_transactions_and_keep_their_own_results(
    make_storage: MakeStorage, pg_dsn: str, pg_schema: str,
) -> None:
    store = await make_storage()
    results = await asyncio.gather(*(store.commit([put(f"g/{i}", 0, i), put(f"h/{i}", 0, i)])
                                     for i in range(40)))
    revisions = [r.revision for result in results for r in result.records]
    assert sorted(revisions) == list(range(1, 81))  # gap-free, none twice
    for i, result in enumerate(results):  # each caller got its own writes back
        assert [(r.name, r.value) for r in result.records] == [(f"g/{i}", i), (f"h/{i}", i)]
        first = result.records[0].revision
        assert result.records[1].revision == first + 1  # a command's revisions are adjacent
        assert await store.get("config", f"g/{i}") == result.records[0]
    xids = transactions(pg_dsn, pg_schema)
    # 40 commands took fewer transactions: they were grouped (the first goes alone).
    assert len(set(xids.values())) < 40
    assert await store.revision() == 80


async def test_busy_writers_keep_joining_one_group_instead_of_going_alone(
    make_storage: MakeStorage, pg_dsn: str, pg_schema: str,
) -> None:
    store = await make_storage()

    async def writer(w: int) -> None:
        for k in range(10):  # each commits again as soon as its previous commit returns
            result = await store.commit([put(f"w/{w}/{k}", 0)])
            assert result.rejection is None

    await asyncio.gather(*(writer(w) for w in range(8)))
    xids = transactions(pg_dsn, pg_schema)
    assert sorted(xids) == list(range(1, 81))
    # Ideally 1 + 10 transactions (the first alone, then groups of 7-8); a writer
    # answered and committing again must not find the store idle and go alone.
    assert len(set(xids.values())) <= 16, len(set(xids.values()))


async def test_a_rejected_command_leaves_the_rest_of_its_group_committed(
    make_storage: MakeStorage, pg_dsn: str, pg_schema: str,
) -> None:
    store = await make_storage()
    await store.commit([put("hot", 0, "seed")])
    # Every other command expects a stale version of "hot": rejected, while the fresh
    # documents between them commit in the same transactions.
    commands = [[put("hot", 0, i)] if i % 2 else [put(f"fresh/{i}", 0, i)]
                for i in range(30)]
    results: list[CommitResult] = await asyncio.gather(*(store.commit(c) for c in commands))
    for i, result in enumerate(results):
        if i % 2:
            assert result.rejection is not None and result.records == []
            assert (result.rejection.code, result.rejection.current_version) == ("conflict", 1)
        else:
            assert result.rejection is None and result.records[0].name == f"fresh/{i}"
    stored = await store.records_since(0)
    assert [r.revision for r in stored] == list(range(1, 17))  # 1 seed + 15 fresh, no gap
    xids = transactions(pg_dsn, pg_schema)
    assert len(set(xids.values())) < 16


async def test_two_commands_of_one_group_on_the_same_document_apply_in_turn(
    make_storage: MakeStorage,
) -> None:
    store = await make_storage()
    # Both expect version 0 and are queued together behind a first commit: the first of
    # them wins, the second sees the version its neighbour just wrote.
    first = asyncio.ensure_future(store.commit([put("other", 0)]))
    await asyncio.sleep(0)
    a, b = await asyncio.gather(store.commit([put("same", 0, "a")]),
                                store.commit([put("same", 0, "b")]))
    await first
    assert a.rejection is None and a.records[0].version == 1
    assert b.rejection is not None and b.rejection.current_version == 1
    assert [r.value for r in await store.history("config", "same")] == ["a"]


async def test_log_indexes_in_one_group_apply_once_each(make_storage: MakeStorage) -> None:
    store = await make_storage()
    results = await asyncio.gather(*(store.commit([put(f"l/{i}", 0)], log_index=i)
                                     for i in range(1, 21)))
    assert all(not r.replayed for r in results)
    again = await asyncio.gather(*(store.commit([put(f"l/{i}", 0)], log_index=i)
                                   for i in (5, 20, 21)))
    assert [r.replayed for r in again] == [True, True, False]
    assert await store.applied_index() == 21
    assert await store.revision() == 21


async def test_a_command_the_database_refuses_fails_alone(make_storage: MakeStorage) -> None:
    store = await make_storage()
    # Postgres text cannot hold NUL: that command's transaction fails; queued beside
    # others, it is retried alone so only its caller gets the fault.
    blocker = asyncio.ensure_future(store.commit([put("first", 0)]))
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(
        *(store.commit([put(f"ok/{i}", 0)]) for i in range(5)),
        store.commit([put("bad\x00name", 0)]),
        *(store.commit([put(f"ok/{i}", 0)]) for i in range(5, 10)),
        return_exceptions=True,
    )
    await blocker
    bad = outcomes[5]
    assert isinstance(bad, StorageFault) and bad.status == 503
    good = [o for i, o in enumerate(outcomes) if i != 5]
    assert all(isinstance(o, CommitResult) and o.rejection is None for o in good)
    assert [r.revision for r in await store.records_since(0)] == list(range(1, 12))


async def test_close_refuses_queued_commands_and_nothing_is_left_waiting(
    make_storage: MakeStorage,
) -> None:
    store = await make_storage()
    pending = [asyncio.ensure_future(store.commit([put(f"c/{i}", 0)])) for i in range(10)]
    await asyncio.sleep(0)
    await store.close()
    done, not_done = await asyncio.wait(pending, timeout=10)
    assert not not_done
    committed = [t.result() for t in done if t.exception() is None]
    refused = [t.exception() for t in done if t.exception() is not None]
    assert committed  # the transaction in flight finished
    assert all(isinstance(e, StorageFault) for e in refused)
    with pytest.raises(StorageFault, match="not open"):
        await store.commit([put("late", 0)])
