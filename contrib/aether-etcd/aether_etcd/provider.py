"""``[storage] use = "etcd"``: Aether's versioned documents in an etcd cluster.

Several stateless Aether nodes (each with the ``local`` transport) share one etcd, which
orders their writes: the *shared-database* shape, on an engine many teams already run.

Keys, under the deployment's ``prefix`` (``<gen>`` is the generation, see restore)::

    meta                               {"gen", "revision", "applied", "compacted"}
    g<gen>/log/<revision:020>          the record written at that revision (the feed)
    g<gen>/ver/<kind>␀<name>␀<v:010>   version v of a document
    g<gen>/head/<kind>␀<name>          the latest version of a document

**One linearization point.** Every commit is an etcd transaction that compares the
``meta`` key's ``mod_revision`` with the one read before, and writes ``meta`` with the
new revision and applied log index together with the records. Two nodes racing both
read the same ``meta``; etcd lets exactly one transaction through and the other
re-reads and retries — so revisions stay gap-free and every expected-version check is
made against the state the transaction commits on. etcd acknowledges a transaction
once a majority of its members have it on disk.

**Reads** are one unconditional transaction that reads ``meta`` beside the keys asked
for, so each read sees one etcd revision and learns the generation it must use.

**Restore** writes the snapshot under a fresh generation in as many transactions as
``--max-txn-ops`` needs, then flips ``meta`` to it in one compare-and-set and deletes
the old generation. Readers switch at the flip; a crash before it leaves the old data
in force (and the half-written generation is cleared by the next restore).

**Change feed**: the records ordered by revision are the log; waiting for other nodes'
commits polls ``meta`` every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import msgspec
import structlog
from aether_core.errors import BadRequest, StorageFault
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Write
from aether_core.storage.base import Storage
from aether_core.storage.memory import check_expectations

from aether_etcd.gateway import (
    Gateway,
    KeyValue,
    delete_op,
    kvs,
    prefix_end,
    put_op,
    range_op,
    unchanged,
)
from aether_etcd.settings import EtcdSettings

log = structlog.get_logger("aether.etcd")

#: Compare-and-set attempts of one commit before it reports contention as a fault.
MAX_ATTEMPTS = 200


class Meta(msgspec.Struct, kw_only=True):
    gen: int = 0
    revision: int = 0
    applied: int = 0
    compacted: int = 0


_meta_decode = msgspec.json.Decoder(Meta).decode
_record_decode = msgspec.json.Decoder(Record).decode
_encode = msgspec.json.Encoder().encode


class EtcdStorage(Storage):
    name: ClassVar[str] = "etcd"
    Settings = EtcdSettings
    shared: ClassVar[bool] = True

    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "aether/",
        *,
        timeout: float = 5.0,
        poll_interval: float = 0.2,
        max_txn_ops: int = 128,
    ) -> None:
        super().__init__()
        self.endpoints = endpoints
        self.prefix = prefix.encode()
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_txn_ops = max_txn_ops
        self._gateway: Gateway | None = None
        self._gen = 0

    def __repr__(self) -> str:
        return f"EtcdStorage(endpoints={self.endpoints!r}, prefix={self.prefix.decode()!r})"

    @classmethod
    def from_settings(cls, settings: EtcdSettings, node: NodeInfo) -> EtcdStorage:
        return cls(settings.endpoints, settings.prefix, timeout=settings.timeout,
                   poll_interval=settings.poll_interval, max_txn_ops=settings.max_txn_ops)

    # -- keys --------------------------------------------------------------------------

    @property
    def _meta_key(self) -> bytes:
        return self.prefix + b"meta"

    def _space(self, gen: int) -> bytes:
        return self.prefix + b"g%d/" % gen

    def _log_key(self, gen: int, revision: int) -> bytes:
        return self._space(gen) + b"log/%020d" % revision

    def _doc(self, kind: str, name: str) -> bytes:
        return kind.encode() + b"\x00" + name.encode()

    def _head_key(self, gen: int, kind: str, name: str) -> bytes:
        return self._space(gen) + b"head/" + self._doc(kind, name)

    def _ver_prefix(self, gen: int, kind: str, name: str) -> bytes:
        return self._space(gen) + b"ver/" + self._doc(kind, name) + b"\x00"

    def _record_ops(self, gen: int, record: Record) -> list[dict[str, Any]]:
        data = _encode(record)
        return [
            put_op(self._log_key(gen, record.revision), data),
            put_op(self._ver_prefix(gen, record.kind, record.name) + b"%010d" % record.version,
                   data),
            put_op(self._head_key(gen, record.kind, record.name), data),
        ]

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise StorageFault("etcd storage is not open")
        return self._gateway

    async def open(self) -> None:
        self._gateway = Gateway(self.endpoints, timeout=self.timeout)
        # Create meta if this is a new deployment; an existing one is left as it is.
        await self.gateway.txn([unchanged(self._meta_key, 0)],
                               [put_op(self._meta_key, _encode(Meta()))])
        meta, _ = await self._meta()
        self._gen = meta.gen
        log.info("etcd storage open", endpoints=self.endpoints, prefix=self.prefix.decode(),
                 revision=meta.revision)

    async def close(self) -> None:
        if self._gateway is not None:
            gateway, self._gateway = self._gateway, None
            await gateway.close()

    # -- reading -----------------------------------------------------------------------

    async def _read(
        self, build: Callable[[int], list[dict[str, Any]]]
    ) -> tuple[Meta, int, list[list[KeyValue]]]:
        """``meta``, its mod_revision and the ranges ``build(gen)`` asks for, all at one
        etcd revision and in the generation ``meta`` names."""
        for _ in range(10):
            gen = self._gen
            responses = await self.gateway.read([range_op(self._meta_key), *build(gen)])
            meta_kvs = kvs(responses[0])
            if not meta_kvs:
                raise StorageFault(f"etcd key {self._meta_key.decode()!r} is missing: the "
                                   "deployment's data was deleted outside Aether")
            meta = _decode_meta(meta_kvs[0].value)
            if meta.gen == gen:
                return meta, meta_kvs[0].mod_revision, [kvs(r) for r in responses[1:]]
            self._gen = meta.gen  # a restore elsewhere switched generations: read again
        raise StorageFault("etcd storage: the generation kept changing while reading")

    async def _meta(self) -> tuple[Meta, int]:
        meta, mod, _ = await self._read(lambda gen: [])
        return meta, mod

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        if version is not None and version < 1:
            return None

        def build(gen: int) -> list[dict[str, Any]]:
            if version is None:
                return [range_op(self._head_key(gen, kind, name))]
            return [range_op(self._ver_prefix(gen, kind, name) + b"%010d" % version)]

        _, _, [found] = await self._read(build)
        return _decode_record(found[0].value) if found else None

    async def history(self, kind: str, name: str) -> list[Record]:
        def build(gen: int) -> list[dict[str, Any]]:
            start = self._ver_prefix(gen, kind, name)
            return [range_op(start, prefix_end(start))]

        _, _, [found] = await self._read(build)
        return [_decode_record(kv.value) for kv in found]

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        out: list[Record] = []
        batch = max(limit, 64)
        resume: bytes | None = None
        while len(out) < limit:

            def build(gen: int, resume: bytes | None = resume) -> list[dict[str, Any]]:
                base = self._space(gen) + b"head/" + kind.encode() + b"\x00"
                start = base + prefix.encode()
                if after is not None:
                    start = max(start, base + after.encode() + b"\x00")
                if resume is not None:
                    start = max(start, resume)
                return [range_op(start, prefix_end(base + prefix.encode()), limit=batch)]

            _, _, [found] = await self._read(build)
            for kv in found:
                record = _decode_record(kv.value)
                if not record.deleted:
                    out.append(record)
                    if len(out) == limit:
                        break
            if len(found) < batch:
                break
            resume = found[-1].key + b"\x00"
        return out

    async def revision(self) -> int:
        return (await self._meta())[0].revision

    async def applied_index(self) -> int:
        return (await self._meta())[0].applied

    async def compacted_revision(self) -> int:
        return (await self._meta())[0].compacted

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        def build(gen: int) -> list[dict[str, Any]]:
            start = self._log_key(gen, max(revision, 0) + 1)
            return [range_op(start, prefix_end(self._space(gen) + b"log/"), limit=limit)]

        _, _, [found] = await self._read(build)
        return [_decode_record(kv.value) for kv in found]

    async def wait_for_change(self, revision: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self._meta())[0].revision <= revision:
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(self.poll_interval, left))

    # -- writing -----------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        ops_needed = 3 * len(writes) + 1
        if ops_needed > self.max_txn_ops:
            raise BadRequest(
                f"a command of {len(writes)} documents needs {ops_needed} etcd operations; "
                f"[storage] max_txn_ops is {self.max_txn_ops} (raise it with etcd's "
                "--max-txn-ops)")
        for attempt in range(MAX_ATTEMPTS):

            def build(gen: int) -> list[dict[str, Any]]:
                return [range_op(self._head_key(gen, w.kind, w.name)) for w in writes]

            meta, meta_mod, found = await self._read(build)
            if log_index is not None and log_index <= meta.applied:
                return CommitResult(replayed=True)
            current = {(w.kind, w.name): _decode_record(f[0].value).version if f else 0
                       for w, f in zip(writes, found, strict=True)}
            rejection = check_expectations(writes, current)
            records = [] if rejection else [
                w.to_record(meta.revision + i) for i, w in enumerate(writes, start=1)]
            if log_index is None and not records:
                return CommitResult(rejection=rejection)
            new = Meta(gen=meta.gen, revision=meta.revision + len(records),
                       applied=meta.applied if log_index is None else log_index,
                       compacted=meta.compacted)
            ops = [put_op(self._meta_key, _encode(new))]
            for record in records:
                ops.extend(self._record_ops(meta.gen, record))
            ok, _ = await self.gateway.txn([unchanged(self._meta_key, meta_mod)], ops)
            if ok:
                if records:
                    self._notify()
                return CommitResult(records=records, rejection=rejection)
            # Another node committed in between: re-read and decide again.
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
        raise StorageFault(f"etcd commit gave up after {MAX_ATTEMPTS} conflicting attempts")

    async def _update_meta(self, change: Callable[[Meta], Meta]) -> None:
        for _ in range(MAX_ATTEMPTS):
            meta, mod = await self._meta()
            new = change(meta)
            ok, _ = await self.gateway.txn([unchanged(self._meta_key, mod)],
                                           [put_op(self._meta_key, _encode(new))])
            if ok:
                return
        raise StorageFault(f"etcd meta update gave up after {MAX_ATTEMPTS} attempts")

    async def compact(self, revision: int) -> None:
        def change(meta: Meta) -> Meta:
            compacted = max(meta.compacted, min(revision, meta.revision))
            return msgspec.structs.replace(meta, compacted=compacted)

        await self._update_meta(change)

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        meta, meta_mod = await self._meta()
        new_gen = meta.gen + 1
        space = self._space(new_gen)
        await self.gateway.txn([], [delete_op(space, prefix_end(space))])
        ops: list[dict[str, Any]] = []
        heads: dict[tuple[str, str], Record] = {}
        revision = 0

        async def add(more: list[dict[str, Any]]) -> None:
            nonlocal ops
            if len(ops) + len(more) > self.max_txn_ops:
                await self.gateway.txn([], ops)
                ops = []
            ops.extend(more)

        # etcd refuses a transaction that writes one key twice: each head goes in once.
        for record in records:
            await add(self._record_ops(new_gen, record)[:2])
            heads[(record.kind, record.name)] = record
            revision = record.revision
        for record in heads.values():
            await add(self._record_ops(new_gen, record)[2:])
        if ops:
            await self.gateway.txn([], ops)
        flipped = Meta(gen=new_gen, revision=revision, applied=applied_index,
                       compacted=compacted_revision)
        ok, _ = await self.gateway.txn([unchanged(self._meta_key, meta_mod)],
                                       [put_op(self._meta_key, _encode(flipped))])
        if not ok:
            await self.gateway.txn([], [delete_op(space, prefix_end(space))])
            raise StorageFault("etcd storage changed while the snapshot was restored; "
                               "nothing was replaced, retry the restore")
        old = self._space(meta.gen)
        await self.gateway.txn([], [delete_op(old, prefix_end(old))])
        self._gen = new_gen
        log.info("etcd storage restored", revision=revision, generation=new_gen)


def _decode_meta(data: bytes) -> Meta:
    try:
        return _meta_decode(data)
    except msgspec.DecodeError as exc:
        raise StorageFault(f"etcd storage: the meta key is corrupt ({exc})") from None


def _decode_record(data: bytes) -> Record:
    try:
        return _record_decode(data)
    except msgspec.DecodeError as exc:
        raise StorageFault(f"etcd storage: a stored record is corrupt ({exc})") from None
