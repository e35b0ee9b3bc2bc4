"""``[storage] use = "etcd"``: Aether storage over an etcd cluster, through its HTTP/JSON gateway.

The template starts you with a store that keeps everything in the process, written
method by method against :class:`aether_core.storage.base.Storage` so that each place
to call your backend is plain to see. Replace the dictionaries with your backend's
calls; the contract kit in ``tests/`` tells you when a rule is broken. Read the rules
in the docstring of :mod:`aether_core.storage.base` first: atomic compare-and-set per
commit, gap-free global revisions, idempotence by log index, raise on faults.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Rejection, Write
from aether_core.storage.base import Storage, StorageSettings
from pydantic import Field


class EtcdStorageSettings(StorageSettings):
    """The ``[storage]`` keys besides ``use``; unknown keys are manifest errors."""

    #: Keeps deployments that share one backend apart.
    namespace: str = Field(default="aether", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


class EtcdStorage(Storage):
    name: ClassVar[str] = "etcd"
    Settings = EtcdStorageSettings
    #: True once several nodes can use one backend at a time (a real database).
    shared: ClassVar[bool] = False

    def __init__(self, namespace: str = "aether") -> None:
        super().__init__()
        self.namespace = namespace
        self._log: list[Record] = []  # revision n is self._log[n - 1]
        self._docs: dict[tuple[str, str], list[Record]] = {}
        self._applied = 0
        self._compacted = 0

    @classmethod
    def from_settings(
        cls, settings: EtcdStorageSettings, node: NodeInfo
    ) -> EtcdStorage:
        return cls(settings.namespace)

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        # A real backend does all of this in one transaction (or one compare-and-set).
        if log_index is not None and log_index <= self._applied:
            return CommitResult(replayed=True)
        for write in writes:
            current = len(self._docs.get((write.kind, write.name), ()))
            if current != write.expected_version:
                if log_index is not None:
                    self._applied = log_index
                return CommitResult(rejection=Rejection(
                    code="conflict", kind=write.kind, name=write.name,
                    detail=f"{write.kind} {write.name!r} is at version {current}, "
                           f"the write expected {write.expected_version}",
                    expected_version=write.expected_version, current_version=current))
        records = []
        for write in writes:
            record = write.to_record(len(self._log) + 1)
            self._log.append(record)
            self._docs.setdefault((record.kind, record.name), []).append(record)
            records.append(record)
        if log_index is not None:
            self._applied = log_index
        if records:
            self._notify()
        return CommitResult(records=records)

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        versions = self._docs.get((kind, name), [])
        if version is None:
            return versions[-1] if versions else None
        return versions[version - 1] if 1 <= version <= len(versions) else None

    async def history(self, kind: str, name: str) -> list[Record]:
        return list(self._docs.get((kind, name), []))

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        names = sorted(n for k, n in self._docs if k == kind and n.startswith(prefix)
                       and (after is None or n > after))
        heads = (self._docs[(kind, n)][-1] for n in names)
        return [head for head in heads if not head.deleted][:limit]

    async def revision(self) -> int:
        return len(self._log)

    async def applied_index(self) -> int:
        return self._applied

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        start = max(revision, 0)
        return self._log[start:start + limit]

    async def compacted_revision(self) -> int:
        return self._compacted

    async def compact(self, revision: int) -> None:
        self._compacted = max(self._compacted, min(revision, len(self._log)))

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        self._log, self._docs = [], {}
        for record in records:
            self._log.append(record)
            self._docs.setdefault((record.kind, record.name), []).append(record)
        self._applied, self._compacted = applied_index, compacted_revision
