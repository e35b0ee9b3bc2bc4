"""``sqlite``: the embedded default. One file in the node's data directory.

WAL journal with ``synchronous=FULL``: every commit fsyncs the WAL before
:meth:`SqliteStorage.commit` returns, so an acknowledged write survives kill -9 and
power loss (under raft, whose own log is fsynced and replayed, commits skip that fsync:
see :meth:`SqliteStorage.rely_on_log`). Writes run on one connection in a worker
thread, so a slow fsync never blocks the event loop. Reads run on a second connection
straight on the event loop: a WAL reader never waits for the writer, a point read from
the page cache takes microseconds, and a thread hop per read would cost ten times the
read itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from aether_core.errors import StorageFault
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Write
from aether_core.storage.base import SnapshotHeader, Storage, StorageSettings
from aether_core.storage.memory import check_expectations

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    revision  INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    UNIQUE (kind, name, version)
);
CREATE TABLE IF NOT EXISTS heads (
    kind     TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(Record).decode


class SqliteSettings(StorageSettings):
    """``[storage] use = "sqlite"``."""

    #: Database file; relative paths are inside the node's data directory.
    path: str = "aether.db"
    #: How long a writer waits for another process's lock before failing (seconds).
    busy_timeout: float = 5.0


class SqliteStorage(Storage):
    name = "sqlite"
    Settings = SqliteSettings
    snapshot_is_consistent = True

    def __init__(self, path: str | Path = "aether.db", *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        #: Commits run on the event loop once they no longer fsync (see rely_on_log).
        self._inline = False
        #: The writer connection, in the task that holds an open group (see group()).
        self._group: ContextVar[sqlite3.Connection | None] = ContextVar(
            f"sqlite-group-{id(self)}", default=None)

    @classmethod
    def from_settings(cls, settings: SqliteSettings, node: NodeInfo) -> SqliteStorage:
        path = Path(settings.path)
        return cls(path if path.is_absolute() else node.data_dir / path,
                   busy_timeout=settings.busy_timeout)

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        group = self._group.get()
        if group is not None:  # this task's open group holds the writer connection
            try:
                return fn(group)
            except sqlite3.Error as exc:
                raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc

        def call() -> T:
            with self._lock:
                if self._conn is None:
                    raise StorageFault(f"sqlite storage {self.path} is not open")
                try:
                    return fn(self._conn)
                except sqlite3.Error as exc:
                    raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc

        if self._inline:
            return call()
        return await asyncio.to_thread(call)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Inside a group its own task reads through the group's transaction (it must see
        # the commands before it); everyone else reads what is committed.
        conn = self._group.get() or self._reader
        if conn is None:
            raise StorageFault(f"sqlite storage {self.path} is not open")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=self.busy_timeout,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            return conn

        try:
            self._conn = await asyncio.to_thread(connect)
            self._reader = sqlite3.connect(self.path, isolation_level=None,
                                           timeout=self.busy_timeout)
            self._reader.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StorageFault(f"cannot open sqlite storage {self.path}: {exc}") from exc

    async def rely_on_log(self) -> None:
        # WAL with synchronous=NORMAL: a commit is atomic and survives kill -9 (it is in
        # the OS's page cache); only a power loss can undo the last ones, and the
        # transport's log re-applies those from applied_index().
        await self._run(lambda conn: conn.execute("PRAGMA synchronous=NORMAL"))
        # Without the fsync a commit takes tens of microseconds: less than the hop to a
        # worker thread and back, which under load waits for the GIL besides.
        self._inline = True

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            with self._lock:
                conn.close()

    @staticmethod
    def _state(conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set_state(conn: sqlite3.Connection, key: str, value: int) -> None:
        conn.execute(
            "INSERT INTO state(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @staticmethod
    def _insert(conn: sqlite3.Connection, record: Record) -> None:
        conn.execute(
            "INSERT INTO records(revision, kind, name, version, deleted, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.revision, record.kind, record.name, record.version,
             int(record.deleted), _encode(record)),
        )
        conn.execute(
            "INSERT INTO heads(kind, name, version, revision, deleted) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(kind, name) DO UPDATE SET version = excluded.version, "
            "revision = excluded.revision, deleted = excluded.deleted",
            (record.kind, record.name, record.version, record.revision, int(record.deleted)),
        )

    # -- writes ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def group(self) -> AsyncIterator[None]:
        # One transaction for the whole group, on the event loop (nothing in it waits for
        # the disk); each commit in it is a savepoint; the COMMIT — the one fsync — runs
        # in the worker thread. Other tasks see nothing of the group before that.
        if self._inline or self._group.get() is not None:
            yield  # no fsync to share (raft's log is durable), or already in a group
            return
        await asyncio.to_thread(self._lock.acquire)
        conn = self._conn
        committed = False
        try:
            if conn is None:
                raise StorageFault(f"sqlite storage {self.path} is not open")
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
            token = self._group.set(conn)
            try:
                yield
            finally:
                self._group.reset(token)
            try:
                await asyncio.to_thread(conn.execute, "COMMIT")
            except sqlite3.Error as exc:
                raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc
            committed = True
        finally:
            if conn is not None and not committed and conn.in_transaction:
                conn.execute("ROLLBACK")
            self._lock.release()
        self._notify()

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        group = self._group.get()
        if group is not None:
            return self._commit_in_group(group, writes, log_index)

        def txn(conn: sqlite3.Connection) -> CommitResult:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._commit_locked(conn, writes, log_index)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        result = await self._run(txn)
        if result.records:
            self._notify()
        return result

    def _commit_in_group(
        self, conn: sqlite3.Connection, writes: Sequence[Write], log_index: int | None
    ) -> CommitResult:
        # A savepoint per commit: one that fails takes back only its own writes.
        try:
            conn.execute("SAVEPOINT aether_commit")
            try:
                result = self._commit_locked(conn, writes, log_index)
            except BaseException:
                conn.execute("ROLLBACK TO aether_commit")
                raise
            finally:
                conn.execute("RELEASE aether_commit")
        except sqlite3.Error as exc:
            raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc
        return result

    def _commit_locked(
        self, conn: sqlite3.Connection, writes: Sequence[Write], log_index: int | None
    ) -> CommitResult:
        if log_index is not None and log_index <= self._state(conn, "applied_index"):
            return CommitResult(replayed=True)
        current: dict[tuple[str, str], int] = {}
        for w in writes:
            row = conn.execute(
                "SELECT version FROM heads WHERE kind = ? AND name = ?", (w.kind, w.name)
            ).fetchone()
            current[(w.kind, w.name)] = int(row[0]) if row else 0
        rejection = check_expectations(writes, current)
        if log_index is not None:
            self._set_state(conn, "applied_index", log_index)
        if rejection:
            return CommitResult(rejection=rejection)
        row = conn.execute("SELECT COALESCE(MAX(revision), 0) FROM records").fetchone()
        revision = int(row[0])
        written = []
        for w in writes:
            revision += 1
            record = w.to_record(revision)
            self._insert(conn, record)
            written.append(record)
        return CommitResult(records=written)

    # -- reads -----------------------------------------------------------------------

    async def _records(self, sql: str, params: tuple[Any, ...]) -> list[Record]:
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_decode(row[0]) for row in rows]

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        if version is None:
            found = await self._records(
                "SELECT r.body FROM heads h JOIN records r ON r.revision = h.revision "
                "WHERE h.kind = ? AND h.name = ?",
                (kind, name),
            )
        else:
            found = await self._records(
                "SELECT body FROM records WHERE kind = ? AND name = ? AND version = ?",
                (kind, name, version),
            )
        return found[0] if found else None

    async def history(self, kind: str, name: str) -> list[Record]:
        return await self._records(
            "SELECT body FROM records WHERE kind = ? AND name = ? ORDER BY version",
            (kind, name),
        )

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        # Range scan on the primary key: names in [prefix, prefix + U+10FFFF).
        low = max(prefix, after) if after is not None else prefix
        op = ">" if after is not None and after >= prefix else ">="
        return await self._records(
            "SELECT r.body FROM heads h JOIN records r ON r.revision = h.revision "
            f"WHERE h.kind = ? AND h.name {op} ? AND h.name < ? AND h.deleted = 0 "
            "ORDER BY h.name LIMIT ?",
            (kind, low, prefix + "\U0010ffff", limit),
        )

    async def revision(self) -> int:
        return self._read(
            lambda conn: int(
                conn.execute("SELECT COALESCE(MAX(revision), 0) FROM records").fetchone()[0]
            )
        )

    async def applied_index(self) -> int:
        return self._read(lambda conn: self._state(conn, "applied_index"))

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        return await self._records(
            "SELECT body FROM records WHERE revision > ? ORDER BY revision LIMIT ?",
            (revision, limit),
        )

    async def compacted_revision(self) -> int:
        return self._read(lambda conn: self._state(conn, "compacted_revision"))

    async def snapshot(self) -> AsyncIterator[bytes]:
        # One read transaction on a connection of its own, in a worker thread: a WAL
        # reader sees the store as of its first read while commits go on, and the event
        # loop is not held up by a large store.
        for chunk in await asyncio.to_thread(self._consistent_snapshot):
            yield chunk

    def _consistent_snapshot(self) -> list[bytes]:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc
        try:
            conn.execute("BEGIN")
            applied = self._state(conn, "applied_index")
            compacted = self._state(conn, "compacted_revision")
            rows = conn.execute("SELECT revision, body FROM records ORDER BY revision").fetchall()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageFault(f"sqlite storage {self.path}: {exc}") from exc
        finally:
            conn.close()
        header = SnapshotHeader(revision=int(rows[-1][0]) if rows else 0,
                                applied_index=applied, compacted_revision=compacted,
                                records=len(rows))
        return [msgspec.json.encode(header) + b"\n", *(bytes(body) + b"\n" for _, body in rows)]

    async def compact(self, revision: int) -> None:
        def txn(conn: sqlite3.Connection) -> None:
            top = int(conn.execute("SELECT COALESCE(MAX(revision), 0) FROM records").fetchone()[0])
            target = max(self._state(conn, "compacted_revision"), min(revision, top))
            self._set_state(conn, "compacted_revision", target)

        await self._run(txn)

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        items = list(records)

        def txn(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM records")
                conn.execute("DELETE FROM heads")
                conn.execute("DELETE FROM state")
                for record in items:
                    self._insert(conn, record)
                self._set_state(conn, "applied_index", applied_index)
                self._set_state(conn, "compacted_revision", compacted_revision)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        await self._run(txn)
