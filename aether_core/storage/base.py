"""The storage contract.

Every backend — built-in, first-party or third-party — implements :class:`Storage`
and passes the contract suite in :mod:`aether_core.testing.contract`.

Rules every backend follows:

* **Atomicity.** :meth:`Storage.commit` applies all of its writes or none, and checks
  every ``expected_version`` inside the same transaction as the writes. A failed check
  is a *result* (:class:`~aether_core.records.Rejection`), never an exception, so every
  node applying the same command reaches the same outcome.
* **Ordering.** Each written record takes the next global revision: strictly
  increasing and gap-free, also with several nodes committing to a shared backend at
  once. Versions of a document are 1, 2, 3 … and are never reused.
* **Idempotence.** A commit with a ``log_index`` at or below :meth:`applied_index`
  changes nothing and returns ``replayed=True``; a rejected commit still records its
  log index. That makes replaying a Raft log after a crash a no-op.
* **Durability.** When :meth:`commit` returns, the records survive a crash of the
  process (and, for local files, of the machine: fsync before returning).
* **Errors.** A fault (disk, network, corruption) is raised as
  :class:`~aether_core.errors.StorageFault` or any exception; it is never swallowed
  and never turned into an empty result.
* **Concurrency.** Methods are coroutine-safe: the kernel may call reads while a
  commit is in flight. Reads see committed data only.

Backends keep data; they do not interpret it. What a ``config`` or a ``schema`` means
is decided by the kernel's state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, ClassVar

import msgspec

from aether_core.errors import BadRequest, Compacted
from aether_core.providers import ProviderSettings
from aether_core.records import ChangeEvent, CommitResult, Record, Write

SNAPSHOT_FORMAT = "aether-snapshot"
SNAPSHOT_VERSION = 1


class StorageSettings(ProviderSettings):
    """Base of every storage provider's manifest settings (unknown keys are errors)."""


class SnapshotHeader(msgspec.Struct, kw_only=True):
    """First line of a snapshot / export file."""

    format: str = SNAPSHOT_FORMAT
    format_version: int = SNAPSHOT_VERSION
    revision: int = 0
    applied_index: int = 0
    compacted_revision: int = 0
    records: int = 0


class Storage(ABC):
    """An async, versioned document store with a change feed."""

    #: The name the manifest uses (``[storage] use = "…"``).
    name: ClassVar[str]
    #: The pydantic model that validates this provider's manifest section.
    Settings: ClassVar[type[StorageSettings]] = StorageSettings
    #: True when several nodes may use one instance of the store at once (Postgres,
    #: Redis, S3). Raft refuses a shared store: each node must own its copy.
    shared: ClassVar[bool] = False
    #: True when :meth:`snapshot` reads the records and ``applied_index`` in one
    #: consistent read, so commits may go on while it runs (raft then compacts its log
    #: without pausing); otherwise the caller keeps commits out meanwhile.
    snapshot_is_consistent: ClassVar[bool] = False

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Connect, create or migrate the schema. Called once before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release connections and files. Idempotent."""

    def group(self) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with storage.group():`` — the commits this task makes inside may share
        one trip to the disk: they become durable, and visible to other readers and to
        :meth:`changes`, together when the block ends; inside it, this task reads its own
        commits. A commit that fails takes back only its own writes; if the block ends
        with an exception, or its final flush fails, none of it is kept. The transport
        acknowledges the commands only after the block. Default: every commit stands on
        its own (the block does nothing)."""
        return contextlib.nullcontext()

    async def rely_on_log(self) -> None:  # noqa: B027 - optional hook, empty by default
        """The transport keeps its own fsynced log of every command and re-applies it from
        :meth:`applied_index` after a crash (raft does). A backend may then stop forcing
        each commit to disk, provided a commit stays atomic with the applied index it
        records. Called after :meth:`open`, before the first commit."""

    # -- writes ----------------------------------------------------------------------

    @abstractmethod
    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        """Atomically check every write's ``expected_version`` and append the records.

        :param writes: the writes, at most one per ``(kind, name)``; may be empty (then
            only the log index is recorded).
        :param log_index: the position of the command in a replicated log, or ``None``
            for a transport without one (then no idempotence check is made).
        :returns: the written records with their versions and revisions; or a
            ``conflict`` rejection naming the first write whose expectation failed
            (and nothing written); or ``replayed=True``.
        """

    # -- reads -----------------------------------------------------------------------

    @abstractmethod
    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        """Version ``version`` of a document (latest, tombstones included, if ``None``)."""

    @abstractmethod
    async def history(self, kind: str, name: str) -> list[Record]:
        """Every version of a document, oldest first; empty if it never existed."""

    @abstractmethod
    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        """Latest versions of documents of ``kind`` whose name starts with ``prefix``.

        Ordered by name; names ``<= after`` are skipped; tombstoned documents are left
        out; at most ``limit`` records.
        """

    @abstractmethod
    async def revision(self) -> int:
        """The revision of the newest record (0 for an empty store)."""

    @abstractmethod
    async def applied_index(self) -> int:
        """The highest log index committed (0 if none)."""

    # -- change feed ---------------------------------------------------------------

    @abstractmethod
    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        """Records with revision ``> revision``, in revision order, at most ``limit``.

        History is never deleted, so this answers for any revision; the feed's
        compaction rule is applied by :meth:`changes`.
        """

    @abstractmethod
    async def compacted_revision(self) -> int:
        """Changes at or below this revision are no longer served by the feed."""

    @abstractmethod
    async def compact(self, revision: int) -> None:
        """Stop serving the feed at or below ``revision`` (history of documents stays)."""

    async def wait_for_change(self, revision: int, timeout: float) -> None:
        """Return once the store's revision may be above ``revision``, or after ``timeout``.

        The default suits stores that only this process writes (commits call
        :meth:`_notify`). Shared stores override it with their own signal (LISTEN/NOTIFY,
        a stream read, polling).
        """
        if await self.revision() > revision:
            return
        self._changed.clear()
        if await self.revision() > revision:
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # that arrives as the event fires, and a cancelled feed would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def _notify(self) -> None:
        """Wake :meth:`wait_for_change`; call after every commit that wrote records."""
        self._changed.set()

    async def changes(self, since: int, limit: int = 1000) -> list[Record]:
        """The change feed after revision ``since``, at most ``limit`` records.

        :raises Compacted: when ``since`` is below :meth:`compacted_revision` (the caller
            missed changes the feed no longer serves and must re-read a snapshot).
        """
        oldest = await self.compacted_revision()
        if since < oldest:
            raise Compacted(
                f"revision {since} is compacted; the oldest revision kept is {oldest}",
                oldest_revision=oldest,
            )
        return await self.records_since(since, limit)

    async def feed(self, since: int, *, poll: float = 1.0) -> AsyncIterator[ChangeEvent]:
        """Every change after revision ``since``: first what is stored, then live, forever.

        :raises Compacted: if ``since`` is older than what the feed keeps.
        """
        cursor = since
        while True:
            batch = await self.changes(cursor)
            for record in batch:
                yield ChangeEvent.from_record(record)
                cursor = record.revision
            if not batch:
                await self.wait_for_change(cursor, poll)

    # -- snapshots -----------------------------------------------------------------

    @abstractmethod
    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        """Atomically replace the whole store with ``records`` (given in revision order)."""

    async def snapshot(self) -> AsyncIterator[bytes]:
        """The whole store as JSON lines: a :class:`SnapshotHeader`, then every record.

        The format is the same for every backend, so a snapshot is also the portable
        export file that moves a deployment between backends.
        """
        records: list[Record] = []
        cursor = 0
        compacted = await self.compacted_revision()
        while batch := await self.records_since(cursor):
            records.extend(batch)
            cursor = batch[-1].revision
        header = SnapshotHeader(
            revision=cursor,
            applied_index=await self.applied_index(),
            compacted_revision=compacted,
            records=len(records),
        )
        yield msgspec.json.encode(header) + b"\n"
        for record in records:
            yield msgspec.json.encode(record) + b"\n"

    async def restore(self, chunks: AsyncIterable[bytes]) -> SnapshotHeader:
        """Replace the store with a snapshot made by :meth:`snapshot` (any backend's).

        :raises BadRequest: if the data is not a well-formed snapshot; nothing changes.
        """
        buffer = b""
        lines: list[bytes] = []
        async for chunk in chunks:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines.extend(line for line in complete if line.strip())
        if buffer.strip():
            lines.append(buffer)
        header, records = parse_snapshot(lines)
        await self.replace_all(
            records,
            applied_index=header.applied_index,
            compacted_revision=header.compacted_revision,
        )
        self._notify()
        return header


def parse_snapshot(lines: Sequence[bytes]) -> tuple[SnapshotHeader, list[Record]]:
    """Decode and check a snapshot; every problem is a :class:`BadRequest` naming the line."""
    if not lines:
        raise BadRequest("snapshot is empty: expected a header line")
    try:
        header = msgspec.json.decode(lines[0], type=SnapshotHeader)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"snapshot line 1: not a snapshot header ({exc})") from None
    if header.format != SNAPSHOT_FORMAT or header.format_version != SNAPSHOT_VERSION:
        raise BadRequest(
            f"snapshot line 1: format {header.format!r} version {header.format_version} "
            f"is not {SNAPSHOT_FORMAT!r} version {SNAPSHOT_VERSION}"
        )
    records: list[Record] = []
    expected_versions: dict[tuple[str, str], int] = {}
    previous = 0
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = msgspec.json.decode(line, type=Record)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"snapshot line {number}: bad record ({exc})") from None
        if record.revision != previous + 1:
            raise BadRequest(
                f"snapshot line {number}: revision {record.revision} does not follow "
                f"{previous} (revisions are gap-free)"
            )
        key = (record.kind, record.name)
        want = expected_versions.get(key, 0) + 1
        if record.version != want:
            raise BadRequest(
                f"snapshot line {number}: {record.kind} {record.name!r} has version "
                f"{record.version}, expected {want}"
            )
        expected_versions[key] = record.version
        previous = record.revision
        records.append(record)
    if len(records) != header.records:
        raise BadRequest(
            f"snapshot is truncated: header promises {header.records} records, "
            f"found {len(records)}"
        )
    return header, records


def record_fields(record: Record) -> dict[str, Any]:
    """A record as plain builtins (for backends that store JSON)."""
    return msgspec.to_builtins(record)  # type: ignore[no-any-return]
