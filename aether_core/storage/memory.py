"""``memory``: a store that lives in the process. For tests, embedding and Raft nodes
that rebuild state from their log and snapshots."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from aether_core.records import CommitResult, Record, Rejection, Write
from aether_core.storage.base import Storage, StorageSettings


class MemorySettings(StorageSettings):
    """``[storage] use = "memory"`` takes no settings."""


def check_expectations(
    writes: Sequence[Write], current: dict[tuple[str, str], int]
) -> Rejection | None:
    """The first write whose expected version differs from ``current``, as a rejection."""
    for write in writes:
        actual = current.get((write.kind, write.name), 0)
        if actual != write.expected_version:
            return Rejection(
                code="conflict",
                detail=(
                    f"{write.kind} {write.name!r} is at version {actual}, "
                    f"the write expected {write.expected_version}"
                ),
                kind=write.kind,
                name=write.name,
                expected_version=write.expected_version,
                current_version=actual,
            )
    return None


class MemoryStorage(Storage):
    name = "memory"
    Settings = MemorySettings

    def __init__(self, settings: MemorySettings | None = None) -> None:
        super().__init__()
        self._log: list[Record] = []  # index i holds revision i + 1
        self._docs: dict[tuple[str, str], list[Record]] = {}
        self._names: dict[str, list[str]] = {}  # kind -> sorted names
        self._applied = 0
        self._compacted = 0

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        if log_index is not None and log_index <= self._applied:
            return CommitResult(replayed=True)
        current = {
            (w.kind, w.name): len(self._docs.get((w.kind, w.name), ())) for w in writes
        }
        rejection = check_expectations(writes, current)
        if log_index is not None:
            self._applied = log_index
        if rejection:
            return CommitResult(rejection=rejection)
        written = [self._append(w.to_record(len(self._log) + 1)) for w in writes]
        if written:
            self._notify()
        return CommitResult(records=written)

    def _append(self, record: Record) -> Record:
        self._log.append(record)
        key = (record.kind, record.name)
        if key not in self._docs:
            self._docs[key] = []
            bisect.insort(self._names.setdefault(record.kind, []), record.name)
        self._docs[key].append(record)
        return record

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        versions = self._docs.get((kind, name))
        if not versions:
            return None
        if version is None:
            return versions[-1]
        return versions[version - 1] if 1 <= version <= len(versions) else None

    async def history(self, kind: str, name: str) -> list[Record]:
        return list(self._docs.get((kind, name), ()))

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        names = self._names.get(kind, [])
        start = bisect.bisect_right(names, after) if after is not None else 0
        start = max(start, bisect.bisect_left(names, prefix))
        out: list[Record] = []
        for name in names[start:]:
            if not name.startswith(prefix) or len(out) >= limit:
                break
            head = self._docs[(kind, name)][-1]
            if not head.deleted:
                out.append(head)
        return out

    async def revision(self) -> int:
        return len(self._log)

    async def applied_index(self) -> int:
        return self._applied

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        return self._log[max(revision, 0) : max(revision, 0) + limit]

    async def compacted_revision(self) -> int:
        return self._compacted

    async def compact(self, revision: int) -> None:
        self._compacted = max(self._compacted, min(revision, len(self._log)))

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        self._log, self._docs, self._names = [], {}, {}
        for record in records:
            self._append(record)
        self._applied = applied_index
        self._compacted = compacted_revision
