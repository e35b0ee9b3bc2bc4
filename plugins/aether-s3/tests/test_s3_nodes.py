"""Two Aether nodes (ConfigManagers with the local transport) over one S3 bucket: a write
through one is read and watched through the other; compare-and-set races across nodes
have exactly one winner; an export from sqlite imports with history and revisions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aether_s3 import S3Storage

from aether_core.errors import VersionConflict
from aether_core.manager import ConfigManager
from aether_core.records import Record
from aether_core.storage.sqlite import SqliteStorage


async def test_a_write_through_one_node_is_read_and_watched_through_the_other(
    make_s3: Callable[..., S3Storage],
) -> None:
    async with ConfigManager(make_s3("a")) as a, ConfigManager(make_s3("b")) as b:
        events = aiter(await b.watch("app/", since=0))
        await a.put("app/db", {"port": 5432})
        assert (await b.get("app/db")).value == {"port": 5432}
        first = await asyncio.wait_for(anext(events), 10)
        assert (first.revision, first.name, first.version) == (1, "app/db", 1)

        outcomes = await asyncio.gather(
            a.put("app/db", {"port": 1}, expected_version=1),
            b.put("app/db", {"port": 2}, expected_version=1),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, Record)]
        losers = [o for o in outcomes if isinstance(o, VersionConflict)]
        assert len(winners) == len(losers) == 1
        assert losers[0].current_version == 2 and losers[0].status == 409
        second = await asyncio.wait_for(anext(events), 10)
        assert (second.revision, second.version, second.value) == (2, 2, winners[0].value)
        assert (await a.get("app/db")).value == winners[0].value


async def test_an_export_from_sqlite_imports_with_history_and_revisions(
    make_s3: Callable[..., S3Storage], tmp_path: Path,
) -> None:
    async with ConfigManager(SqliteStorage(tmp_path / "aether.db")) as source:
        await source.put("svc/a", {"v": 1})
        await source.put("svc/b", {"v": 1})
        await source.put("svc/a", {"v": 2})
        await source.delete("svc/b")
        chunks = [chunk async for chunk in source.export()]
        expected = await source.storage.records_since(0)

    async def replay() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async with ConfigManager(make_s3("a")) as a, ConfigManager(make_s3("b")) as b:
        header = await a.import_(replay())
        assert header.revision == 4
        assert await b.storage.records_since(0) == expected
        assert [r.version for r in await b.versions("svc/a")] == [1, 2]
        assert [r.name for r in (await b.list_configs()).items] == ["svc/a"]
        assert (await b.put("svc/b", {"v": 3})).revision == 5
