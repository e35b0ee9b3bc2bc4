"""Raft messages over asyncio TCP between authenticated peers.

Each node dials every peer once and only *sends* on that connection; it only
*receives* on the connections peers dialled to it. One direction per connection keeps
both sides simple: a dialer never reads after the handshake, an acceptor never writes.
Every peer has a bounded queue: when it is full (the peer is down or slow) a message
is dropped, which is safe because Raft retransmits what matters. A peer that sends
garbage, fails authentication or sends a message in someone else's name is
disconnected and logged; it never stops the node.

With ``tls`` every connection is mutual TLS first (:mod:`aether_raft.tls`: cluster CA
only, each certificate naming its node), then the hello/welcome handshake inside it —
with the HMAC too when a cluster secret is also set (defence in depth: a leaked node key
alone, or a leaked secret alone, does not let anyone in). Without TLS the secret is
required: peers never talk unauthenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import structlog

from aether_raft.forward import PeerFrame, decode_frame, encode_frame
from aether_raft.tls import PeerTLS, cert_names, names_node
from aether_raft.wire import WireError, accept, dial, frame, read_frame

log = structlog.get_logger("aether.raft.network")

HANDSHAKE_SECONDS = 5.0


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


class PeerNetwork:
    def __init__(
        self,
        name: str,
        listen: str,
        peers: dict[str, str],
        secret: bytes | None,
        deliver: Callable[[PeerFrame], None],
        *,
        tls: PeerTLS | None = None,
        queue_size: int = 1024,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        handshake_seconds: float = HANDSHAKE_SECONDS,
    ) -> None:
        if secret is None and tls is None:
            raise ValueError("peers need a cluster secret, TLS or both; never neither")
        self.name = name
        self.listen = listen
        self.peers = dict(peers)
        self._secret = secret
        self._tls = tls
        self._handshake_seconds = handshake_seconds
        self._deliver = deliver
        self._queues: dict[str, asyncio.Queue[PeerFrame]] = {
            peer: asyncio.Queue(queue_size) for peer in peers
        }
        self._backoff = (backoff_min, backoff_max)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._inbound: set[asyncio.StreamWriter] = set()
        self._stopping = False
        #: Counters a test or ``cluster status`` can read.
        self.dropped = 0
        self.rejected = 0
        self.connected: set[str] = set()

    async def start(self) -> None:
        host, port = split_address(self.listen)
        self._server = await asyncio.start_server(self._serve, host, port)
        for peer in self.peers:
            self._spawn(self._dial_loop(peer), f"raft-dial-{peer}")

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def send(self, message: PeerFrame) -> None:
        queue = self._queues.get(message.dst)
        if queue is None:
            return
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    async def flush(self, timeout: float) -> None:
        """Give the messages already queued up to ``timeout`` seconds to go out (a
        stopping node's last answers); peers that are down keep theirs."""
        for _ in range(max(1, round(timeout / 0.01))):
            if all(queue.empty() for peer, queue in self._queues.items()
                   if peer in self.connected):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)  # the last batch taken from a queue is being written

    async def close(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Inbound handlers are the server's tasks: cancelling them makes asyncio log a
        # traceback, so end them by closing their connections (they read EOF and return).
        for writer in list(self._inbound):
            writer.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=HANDSHAKE_SECONDS)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial_loop(self, peer: str) -> None:
        delay = self._backoff[0]
        queue = self._queues[peer]
        while not self._stopping:
            writer: asyncio.StreamWriter | None = None
            try:
                host, port = split_address(self.peers[peer])
                async with asyncio.timeout(self._handshake_seconds):
                    if self._tls is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    else:
                        reader, writer = await asyncio.open_connection(
                            host, port, ssl=self._tls.client)
                        # The chain is verified against the cluster CA; now the name.
                        names = cert_names(writer.get_extra_info("peercert"))
                        if not names_node(names, peer):
                            raise WireError(
                                f"the node at {self.peers[peer]} presented a certificate "
                                f"for {', '.join(sorted(names)) or 'no node'}, not {peer!r}")
                    await dial(reader, writer, self._secret, self.name)
                tls = writer.get_extra_info("ssl_object")
                log.info("raft.peer_connected", peer=peer,
                         tls=tls.version() if isinstance(tls, ssl.SSLObject) else None)
                self.connected.add(peer)
                delay = self._backoff[0]
                while True:
                    batch = [await queue.get()]
                    while not queue.empty() and len(batch) < 256:
                        batch.append(queue.get_nowait())
                    writer.write(b"".join(frame(encode_frame(m)) for m in batch))
                    await writer.drain()
            except (OSError, TimeoutError, asyncio.IncompleteReadError, WireError,
                    ValueError) as exc:
                if peer in self.connected:
                    log.warning("raft.peer_lost", peer=peer, error=str(exc) or type(exc).__name__)
                elif isinstance(exc, WireError | ssl.SSLError):
                    log.warning("raft.peer_refused", peer=peer, error=str(exc))
                self.connected.discard(peer)
            finally:
                if writer is not None:
                    writer.close()
            # Jitter keeps restarted nodes from reconnecting in lockstep.
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self._backoff[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._inbound.add(writer)
        remote = writer.get_extra_info("peername")
        peer: str | None = None
        try:
            async with asyncio.timeout(self._handshake_seconds):
                certified: frozenset[str] | None = None
                if self._tls is not None:
                    # TLS over the accepted stream, as this task's first await. asyncio
                    # runs the task's first step before the socket's first read callback
                    # (which start_tls's pause_reading cancels), so no byte of the client
                    # hello can land in the plain reader's buffer, where TLS would never
                    # see it: keep nothing that awaits above this line. Doing TLS here
                    # (not with start_server(ssl=...)) makes a refused handshake reach
                    # the except below: logged and counted like any other refusal.
                    plain = writer.transport
                    try:
                        await writer.start_tls(self._tls.server)
                    except AttributeError:
                        # CPython 3.11: when the peer hangs up between the end of the
                        # handshake and start_tls resuming, the loop hands back no
                        # transport and StreamWriter.start_tls fails on it, leaving the
                        # stream with none. Put the closed one back (so close() and the
                        # writer's __del__ work) and treat it as the hang-up it is.
                        if writer.transport is not None:
                            raise
                        writer._transport = plain
                        raise ConnectionResetError(
                            "the peer hung up after the TLS handshake") from None
                    certified = cert_names(writer.get_extra_info("peercert"))
                peer = await accept(reader, writer, self._secret, frozenset(self.peers),
                                    certified)
            while True:
                body = await read_frame(reader)
                try:
                    message = decode_frame(body)
                except msgspec.DecodeError as exc:
                    raise WireError(f"bad message: {exc}") from None
                if message.src != peer or message.dst != self.name:
                    raise WireError(f"message from {message.src!r} to {message.dst!r} "
                                    f"on {peer!r}'s connection")
                self._deliver(message)
        except asyncio.IncompleteReadError:
            pass  # the peer closed the connection
        except (WireError, TimeoutError, OSError) as exc:
            self.rejected += 1
            log.warning("raft.peer_rejected", peer=peer, remote=str(remote),
                        error=str(exc) or type(exc).__name__)
        finally:
            writer.close()
            self._inbound.discard(writer)
            if task is not None:
                self._handlers.discard(task)
