"""The fault proxy on its own, in front of an echo server: pass, delay, drop,
blackhole and heal do what the raft fault tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aether_raft.testing.proxy import LinkProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[LinkProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = LinkProxy("a->b", f"127.0.0.1:{port}")
    await link.start()
    try:
        yield link
    finally:
        await link.close()
        server.close()
        await server.wait_closed()


async def _roundtrip(link: LinkProxy, payload: bytes, timeout: float = 2.0
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
    writer.write(payload)
    async with asyncio.timeout(timeout):
        got = await reader.readexactly(len(payload))
    return reader, writer, got


async def test_pass_and_delay(proxy: LinkProxy) -> None:
    reader, writer, got = await _roundtrip(proxy, b"hello")
    assert got == b"hello"
    proxy.delay(0.2)
    started = time.monotonic()
    writer.write(b"slow")
    async with asyncio.timeout(3):
        assert await reader.readexactly(4) == b"slow"
    # 0.2 s on the way there and 0.2 s back (one proxy carries both directions).
    assert time.monotonic() - started >= 0.35
    proxy.heal()
    started = time.monotonic()
    writer.write(b"fast")
    async with asyncio.timeout(3):
        assert await reader.readexactly(4) == b"fast"
    assert time.monotonic() - started < 0.2
    writer.close()


async def test_drop_resets_connections_and_refuses_new_ones(proxy: LinkProxy) -> None:
    reader, writer, _ = await _roundtrip(proxy, b"x")
    proxy.drop()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(2):
            writer.write(b"y")
            await writer.drain()
            await reader.readexactly(1)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(proxy, b"z")
    proxy.heal()
    assert (await _roundtrip(proxy, b"back"))[2] == b"back"


async def test_blackhole_swallows_bytes_then_heal_resets_those_connections(
    proxy: LinkProxy,
) -> None:
    reader, writer, _ = await _roundtrip(proxy, b"x")
    proxy.blackhole()
    writer.write(b"lost")
    await writer.drain()  # no error: the bytes just vanish
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.readexactly(4)
    with pytest.raises(TimeoutError):  # a new connection is accepted and goes nowhere
        await _roundtrip(proxy, b"new", timeout=0.5)
    assert proxy.stats.discarded >= 4
    proxy.heal()
    # The connection that lost bytes is reset rather than resumed mid-stream.
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(2):
            await reader.readexactly(1)
    assert (await _roundtrip(proxy, b"again"))[2] == b"again"


async def test_when_the_target_goes_away_the_dialer_is_reset() -> None:
    """A raft dialer never reads: if the relay only half-closed, its frames would vanish
    with no error, where a direct connection would fail its next write."""
    ends: list[asyncio.StreamWriter] = []
    accepted = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ends.append(writer)
        accepted.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    link = LinkProxy("a->b", f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
    await link.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(2):
            await accepted.wait()
        ends[0].transport.abort()  # the target process dies
        with pytest.raises(ConnectionError):  # writing only, as a raft dialer does
            async with asyncio.timeout(2):
                for _ in range(100):
                    writer.write(b"frame")
                    await writer.drain()
                    await asyncio.sleep(0.02)
        del reader
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
