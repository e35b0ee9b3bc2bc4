"""``postgres``: one database shared by several stateless Aether nodes.

Commits are group commits. A node sends at most one commit transaction at a time: the
commands that arrive while it is in flight queue up and go together in the next one, a
single call of the schema's ``commit_batch()`` function — one round trip, one
transaction that locks the ``meta`` row (so writers on all nodes take turns and
revisions come out gap-free), and per command, in arrival order: skip a log index
already applied, check each expected version against ``heads``, append to ``records``.
One NOTIFY and one WAL flush cover the whole batch, which is what lets several
concurrent writers go faster than one: with a single writer nothing waits (the queue is
empty when it commits), with eight the flush is shared. Every caller gets its own
result; a rejected compare-and-set rejects only its own command.

Reads go straight to the tables through a connection pool; the change feed reads
``records`` by revision and sleeps on LISTEN/NOTIFY between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import msgspec
import psycopg
import structlog
from psycopg import AsyncCursor, sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from aether_core.errors import BadRequest, Compacted, StorageFault
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Rejection, Write
from aether_core.storage.base import SnapshotHeader, Storage
from aether_postgres.listener import ChangeListener
from aether_postgres.migrations import channel_for, migrate
from aether_postgres.settings import PostgresSettings, describe_dsn

log = structlog.get_logger("aether.postgres")

Connection = psycopg.AsyncConnection[TupleRow]

#: First pause of the change feed after a database error (doubles up to ``poll``).
_FEED_RETRY_FIRST = 0.1
#: Most commands in one group commit: bounds the transaction (and its lock hold) and
#: the JSON parameter; more waiting commands go in the next transaction.
MAX_BATCH = 128
#: Errors of the data sent, not of the connection: a batch that fails with one is
#: committed again command by command, so that only the offending command fails.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)

#: One commit_batch() result row: status, first revision, failing write, its version.
_Row = tuple[str, int, int, int]


class _Queued:
    """A command waiting for the next group commit, and where its result goes."""

    __slots__ = ("future", "item")

    def __init__(self, item: str, future: asyncio.Future[_Row]) -> None:
        self.item = item
        self.future = future


class _Body(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What ``records.body`` holds: the record minus the columns stored beside it."""

    value: Any = None
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


_encode = msgspec.json.Encoder().encode
_decode_body = msgspec.json.Decoder(_Body).decode
_encode_record = msgspec.json.Encoder().encode

_COLUMNS = "r.kind, r.name, r.version, r.revision, r.deleted, r.body::text"


def _body(write: Write | Record) -> _Body:
    return _Body(value=write.value, author=write.author, comment=write.comment,
                 timestamp=write.timestamp, meta=write.meta)


def _record(row: TupleRow) -> Record:
    kind, name, version, revision, deleted, body = row
    b = _decode_body(body)
    return Record(kind=kind, name=name, version=version, revision=revision, value=b.value,
                  deleted=deleted, author=b.author, comment=b.comment,
                  timestamp=b.timestamp, meta=b.meta)


def _settle(batch: Iterable[_Queued], exc: BaseException) -> None:
    for q in batch:
        if not q.future.done():
            q.future.set_exception(exc)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStorage(Storage):
    """Aether storage in one Postgres schema; any number of instances may share it."""

    name = "postgres"
    Settings = PostgresSettings
    shared = True

    def __init__(self, settings: PostgresSettings | None = None, *, node_name: str = "") -> None:
        super().__init__()
        self.settings = settings or PostgresSettings()
        self.schema = self.settings.schema_name
        self.channel = channel_for(self.schema)
        #: How logs and errors name this store: never the password.
        self.where = f"postgres {describe_dsn(self.settings.dsn.get_secret_value())} " \
                     f"schema {self.schema}"
        self._app_name = self.settings.application_name or (
            f"aether:{node_name}" if node_name else "aether")
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._listener: ChangeListener | None = None
        self._wake = asyncio.Event()
        s = sql.Identifier(self.schema)
        select = sql.SQL("SELECT " + _COLUMNS + " FROM {s}.records r ").format(s=s)
        self._q_commit = sql.SQL(
            "SELECT o_i, o_status, o_first, o_at, o_current FROM {s}.commit_batch(%s::json)"
        ).format(s=s)
        self._queue: list[_Queued] = []
        self._committer: asyncio.Task[None] | None = None
        #: A commit transaction is in flight (inline or by the committer task): new
        #: commands queue for the next group commit.
        self._busy = False
        self._q_head = select + sql.SQL(
            "WHERE r.kind = %s AND r.name = %s ORDER BY r.version DESC LIMIT 1")
        self._q_version = select + sql.SQL(
            "WHERE r.kind = %s AND r.name = %s AND r.version = %s")
        self._q_history = select + sql.SQL(
            "WHERE r.kind = %s AND r.name = %s ORDER BY r.version")
        self._q_since = select + sql.SQL(
            "WHERE r.revision > %s ORDER BY r.revision LIMIT %s")
        # The feed's read: the compaction marker and the records after the cursor in one
        # statement (one snapshot, one round trip instead of two per wake-up of the
        # watch hub on every node).
        self._q_changes = sql.SQL(
            "SELECT m.compacted_revision, " + _COLUMNS + " FROM {s}.meta m "
            "LEFT JOIN LATERAL (SELECT * FROM {s}.records r WHERE r.revision > %s "
            "ORDER BY r.revision LIMIT %s) r ON true").format(s=s)
        heads = sql.SQL(
            "SELECT " + _COLUMNS + " FROM {s}.heads h JOIN {s}.records r "
            "ON r.revision = h.revision WHERE h.kind = %s AND h.name {op} %s "
            "AND h.name < %s AND starts_with(h.name, %s) AND NOT h.deleted "
            "ORDER BY h.name LIMIT %s")
        self._q_heads_from = heads.format(s=s, op=sql.SQL(">="))
        self._q_heads_after = heads.format(s=s, op=sql.SQL(">"))
        self._q_meta = sql.SQL(
            "SELECT revision, applied_index, compacted_revision FROM {s}.meta").format(s=s)
        self._q_compact = sql.SQL(
            "UPDATE {s}.meta SET compacted_revision = "
            "GREATEST(compacted_revision, LEAST(%s, revision)) WHERE id = 1").format(s=s)
        self._s = s

    @classmethod
    def from_settings(cls, settings: PostgresSettings, node: NodeInfo) -> PostgresStorage:
        return cls(settings, node_name=node.name)

    # -- connections ---------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        st = self.settings
        kwargs: dict[str, Any] = {
            # libpq takes whole seconds
            "connect_timeout": str(max(1, math.ceil(st.connect_timeout))),
            "application_name": self._app_name,
        }
        if st.password is not None:
            kwargs["password"] = st.password.get_secret_value()
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            value = getattr(st, key)
            if value is not None:
                kwargs[key] = value
        return kwargs

    async def _configure(self, conn: Connection) -> None:
        ms = max(1, round(self.settings.statement_timeout * 1000))
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{ms}ms",))

    def _fault(self, exc: BaseException) -> StorageFault:
        if isinstance(exc, PoolTimeout):
            return StorageFault(
                f"{self.where}: no database connection within "
                f"{self.settings.pool_timeout:g}s ({_line(exc)})")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return StorageFault(
                f"{self.where}: statement exceeded statement_timeout "
                f"({self.settings.statement_timeout:g}s)")
        return StorageFault(f"{self.where}: {_line(exc)}")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StorageFault(f"{self.where}: storage is not open")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._fault(exc) from exc

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[AsyncCursor[TupleRow]]:
        # Binary results: bytea arrives as raw bytes instead of hex text.
        async with self._connection() as conn, conn.cursor(binary=True) as cur:
            yield cur

    async def _records(self, query: sql.Composed, params: tuple[Any, ...]) -> list[Record]:
        async with self._cursor() as cur:
            await cur.execute(query, params)
            rows = await cur.fetchall()
        return [_record(row) for row in rows]

    async def _meta(self) -> tuple[int, int, int]:
        async with self._cursor() as cur:
            await cur.execute(self._q_meta)
            row = await cur.fetchone()
        if row is None:
            raise StorageFault(f"{self.where}: the meta row is missing")
        return int(row[0]), int(row[1]), int(row[2])

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        conninfo = self.settings.dsn.get_secret_value()
        kwargs = self._connect_kwargs()
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, **kwargs
            ) as conn:
                await self._configure(conn)
                await migrate(conn, self.schema)
        except psycopg.Error as exc:
            raise StorageFault(f"cannot open {self.where}: {_line(exc)}") from exc
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True, **kwargs},
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_size,
            timeout=self.settings.pool_timeout,
            configure=self._configure,
            name=f"aether-{self.schema}",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self.settings.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StorageFault(f"cannot open {self.where}: {_line(exc)}") from exc
        self._pool = pool
        self._listener = ChangeListener(conninfo, kwargs, self.channel, self._notify, self.where)
        self._listener.start()
        log.info("postgres storage open", target=self.where, pool_size=self.settings.pool_size)

    async def close(self) -> None:
        # Commands still queued are refused; the transaction in flight may finish
        # (statement_timeout bounds it), so its callers learn the outcome.
        queued, self._queue = self._queue, []
        _settle(queued, StorageFault(f"{self.where}: storage closed"))
        committer, self._committer = self._committer, None
        if committer is not None and not committer.done():
            done, _ = await asyncio.wait({committer}, timeout=self.settings.statement_timeout)
            if not done:
                committer.cancel()
                await asyncio.wait({committer})
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        if listener is not None:
            await listener.close()
        if pool is not None:
            await pool.close()
            self._notify()  # waiters return and find the store closed

    @property
    def listener(self) -> ChangeListener | None:
        """The LISTEN connection's state (pid, sessions); None when closed."""
        return self._listener

    # -- writes --------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        keys = {(w.kind, w.name) for w in writes}
        if len(keys) != len(writes):
            raise BadRequest("a commit writes each document at most once")
        if self._pool is None:
            raise StorageFault(f"{self.where}: storage is not open")
        # One JSON text per command: psycopg dumps a str far faster than five arrays, and
        # the batch is these texts joined.
        payload = _encode([(w.kind, w.name, w.expected_version, w.deleted, _body(w))
                           for w in writes]).decode()
        item = f"[{'null' if log_index is None else int(log_index)},{payload}]"
        if not self._busy:
            # Nothing in flight: commit at once from this task (no hand-over to the
            # committer task and back, which is most of a lone writer's overhead).
            self._busy = True
            try:
                row = (await self._commit_batch([item]))[0]
            except psycopg.Error as exc:
                raise self._fault(exc) from exc
            finally:
                self._busy = False
                if self._queue:
                    self._start_committer()
            if row[0] == "ok":
                self._notify()
        else:
            future: asyncio.Future[_Row] = asyncio.get_running_loop().create_future()
            self._queue.append(_Queued(item, future))
            # A caller cancelled before its batch is sent is dropped from the queue;
            # one cancelled after that may still be committed (as with any lost reply).
            row = await future
        status, first, at, current = row
        if status == "replayed":
            return CommitResult(replayed=True)
        if status == "conflict":
            w = writes[at - 1]
            return CommitResult(rejection=Rejection(
                code="conflict",
                detail=f"{w.kind} {w.name!r} is at version {current}, "
                       f"the write expected {w.expected_version}",
                kind=w.kind, name=w.name, expected_version=w.expected_version,
                current_version=current,
            ))
        return CommitResult(records=[w.to_record(first + i) for i, w in enumerate(writes)])

    def _start_committer(self) -> None:
        self._busy = True
        self._committer = asyncio.create_task(self._group_commits(),
                                              name=f"aether-pg-commit-{self.schema}")

    async def _group_commits(self) -> None:
        """Send the queue as group commits until it is empty, then let the next lone
        commit go inline again (``_busy`` is cleared with no await after the last
        check of the queue, so no command can be left behind)."""
        try:
            await self._drain_queue()
        finally:
            self._busy = False

    async def _drain_queue(self) -> None:
        while self._queue:
            batch = [q for q in self._queue[:MAX_BATCH] if not q.future.done()]
            del self._queue[:MAX_BATCH]
            if not batch:
                continue
            try:
                rows = await self._commit_batch([q.item for q in batch])
            except _DATA_ERRORS as exc:
                if len(batch) == 1:
                    _settle(batch, self._fault(exc))
                    continue
                # The transaction rolled back, so nothing of the batch was committed:
                # commit its commands again, one per transaction, in the same order,
                # so that the bad one fails alone.
                log.warning("postgres group commit refused; committing its commands "
                            "one by one", target=self.where, commands=len(batch),
                            error=_line(exc))
                rows_one: list[_Row | BaseException] = []
                for q in batch:
                    try:
                        rows_one.append((await self._commit_batch([q.item]))[0])
                    except psycopg.Error as one:
                        rows_one.append(self._fault(one))
                    except asyncio.CancelledError:
                        _settle(batch, StorageFault(f"{self.where}: storage closed "
                                                     "while committing"))
                        raise
                self._deliver(batch, rows_one)
                continue
            except psycopg.Error as exc:
                _settle(batch, self._fault(exc))
                continue
            except StorageFault as exc:
                _settle(batch, exc)
                continue
            except asyncio.CancelledError:
                _settle(batch, StorageFault(f"{self.where}: storage closed while committing"))
                raise
            except BaseException as exc:  # never leave a caller waiting
                _settle(batch, StorageFault(f"{self.where}: {_line(exc)}"))
                raise
            self._deliver(batch, list(rows))
            # One turn of the loop before looking at the queue again: the callers just
            # answered run first, and those that commit again at once (a busy writer)
            # join the next group instead of finding the store idle and going alone.
            await asyncio.sleep(0)

    def _deliver(self, batch: list[_Queued], rows: Sequence[_Row | BaseException]) -> None:
        wrote = False
        for q, row in zip(batch, rows, strict=True):
            if q.future.done():
                continue
            if isinstance(row, BaseException):
                q.future.set_exception(row)
            else:
                q.future.set_result(row)
                wrote = wrote or row[0] == "ok"
        if wrote:
            self._notify()

    async def _commit_batch(self, items: list[str]) -> list[_Row]:
        """One transaction committing ``items`` in order; raises psycopg errors as such."""
        pool = self._pool
        if pool is None:
            raise StorageFault(f"{self.where}: storage is not open")
        try:
            async with pool.connection() as conn, conn.cursor(binary=True) as cur:
                await cur.execute(self._q_commit, ("[" + ",".join(items) + "]",))
                found = await cur.fetchall()
        except PoolTimeout as exc:
            raise self._fault(exc) from exc
        if len(found) != len(items):
            raise StorageFault(f"{self.where}: commit_batch() answered {len(found)} rows "
                               f"for {len(items)} commands")
        found.sort(key=lambda r: int(r[0]))
        return [(str(st), int(first), int(at), int(current))
                for _, st, first, at, current in found]

    # -- reads ---------------------------------------------------------------------

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        if version is None:
            found = await self._records(self._q_head, (kind, name))
        else:
            found = await self._records(self._q_version, (kind, name, version))
        return found[0] if found else None

    async def history(self, kind: str, name: str) -> list[Record]:
        return await self._records(self._q_history, (kind, name))

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        # The range bounds let the (kind, name) index do the work; starts_with is exact.
        upper = prefix + "\U0010ffff"
        if after is not None and after >= prefix:
            return await self._records(
                self._q_heads_after, (kind, after, upper, prefix, limit))
        return await self._records(self._q_heads_from, (kind, prefix, upper, prefix, limit))

    async def revision(self) -> int:
        return (await self._meta())[0]

    async def applied_index(self) -> int:
        return (await self._meta())[1]

    async def compacted_revision(self) -> int:
        return (await self._meta())[2]

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        return await self._records(self._q_since, (revision, limit))

    async def changes(self, since: int, limit: int = 1000) -> list[Record]:
        async with self._cursor() as cur:
            await cur.execute(self._q_changes, (since, limit))
            rows = await cur.fetchall()
        if not rows:
            raise StorageFault(f"{self.where}: the meta row is missing")
        oldest = int(rows[0][0])
        if since < oldest:
            raise Compacted(
                f"revision {since} is compacted; the oldest revision kept is {oldest}",
                oldest_revision=oldest,
            )
        # With no record after the cursor, the one row has NULL record columns.
        return [_record(row[1:]) for row in rows if row[1] is not None]

    async def compact(self, revision: int) -> None:
        async with self._cursor() as cur:
            await cur.execute(self._q_compact, (revision,))

    # -- change feed ---------------------------------------------------------------

    def _notify(self) -> None:
        # A fresh event per wake-up: every waiter that took the old one is released,
        # and nobody has to clear an event another waiter is still about to check.
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def wait_for_change(self, revision: int, timeout: float) -> None:
        """Sleep on LISTEN/NOTIFY (this node's and every other node's commits) until the
        revision may be above ``revision``; the timeout doubles as a poll while the
        listener is reconnecting."""
        wake = self._wake
        if await self.revision() > revision:
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
        # arrives as the event fires, and the hub's pump could then never be stopped.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()

    # -- snapshots -----------------------------------------------------------------

    async def snapshot(self) -> AsyncIterator[bytes]:
        """A consistent snapshot even while other nodes write: one REPEATABLE READ
        transaction, records streamed through a server-side cursor."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await conn.execute(sql.SQL(
                "SELECT m.revision, m.applied_index, m.compacted_revision, "
                "(SELECT count(*) FROM {s}.records) FROM {s}.meta m").format(s=self._s))
            row = await cur.fetchone()
            if row is None:
                raise StorageFault(f"{self.where}: the meta row is missing")
            revision, applied, compacted, count = (int(v) for v in row)
            yield msgspec.json.encode(SnapshotHeader(
                revision=revision if count else 0, applied_index=applied,
                compacted_revision=compacted, records=count)) + b"\n"
            async with conn.cursor("aether_snapshot", binary=True) as records:
                await records.execute(sql.SQL(
                    "SELECT " + _COLUMNS + " FROM {s}.records r ORDER BY r.revision"
                ).format(s=self._s))
                async for record_row in records:
                    yield _encode_record(_record(record_row)) + b"\n"

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        items = list(records)
        heads: dict[tuple[str, str], Record] = {}
        for record in items:
            heads[(record.kind, record.name)] = record
        top = items[-1].revision if items else 0
        s = self._s
        async with self._connection() as conn, conn.transaction():
            # Taking the writers' lock first: no commit interleaves with the swap.
            await conn.execute(sql.SQL("SELECT 1 FROM {s}.meta WHERE id = 1 FOR UPDATE")
                               .format(s=s))
            await conn.execute(sql.SQL("DELETE FROM {s}.heads").format(s=s))
            await conn.execute(sql.SQL("DELETE FROM {s}.records").format(s=s))
            cur = conn.cursor()
            async with cur.copy(sql.SQL(
                "COPY {s}.records (revision, kind, name, version, deleted, body) "
                "FROM STDIN").format(s=s)) as copy:
                for r in items:
                    await copy.write_row((r.revision, r.kind, r.name, r.version, r.deleted,
                                          _encode(_body(r)).decode()))
            async with cur.copy(sql.SQL(
                "COPY {s}.heads (kind, name, version, revision, deleted) "
                "FROM STDIN (FORMAT BINARY)").format(s=s)) as copy:
                copy.set_types(["text", "text", "int8", "int8", "bool"])
                for r in heads.values():
                    await copy.write_row((r.kind, r.name, r.version, r.revision, r.deleted))
            await conn.execute(sql.SQL(
                "UPDATE {s}.meta SET revision = %s, applied_index = %s, "
                "compacted_revision = %s WHERE id = 1").format(s=s),
                (top, applied_index, compacted_revision))
            await conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(top)))
        self._notify()
