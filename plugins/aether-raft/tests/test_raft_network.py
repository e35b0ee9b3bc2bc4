"""The peer network over real loopback sockets: frames, the HMAC handshake, refusals."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest
from aether_raft.messages import Heartbeat, Message, encode_message
from aether_raft.network import PeerNetwork
from aether_raft.wire import Hello, WireError, dial, frame, read_frame

SECRET = b"s" * 32


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - polls counters the network bumps
            await asyncio.sleep(0.01)


async def _pair(secret_b: bytes = SECRET) -> tuple[PeerNetwork, PeerNetwork, list[Message]]:
    got: list[Message] = []
    b = PeerNetwork("b", "127.0.0.1:0", {"a": "127.0.0.1:1"}, secret_b, got.append)
    await b.start()
    a = PeerNetwork("a", "127.0.0.1:0", {"b": f"127.0.0.1:{b.port}"}, SECRET, lambda m: None,
                    backoff_min=0.01, backoff_max=0.05)
    await a.start()
    return a, b, got


async def test_authenticated_peers_exchange_messages_in_order() -> None:
    a, b, got = await _pair()
    try:
        for i in range(200):
            a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
        await _until(lambda: len(got) == 200)
        assert [m.commit for m in got if isinstance(m, Heartbeat)] == list(range(200))
        assert b.rejected == 0
    finally:
        await a.close()
        await b.close()


async def test_a_wrong_secret_is_refused_and_no_message_gets_through() -> None:
    a, b, got = await _pair(secret_b=b"x" * 32)
    try:
        for i in range(5):
            a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
        await _until(lambda: b.rejected >= 2)
        assert got == []
        assert "b" not in a.connected
    finally:
        await a.close()
        await b.close()


async def test_a_dialer_rejects_an_acceptor_without_the_secret() -> None:
    b = PeerNetwork("b", "127.0.0.1:0", {"a": "127.0.0.1:1"}, b"x" * 32, lambda m: None)
    await b.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        # b refuses our hello, so we never see a welcome: the dial fails either way.
        with pytest.raises((WireError, asyncio.IncompleteReadError, ConnectionError)):
            await dial(reader, writer, SECRET, "a")
        writer.close()
    finally:
        await b.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # a huge length prefix
        struct.pack(">I", 3) + b"\x09ab",  # a wrong version byte
        frame(b"\xc1garbage"),  # not msgpack
        frame(encode_message(Heartbeat(src="a", dst="b", term=1, commit=0))),  # no hello
    ],
)
async def test_garbage_before_auth_is_disconnected_and_the_node_keeps_serving(
    payload: bytes,
) -> None:
    a, b, got = await _pair()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        await read_frame(reader)  # the challenge
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # b closed the connection
        writer.close()
        assert b.rejected >= 1
        a.send(Heartbeat(src="a", dst="b", term=1, commit=7))
        await _until(lambda: len(got) == 1)
    finally:
        await a.close()
        await b.close()


async def test_an_unknown_member_with_the_secret_is_refused() -> None:
    a, b, got = await _pair()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        with pytest.raises((WireError, asyncio.IncompleteReadError, ConnectionError)):
            await dial(reader, writer, SECRET, "mallory")
        writer.close()
        await _until(lambda: b.rejected >= 1)
        assert got == []
        assert Hello  # the handshake type is part of the wire module's surface
    finally:
        await a.close()
        await b.close()


async def test_a_message_in_another_name_drops_the_connection() -> None:
    got: list[Message] = []
    b = PeerNetwork("b", "127.0.0.1:0", {"a": "127.0.0.1:1", "c": "127.0.0.1:1"}, SECRET,
                    got.append)
    await b.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        await dial(reader, writer, SECRET, "a")
        writer.write(frame(encode_message(Heartbeat(src="c", dst="b", term=9, commit=0))))
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        assert got == [] and b.rejected == 1
    finally:
        await b.close()


async def test_reconnects_after_the_peer_restarts() -> None:
    a, b, got = await _pair()
    try:
        a.send(Heartbeat(src="a", dst="b", term=1, commit=1))
        await _until(lambda: len(got) == 1)
        port = b.port
        await b.close()
        b2 = PeerNetwork("b", f"127.0.0.1:{port}", {"a": "127.0.0.1:1"}, SECRET, got.append)
        await b2.start()
        try:
            async def delivered() -> None:
                while len(got) < 2:
                    a.send(Heartbeat(src="a", dst="b", term=1, commit=2))
                    await asyncio.sleep(0.05)

            async with asyncio.timeout(5):
                await delivered()
        finally:
            await b2.close()
    finally:
        await a.close()
