"""The S3 endpoint goes away and comes back (a TCP proxy in front of moto is cut):
operations fail promptly with a StorageFault, nothing half-done remains, and a watcher
resumes from its last revision with no gap and no repeat."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
from aether_s3 import S3Storage

from aether_core.errors import StorageFault
from aether_core.records import ChangeEvent, Write


class Proxy:
    """127.0.0.1:<port> → the moto server; ``cut()`` drops connections, refuses new ones."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for pipe in self._pipes:
            pipe.transport.abort()
        self._pipes.clear()


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[Proxy]:
    p = Proxy(urlsplit(moto_endpoint).port or 80)
    await p.start()
    yield p
    with contextlib.suppress(Exception):
        await p.cut()


def write(name: str, expected: int) -> Write:
    return Write(kind="config", name=name, expected_version=expected, value={"n": expected})


async def test_an_outage_fails_fast_then_service_and_the_feed_resume_without_a_gap(
    make_s3: Callable[..., S3Storage], proxy: Proxy,
) -> None:
    through_proxy = make_s3("node-a", endpoint_url=f"http://127.0.0.1:{proxy.port}",
                            connect_timeout=0.5, read_timeout=2, max_attempts=2)
    direct = make_s3("checker")
    await through_proxy.open()
    await direct.open()
    events: asyncio.Queue[ChangeEvent] = asyncio.Queue()
    last = 0

    async def watch() -> None:
        nonlocal last
        with contextlib.suppress(StorageFault):  # polling faults while S3 is gone
            async for event in through_proxy.feed(last, poll=30):
                last = event.revision
                await events.put(event)

    task = asyncio.create_task(watch())
    try:
        await through_proxy.commit([write("a", 0)])
        assert (await asyncio.wait_for(events.get(), 5)).revision == 1

        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(StorageFault) as info:
            await through_proxy.commit([write("a", 1)])
        assert time.monotonic() - started < 5  # bounded, not hung
        assert "s3 storage s3://" in info.value.detail
        await direct.commit([write("b", 0)])  # another node keeps writing meanwhile
        assert await direct.revision() == 2  # the failed commit left nothing behind
        await asyncio.wait({task}, timeout=5)
        assert task.done()  # the poller met the outage and stopped with a fault

        await proxy.start()  # the same port again
        result = await through_proxy.commit([write("a", 1)])
        assert [r.revision for r in result.records] == [3]
        task = asyncio.create_task(watch())  # a client resumes from its last revision
        got = [await asyncio.wait_for(events.get(), 10) for _ in range(2)]
        assert [(e.revision, e.name, e.version) for e in got] == [(2, "b", 1), (3, "a", 2)]
        await asyncio.sleep(0.2)
        assert events.empty()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
