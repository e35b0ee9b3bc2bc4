"""A TCP proxy for one directed peer link, with faults switched on and off at run time.

A raft node dials each peer and only sends on that connection (``network.py``), so
one proxy per directed link (A→B: A's ``peers`` entry for B points at the proxy, which
forwards to B's real listen address) cuts, stalls or slows exactly one direction.
The proxy only moves bytes, so it works the same for HMAC and TLS peers.

Faults:
- ``drop()``: every open connection is reset and new ones are reset as they arrive
  (the dialer sees its connection fail, like a refused port).
- ``blackhole()``: connections stay open but every byte is discarded, new connections
  are accepted and nothing reaches the target (a partition: no error, no progress).
  On ``heal()`` connections that lost bytes are reset, because a stream that resumed
  mid-frame would be garbage to the receiver (TCP would have given up on them too).
- ``delay(seconds, jitter)``: every chunk is held for ``seconds`` (± jitter) before
  it is written on, order kept.
- ``heal()``: back to forwarding everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

CHUNK = 65536


@dataclass
class LinkStats:
    connections: int = 0
    forwarded: int = 0  #: bytes
    discarded: int = 0  #: bytes
    resets: int = 0


@dataclass(eq=False)
class _Pipe:
    """One accepted connection and its upstream connection (if any)."""

    downstream: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    lost_bytes: bool = False

    def abort(self) -> None:
        # Aborting both sockets ends the pumps (their reads fail); the handler task is
        # never cancelled, which asyncio's stream server would log as an error.
        for writer in (self.downstream, self.upstream):
            if writer is not None:
                writer.transport.abort()


class LinkProxy:
    """``127.0.0.1:<port>`` → ``target``; see the module docstring for the faults."""

    def __init__(self, name: str, target: str, *, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None) -> None:
        self.name = name
        self.target = target
        self.host = host
        self.port = port
        self.mode = "pass"  # "pass" | "drop" | "blackhole"
        self.latency = 0.0
        self.jitter = 0.0
        self.stats = LinkStats()
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.mode = "drop"  # a connection arriving now is reset
        for pipe in list(self._pipes):
            pipe.abort()
        self._pipes.clear()
        # Wait for the handlers to end (their sockets are aborted): a handler still
        # running when the loop shuts down is cancelled, and asyncio logs that.
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    # -- faults ------------------------------------------------------------------------

    def drop(self) -> None:
        self.mode = "drop"
        self._reset_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def delay(self, seconds: float, jitter: float = 0.0) -> None:
        self.latency, self.jitter = seconds, jitter

    def heal(self) -> None:
        self.mode = "pass"
        self.latency = self.jitter = 0.0
        for pipe in list(self._pipes):
            if pipe.lost_bytes or pipe.upstream is None:
                self._reset(pipe)

    def describe(self) -> str:
        if self.mode != "pass":
            return f"{self.name}: {self.mode}"
        if self.latency:
            return f"{self.name}: delay {self.latency * 1000:g} ms ± {self.jitter * 1000:g}"
        return f"{self.name}: ok"

    # -- internals ---------------------------------------------------------------------

    def _reset(self, pipe: _Pipe) -> None:
        self.stats.resets += 1
        pipe.abort()
        self._pipes.discard(pipe)

    def _reset_all(self) -> None:
        for pipe in list(self._pipes):
            self._reset(pipe)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.stats.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        if self.mode == "drop":
            self.stats.resets += 1
            writer.transport.abort()
            return
        pipe = _Pipe(writer)
        self._pipes.add(pipe)
        try:
            if self.mode == "blackhole":
                # Accepted, never forwarded: wait (discarding) until healed, then reset.
                pipe.lost_bytes = True
                await self._discard_until_healed(reader)
                return
            host, _, port = self.target.rpartition(":")
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                self._reset(pipe)  # the target is down: the dialer sees a failed connect
                return
            pipe.upstream = up_writer
            if pipe not in self._pipes:  # dropped while connecting
                up_writer.transport.abort()
                return
            await asyncio.gather(self._pump(pipe, reader, up_writer),
                                 self._pump(pipe, up_reader, writer))
        except OSError:
            pass
        finally:
            if pipe in self._pipes:
                self._pipes.discard(pipe)
                pipe.abort()

    async def _discard_until_healed(self, reader: asyncio.StreamReader) -> None:
        while self.mode == "blackhole":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    data = await reader.read(CHUNK)
                    if not data:
                        return
                    self.stats.discarded += len(data)

    async def _pump(self, pipe: _Pipe, src: asyncio.StreamReader,
                    dst: asyncio.StreamWriter) -> None:
        """Move bytes one way. When either end closes or fails, both sockets are reset:
        a raft dialer never reads, so a half-closed relay would swallow its frames
        forever where a direct connection would have failed its next write."""
        # Chunks go through a queue with the time each is due, so a delay holds them
        # without holding up reading, and order is kept.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def write() -> None:
            try:
                while data := (item := await queue.get())[1]:
                    wait = item[0] - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if self.mode == "blackhole":  # blackholed while it waited
                        pipe.lost_bytes = True
                        self.stats.discarded += len(data)
                        continue
                    dst.write(data)
                    await dst.drain()
                    self.stats.forwarded += len(data)
            except OSError:
                pass
            finally:
                pipe.abort()

        writer = asyncio.create_task(write())
        try:
            last_due = 0.0
            while data := await src.read(CHUNK):
                if self.mode == "blackhole":
                    pipe.lost_bytes = True
                    self.stats.discarded += len(data)
                    continue
                delay = self.latency
                if self.jitter:
                    delay = max(0.0, delay + self._random.uniform(-self.jitter, self.jitter))
                last_due = max(last_due, time.monotonic() + delay)  # never reorder
                queue.put_nowait((last_due, data))
        except OSError:
            pipe.abort()
        finally:
            queue.put_nowait((0.0, b""))  # what is queued still goes, then both close
            with contextlib.suppress(asyncio.CancelledError):
                await writer
