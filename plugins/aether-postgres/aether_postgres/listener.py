"""The change signal: one dedicated connection per storage instance LISTENing on the
deployment's channel.

A notification carries no data the feed relies on; it only wakes the waiters, who read
the records table from their own cursor revision. So a lost connection loses nothing:
on reconnect the listener wakes everyone once more, and they catch up from the table —
no change is missed, and none is delivered twice, because the cursor, not the
notification, decides what is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from psycopg import sql

log = structlog.get_logger("aether.postgres")

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0
#: TCP keepalives, so a silently dropped connection (a network cut, a failover) is
#: noticed within ~15 s even though the listener itself never sends anything.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
               "keepalives_count": 3}


class ChangeListener:
    """Keeps a LISTEN connection open and calls ``wake`` on every notification and
    after every (re)connect."""

    def __init__(
        self,
        conninfo: str,
        kwargs: dict[str, Any],
        channel: str,
        wake: Callable[[], None],
        where: str,
    ) -> None:
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._channel = channel
        self._wake = wake
        self._where = where
        self._task: asyncio.Task[None] | None = None
        #: Backend pid of the live LISTEN connection (None while disconnected).
        self.pid: int | None = None
        #: How many times a LISTEN was established (1 + reconnects).
        self.sessions = 0
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"aether-pg-listen-{self._channel}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = _FIRST_DELAY
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **{**_KEEPALIVES, **self._kwargs}
                )
            except psycopg.Error as exc:
                log.warning("postgres change listener cannot connect; retrying",
                            target=self._where, error=_line(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self.pid = conn.info.backend_pid
                    self.sessions += 1
                    self.listening.set()
                    delay = _FIRST_DELAY
                    if self.sessions > 1:
                        log.info("postgres change listener reconnected", target=self._where)
                    # Whatever was committed while nobody listened is in the table.
                    self._wake()
                    await self._drain(conn)
            except psycopg.Error as exc:
                log.warning("postgres change listener lost its connection; reconnecting",
                            target=self._where, error=_line(exc), retry_in=delay)
            finally:
                self.pid = None
                self.listening.clear()
            # Waiters poll the table meanwhile (their timeout), so nothing stalls for good.
            self._wake()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)


    async def _drain(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wake the waiters on every notification until the connection fails.

        Reads the socket with libpq directly from an event-loop reader callback rather
        than through ``conn.notifies()``: that generator re-arms a reader and builds
        futures per message, which on a busy machine cost each commit on this node about
        as much again as the commit itself (measured with bench/postgres_bench.py).
        """
        loop = asyncio.get_running_loop()
        pgconn = conn.pgconn
        lost: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
            except psycopg.OperationalError as exc:
                if not lost.done():
                    lost.set_exception(exc)
                return
            heard = False
            while pgconn.notifies() is not None:
                heard = True
            if heard:
                self._wake()

        fd = pgconn.socket
        loop.add_reader(fd, readable)
        try:
            readable()  # notifications that arrived with the LISTEN's reply
            await lost
        finally:
            loop.remove_reader(fd)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
