"""The admin API's listener: connections it accepts send small responses at once."""

from __future__ import annotations

import asyncio
import socket

from aether_admin.service import Listener
from litestar import Litestar, get


@get("/ping", sync_to_thread=False)
def ping() -> str:
    return "pong"


async def test_accepted_connections_have_nagle_off() -> None:
    # A response goes out as headers then body; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms on Linux) — every request paid that before this fix.
    listener = Listener(Litestar([ping]), "127.0.0.1", 0)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"pong")).startswith(b"HTTP/1.1 200")
        assert listener._server is not None
        (connection,) = listener._server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
        await writer.wait_closed()
    finally:
        await listener.stop()
