"""``s3``: the storage contract on an S3 bucket shared by several Aether nodes.

S3 has no transactions and no counters; what it has is a conditional create: a PUT with
``If-None-Match: *`` succeeds for exactly one writer of a key and answers 412 to every
other. The whole design rests on that one primitive.

**The commit log is the store.** Under ``<prefix>gen/<generation>/log/`` the objects
``000000000001.json``, ``000000000002.json`` … are *log entries*, numbered by a dense
sequence. Each is immutable once written and holds one commit: its records (each with
its version and revision), and the store's state after it — top revision, applied log
index, compacted revision. Every record lives in exactly one immutable object.

**Commit point.** To commit, a node reads the entries it has not seen yet (so it knows
the latest entry ``n`` and the state after it), checks the log index and every expected
version against that state, numbers its records from the top revision on, and creates
entry ``n + 1`` with ``If-None-Match: *``. If that PUT succeeds, the commit happened, all
of its records at once: a multi-write commit is one object. If it fails with 412, some
other node committed entry ``n + 1`` first: the node reads it and decides again on the
new state — the same expected version may now be a conflict, which is returned as a
rejection like on every backend.

* Revisions are gap-free because entry ``n + 1`` is always numbered from the state after
  entry ``n``, and only one entry ``n + 1`` can exist; a node with a stale view collides
  with an existing entry instead of skipping or reusing numbers.
* Versions never repeat for the same reason: the check and the write are one object.
* A PUT whose reply was lost is retried by boto3 and then meets 412 on its own entry;
  each entry carries a random ``token``, so the node recognises its own commit.
* An empty commit (or a refused one) that carries a log index still writes an entry, so
  :meth:`applied_index` is shared state. So does :meth:`compact`.

**Reads** replay new entries into an in-memory index (the kernel's ``MemoryStorage``)
and answer from it: each read costs one GET of the next entry key (a 404 when nothing
changed). Every node therefore holds the whole history in memory and, at start, reads
the log from its beginning (a restore rewrites the log as one entry).

**Change feed.** :meth:`S3Storage.wait_for_change` polls for the next entry every
``poll_interval`` seconds (and wakes at once for this node's own commits). A watcher's
cursor is a revision; the feed is the log read by revision, so polling can be late but
never loses or repeats a change.

**replace_all** (restore, import) writes the new state as entry 1 of a fresh generation
``<prefix>gen/<random>/``, then appends a *move* entry to the current log that names the
new generation, with the same conditional create. Nodes that read the move entry switch
generations; the switch is atomic because the move entry is one conditional object.
``<prefix>current`` is a hint to the newest generation so a starting node need not read
dead generations; it may lag, never lead, since it is written after the move entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import boto3
import msgspec
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aether_core.errors import StorageFault
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Write
from aether_core.storage.base import Storage
from aether_core.storage.memory import MemoryStorage, check_expectations
from aether_s3.settings import S3Settings

log = structlog.get_logger("aether.storage.s3")

T = TypeVar("T")

FIRST_GENERATION = "0"


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> Any:
    """One boto3 session per process, made on first use: it caches the service models,
    which take a third of a second to load for every new session."""
    return boto3.session.Session()


class Entry(msgspec.Struct, kw_only=True):
    """One immutable log object: a commit and the store's state after it."""

    seq: int
    token: str
    revision: int
    applied_index: int
    compacted_revision: int
    records: list[Record] = msgspec.field(default_factory=list)
    #: Set on the last entry of a generation: the log continues in that generation.
    moved_to: str | None = None


class Hint(msgspec.Struct):
    generation: str


_decode_entry = msgspec.json.Decoder(Entry).decode
_decode_hint = msgspec.json.Decoder(Hint).decode


#: Makes the next log entry from its number and the state before it (None: write nothing).
Builder = Callable[[int, MemoryStorage], Awaitable["Entry | None"]]


class _Taken(Exception):
    """The conditional create lost: the key exists already."""


class S3Storage(Storage):
    name = "s3"
    Settings = S3Settings
    shared = True

    def __init__(self, settings: S3Settings, *, node_name: str = "node-1") -> None:
        super().__init__()
        self.settings = settings
        self.node_name = node_name
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._generation = FIRST_GENERATION
        self._seq = 0
        self._view = MemoryStorage()
        self._wake_event = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: S3Settings, node: NodeInfo) -> S3Storage:
        return cls(settings, node_name=node.name)

    # -- S3 plumbing -------------------------------------------------------------------

    def _key(self, generation: str, seq: int) -> str:
        return f"{self.settings.prefix}gen/{generation}/log/{seq:012d}.json"

    @property
    def _hint_key(self) -> str:
        return f"{self.settings.prefix}current"

    def _fault(self, action: str, exc: BaseException) -> StorageFault:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            reason = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return StorageFault(f"s3 storage {self.settings.where()}: {action} failed: {reason}")

    async def _s3(self, action: str, fn: Callable[[Any], T]) -> T:
        client = self._client
        if client is None:
            raise StorageFault(f"s3 storage {self.settings.where()} is not open")
        try:
            # boto3 blocks; its client is thread-safe, so each call runs in a worker thread.
            # Shielded so that a cancelled caller never abandons a half-made request.
            return await asyncio.shield(asyncio.to_thread(fn, client))
        except (ClientError, BotoCoreError) as exc:
            raise self._fault(action, exc) from exc

    async def _get(self, key: str) -> bytes | None:
        def call(client: Any) -> bytes | None:
            try:
                body = client.get_object(Bucket=self.settings.bucket, Key=key)["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            with contextlib.closing(body):
                data: bytes = body.read()
            return data

        return await self._s3(f"read {key}", call)

    async def _create(self, key: str, data: bytes) -> None:
        """Create ``key``; :class:`_Taken` if it exists (the conditional-write primitive)."""

        def call(client: Any) -> bool:
            try:
                client.put_object(Bucket=self.settings.bucket, Key=key, Body=data,
                                  IfNoneMatch="*", ContentType="application/json")
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                code = exc.response.get("Error", {}).get("Code")
                # 412: someone else created it. 409: a concurrent conditional write to
                # the same key is in flight (AWS); treat it as lost too and re-read.
                if status in (409, 412) or code in ("PreconditionFailed",
                                                    "ConditionalRequestConflict"):
                    return False
                raise
            return True

        if not await self._s3(f"create {key}", call):
            raise _Taken(key)

    async def _put(self, key: str, data: bytes) -> None:
        await self._s3(f"write {key}", lambda c: c.put_object(
            Bucket=self.settings.bucket, Key=key, Body=data, ContentType="application/json"))

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        config = Config(
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            retries={"max_attempts": s.max_attempts, "mode": "standard"},
            max_pool_connections=s.pool_size,
            s3={"addressing_style": s.addressing_style},
        )

        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        def make_client() -> Any:
            with _SESSION_LOCK:  # a boto3 Session may not build clients in two threads
                return _session().client(
                    "s3",
                    endpoint_url=s.endpoint_url,
                    region_name=s.region,
                    aws_access_key_id=secret(s.access_key_id),
                    aws_secret_access_key=secret(s.secret_access_key),
                    aws_session_token=secret(s.session_token),
                    verify=s.ca_bundle if s.ca_bundle else s.verify_tls,
                    config=config,
                )

        self._client = await asyncio.to_thread(make_client)
        try:
            if s.create_bucket:
                await self._ensure_bucket()
            await self._s3("check bucket", lambda c: c.head_bucket(Bucket=s.bucket))
            hint = await self._get(self._hint_key)
            self._generation = _decode_hint(hint).generation if hint else FIRST_GENERATION
            async with self._lock:
                await self._refresh()
        except BaseException:
            await self.close()
            raise
        log.info("s3 storage open", store=s.where(), endpoint=s.endpoint_url or "aws",
                 generation=self._generation, revision=await self._view.revision())

    async def _ensure_bucket(self) -> None:
        s = self.settings

        def call(client: Any) -> None:
            try:
                client.head_bucket(Bucket=s.bucket)
            except ClientError:
                extra = ({} if s.region == "us-east-1" else
                         {"CreateBucketConfiguration": {"LocationConstraint": s.region}})
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=s.bucket, **extra)

        await self._s3("create bucket", call)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- the log -----------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Replay entries this node has not seen yet. Call with ``self._lock`` held."""
        while True:
            data = await self._get(self._key(self._generation, self._seq + 1))
            if data is None:
                return
            entry = self._parse(data)
            if entry.moved_to is not None:
                log.info("s3 storage moved to a new generation", store=self.settings.where(),
                         generation=entry.moved_to)
                self._generation, self._seq, self._view = entry.moved_to, 0, MemoryStorage()
                self._notify()
                continue
            await self._apply(entry)

    def _parse(self, data: bytes) -> Entry:
        try:
            entry = _decode_entry(data)
        except msgspec.DecodeError as exc:
            raise StorageFault(f"s3 storage {self.settings.where()}: log entry "
                               f"{self._seq + 1} of generation {self._generation} is "
                               f"corrupt ({exc})") from None
        if entry.seq != self._seq + 1:
            raise StorageFault(f"s3 storage {self.settings.where()}: log entry "
                               f"{self._seq + 1} says it is entry {entry.seq}")
        return entry

    async def _apply(self, entry: Entry) -> None:
        view = self._view
        for record in entry.records:
            written = await view.commit([Write(
                kind=record.kind, name=record.name, expected_version=record.version - 1,
                value=record.value, deleted=record.deleted, author=record.author,
                comment=record.comment, timestamp=record.timestamp, meta=record.meta)])
            if written.rejection is not None or written.records[0] != record:
                raise StorageFault(f"s3 storage {self.settings.where()}: log entry "
                                   f"{entry.seq} does not follow its predecessor")
        if entry.applied_index > await view.applied_index():
            await view.commit([], log_index=entry.applied_index)
        await view.compact(entry.compacted_revision)
        self._seq = entry.seq
        if entry.records:
            self._notify()

    async def _append(self, build: Builder) -> Entry | None:
        """Append the entry ``build`` makes from the latest state, retrying after a lost race.

        ``build(seq, state)`` returns the entry to write, or ``None`` when nothing needs
        writing. Call with ``self._lock`` held.
        """
        while True:
            await self._refresh()
            entry = await build(self._seq + 1, self._view)
            if entry is None:
                return None
            key = self._key(self._generation, entry.seq)
            try:
                await self._create(key, msgspec.json.encode(entry))
            except _Taken:
                # Another node took this entry — or it is ours and the reply was lost.
                data = await self._get(key)
                if data is None or self._parse(data).token != entry.token:
                    continue
            if entry.moved_to is None:
                await self._apply(entry)
            else:
                await self._refresh()  # reads the move entry back and switches generation
            return entry

    # -- writes ------------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        token = uuid.uuid4().hex
        outcome = CommitResult()

        async def build(seq: int, state: MemoryStorage) -> Entry | None:
            nonlocal outcome
            applied = await state.applied_index()
            if log_index is not None and log_index <= applied:
                outcome = CommitResult(replayed=True)
                return None
            current = {}
            for w in writes:
                head = await state.get(w.kind, w.name)
                current[(w.kind, w.name)] = head.version if head else 0
            rejection = check_expectations(writes, current)
            revision = await state.revision()
            records = [] if rejection else [
                w.to_record(revision + 1 + i) for i, w in enumerate(writes)]
            outcome = CommitResult(records=records, rejection=rejection)
            if not records and log_index is None:
                return None  # nothing to record: a refusal or an empty commit
            return Entry(seq=seq, token=token, revision=revision + len(records),
                         applied_index=applied if log_index is None else log_index,
                         compacted_revision=await state.compacted_revision(),
                         records=records)

        async with self._lock:
            await self._append(build)
        return outcome

    async def compact(self, revision: int) -> None:
        async def build(seq: int, state: MemoryStorage) -> Entry | None:
            top, compacted = await state.revision(), await state.compacted_revision()
            target = max(compacted, min(revision, top))
            if target == compacted:
                return None
            return Entry(seq=seq, token=uuid.uuid4().hex, revision=top,
                         applied_index=await state.applied_index(),
                         compacted_revision=target)

        async with self._lock:
            await self._append(build)

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        items = list(records)
        generation = uuid.uuid4().hex
        first = Entry(seq=1, token=uuid.uuid4().hex, revision=items[-1].revision if items else 0,
                      applied_index=applied_index, compacted_revision=compacted_revision,
                      records=items)
        await self._create(self._key(generation, 1), msgspec.json.encode(first))
        token = uuid.uuid4().hex

        async def move(seq: int, state: MemoryStorage) -> Entry:
            return Entry(seq=seq, token=token, revision=await state.revision(),
                         applied_index=await state.applied_index(),
                         compacted_revision=await state.compacted_revision(),
                         moved_to=generation)

        async with self._lock:
            await self._append(move)
        await self._put(self._hint_key, msgspec.json.encode(Hint(generation)))
        self._notify()

    # -- reads -------------------------------------------------------------------------

    async def _fresh(self) -> MemoryStorage:
        async with self._lock:
            await self._refresh()
            return self._view

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        return await (await self._fresh()).get(kind, name, version)

    async def history(self, kind: str, name: str) -> list[Record]:
        return await (await self._fresh()).history(kind, name)

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        return await (await self._fresh()).heads(kind, prefix, after=after, limit=limit)

    async def revision(self) -> int:
        return await (await self._fresh()).revision()

    async def applied_index(self) -> int:
        return await (await self._fresh()).applied_index()

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        return await (await self._fresh()).records_since(revision, limit)

    async def compacted_revision(self) -> int:
        return await (await self._fresh()).compacted_revision()

    # -- change feed -------------------------------------------------------------------

    def _notify(self) -> None:
        event, self._wake_event = self._wake_event, asyncio.Event()
        event.set()

    async def wait_for_change(self, revision: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._wake_event  # taken before the read: a later commit sets it
            if await self.revision() > revision:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            # asyncio.timeout, not wait_for: see RedisStorage.wait_for_change (3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.settings.poll_interval, remaining)):
                    await event.wait()
