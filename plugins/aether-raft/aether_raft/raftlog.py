"""The core's in-memory view of the log: a snapshot point followed by entries.

Entries up to ``stable`` are known to be on disk; later ones are waiting for the next
``Ready``. Indexes at or below the snapshot are compacted and have no entry.
"""

from __future__ import annotations

from aether_raft.messages import ConfState, Entry, EntryKind, SnapshotMeta, decode_conf


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: list[Entry]) -> None:
        self.snapshot = snapshot
        self.entries = list(entries)
        self.stable = self.last_index()

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot.index

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """The term of ``index``; ``None`` if it is compacted or beyond the end."""
        if index == self.snapshot.index:
            return self.snapshot.term
        offset = index - self.first_index
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``lo..hi`` inclusive (both must be above the snapshot)."""
        base = self.first_index
        return self.entries[lo - base : hi - base + 1]

    def append(self, entries: list[Entry]) -> None:
        """Append, truncating any suffix that ``entries[0]`` replaces."""
        if not entries:
            return
        start = entries[0].index
        del self.entries[start - self.first_index :]
        self.entries.extend(entries)
        self.stable = min(self.stable, start - 1)

    def unstable(self) -> list[Entry]:
        return self.entries[self.stable + 1 - self.first_index :] if self.entries else []

    def up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log is at least as up to date as ours (§5.4.1)."""
        return (last_term, last_index) >= (self.last_term(), self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index ``<= index`` whose term is ``<= term``, with its term.

        The follower answers a rejected append with it; the leader probes with it.
        """
        index = min(index, self.last_index())
        while index > self.snapshot.index:
            found = self.term(index)
            assert found is not None
            if found <= term:
                return index, found
            index -= 1
        return self.snapshot.index, self.snapshot.term

    def compact(self, meta: SnapshotMeta) -> None:
        """Drop entries up to ``meta.index``; keep the rest if they follow it, else all."""
        if self.term(meta.index) == meta.term:
            self.entries = self.entries[meta.index + 1 - self.first_index :]
        else:
            self.entries = []
        self.stable = max(self.stable, meta.index)
        self.snapshot = meta

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force after ``index`` (the last CONF entry at or before it)."""
        for entry in reversed(self.entries):
            if entry.index <= index and entry.kind is EntryKind.CONF:
                return decode_conf(entry.data)
        return self.snapshot.conf

    def last_conf_index(self) -> int:
        for entry in reversed(self.entries):
            if entry.kind is EntryKind.CONF:
                return entry.index
        return self.snapshot.index
