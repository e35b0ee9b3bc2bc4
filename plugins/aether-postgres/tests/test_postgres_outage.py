"""A real PostgreSQL server (a private one, see ``PrivatePostgres``) stopped while eight
writers keep one storage instance's group commits full, then started again: every
commit in flight or queued fails promptly with a StorageFault, none hangs, commits
resume, no acknowledged one is lost, and a change feed resumes with no gap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aether_postgres import PostgresSettings, PostgresStorage

from aether_core.errors import StorageFault
from aether_core.records import ChangeEvent, Record, Write
from aether_core.testing.servers import PrivatePostgres


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.fixture
async def store(server: PrivatePostgres) -> AsyncIterator[PostgresStorage]:
    """Short timeouts, so that every wait during the outage is bounded by a few seconds."""
    opened = PostgresStorage(PostgresSettings(
        dsn=server.dsn, schema="aether", pool_size=4, connect_timeout=1, pool_timeout=2,
        statement_timeout=3))
    await opened.open()
    yield opened
    await opened.close()


async def test_a_stopped_server_fails_queued_commits_fast_and_loses_nothing_acknowledged(
    server: PrivatePostgres, store: PostgresStorage,
) -> None:
    acked: list[Record] = []
    faults: list[StorageFault] = []
    slowest = 0.0
    halt = asyncio.Event()
    progress = asyncio.Event()  # set on every acknowledged commit and feed event

    async def until(done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                progress.clear()
                await progress.wait()

    async def writer(w: int) -> None:
        nonlocal slowest
        k = 0
        while not halt.is_set():
            started = time.monotonic()
            try:
                result = await store.commit([Write(kind="config", name=f"w/{w}/{k}",
                                                   expected_version=0, value=k)])
            except StorageFault as exc:
                faults.append(exc)
                await asyncio.sleep(0.05)
                continue
            finally:
                slowest = max(slowest, time.monotonic() - started)
            acked.extend(result.records)  # a rejection: a faulted commit had landed
            progress.set()
            k += 1

    events: list[ChangeEvent] = []

    async def follow() -> None:
        while True:  # the feed raises while the server is down; resume from the cursor
            with contextlib.suppress(StorageFault):
                async for event in store.feed(events[-1].revision if events else 0,
                                              poll=0.5):
                    events.append(event)
                    progress.set()
            await asyncio.sleep(0.1)

    feed = asyncio.create_task(follow())
    writers = [asyncio.create_task(writer(w)) for w in range(8)]
    try:
        await until(lambda: len(acked) >= 24, 20)
        await asyncio.to_thread(server.stop, "immediate")
        down_at = len(acked)
        await asyncio.sleep(2)
        await asyncio.to_thread(server.start)
        await until(lambda: len(acked) >= down_at + 24, 30)
    finally:
        halt.set()
        done, pending = await asyncio.wait(writers, timeout=15)
    assert not pending, "a commit hung"
    for task in done:
        task.result()
    assert faults, "no commit failed while the server was down"
    assert all("postgres" in f.detail and f.status == 503 for f in faults)
    assert slowest < 8, f"a commit took {slowest:.1f} s"

    stored: list[Record] = []
    while batch := await store.records_since(stored[-1].revision if stored else 0):
        stored.extend(batch)
    assert [r.revision for r in stored] == list(range(1, len(stored) + 1))
    by_revision = {r.revision: r for r in stored}
    for record in acked:  # every acknowledged commit is stored, as acknowledged
        assert by_revision[record.revision] == record
    await until(lambda: bool(events) and events[-1].revision >= stored[-1].revision, 15)
    feed.cancel()
    await asyncio.wait({feed}, timeout=5)
    assert [e.revision for e in events] == [r.revision for r in stored]  # no gap, no repeat
