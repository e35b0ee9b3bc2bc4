"""The durable side of a Raft node: a segmented write-ahead log, a stable store
(term and vote) and the latest snapshot, in one directory.

Why a WAL of our own and not SQLite: the order of fsyncs *is* Raft's safety (a vote
or an acknowledgement may leave only after what it promises is on disk), and a WAL
makes that order explicit — one ``write`` + one ``fsync`` per ``Ready`` whatever the
number of entries (group commit) — and lets the crash-point test run the very same
code over a simulated file system that loses unsynced writes and tears the last one.
SQLite would do the fsyncs inside a black box that such a test cannot crash.

Layout::

    state                       term + vote (replaced atomically: tmp, fsync, rename, dir fsync)
    snap-<index>.snap           the latest snapshot (same atomic replacement)
    wal-<seq>-<first>.log       segments of records

A record is ``<u32 length><u32 crc32 of payload><payload: msgpack Entry>``; a state or
snapshot file is ``<u32 crc32><payload>``. zlib's CRC-32 is in the standard library and
fast; it detects torn and flipped bytes, which is what it is here for.

Recovery: a bad record that runs to the end of the last segment (or is followed only
by zeros) is a torn tail and is cut off; any other bad record is corruption in the
middle and the store refuses to open, naming the file and the offset. Any error of
``fsync`` halts the store for good: the page cache may have dropped the data, so
retrying could acknowledge writes that are lost (the PostgreSQL "fsyncgate" lesson).
"""

from __future__ import annotations

import os
import struct
import zlib

import msgspec

from aether_raft.core import DurableState, HardState
from aether_raft.fs import FileSystem, OsFileSystem
from aether_raft.messages import Entry, Snapshot

_HEADER = struct.Struct("<II")
_CRC = struct.Struct("<I")


class LogCorrupted(Exception):
    """The log has damage that is not a torn tail; the node must not start."""


class StorageHalted(Exception):
    """An fsync failed earlier: the store accepts nothing more; restart the node."""


class _StableRecord(msgspec.Struct, array_like=True):
    term: int
    vote: str | None


class _SnapshotRecord(msgspec.Struct, array_like=True):
    snapshot: Snapshot
    min_segment: int  # segments with a lower sequence number are obsolete


_enc = msgspec.msgpack.Encoder()
_entry_dec = msgspec.msgpack.Decoder(Entry)
_stable_dec = msgspec.msgpack.Decoder(_StableRecord)
_snap_dec = msgspec.msgpack.Decoder(_SnapshotRecord)


def _sealed(payload: bytes) -> bytes:
    return _CRC.pack(zlib.crc32(payload)) + payload


def _unseal(path: str, data: bytes) -> bytes:
    if len(data) < _CRC.size or _CRC.unpack_from(data)[0] != zlib.crc32(data[_CRC.size :]):
        raise LogCorrupted(f"{path}: checksum mismatch at offset 0")
    return data[_CRC.size :]


class LogStore:
    def __init__(
        self,
        directory: str,
        fs: FileSystem | None = None,
        *,
        segment_bytes: int = 8 << 20,
    ) -> None:
        self.dir = directory.rstrip("/")
        self.fs: FileSystem = fs or OsFileSystem()
        self.segment_bytes = segment_bytes
        self.segments: list[tuple[int, int]] = []  # (seq, first index), oldest first
        self.snapshot: Snapshot | None = None
        self.last_index = 0
        self.halted: BaseException | None = None
        self._current_size = 0

    # -- paths -----------------------------------------------------------------------

    def _p(self, name: str) -> str:
        return f"{self.dir}/{name}"

    @staticmethod
    def _segment_name(seq: int, first: int) -> str:
        return f"wal-{seq:08d}-{first:016d}.log"

    # -- failure rule ----------------------------------------------------------------

    def _fsync(self, path: str, *, directory: bool = False) -> None:
        try:
            if directory:
                self.fs.fsync_dir(path)
            else:
                self.fs.fsync(path)
        except OSError as exc:
            self.halted = exc
            raise StorageHalted(f"fsync of {path} failed ({exc}); the node must stop") from exc

    def _check(self) -> None:
        if self.halted is not None:
            raise StorageHalted(f"an earlier fsync failed ({self.halted}); the node must stop")

    def _replace(self, name: str, payload: bytes) -> None:
        """Atomically replace a small file: write tmp, fsync, rename, fsync the directory."""
        tmp = self._p(name + ".tmp")
        self.fs.write_new(tmp, _sealed(payload))
        self._fsync(tmp)
        self.fs.rename(tmp, self._p(name))
        self._fsync(self.dir, directory=True)

    # -- recovery --------------------------------------------------------------------

    def open(self) -> DurableState:
        """Recover what is on disk (creating an empty store if there is none)."""
        state = DurableState()
        names = self.fs.listdir(self.dir)
        for name in names:
            if name.endswith(".tmp"):
                self.fs.remove(self._p(name))
        if "state" in names:
            stable = _stable_dec.decode(_unseal(self._p("state"), self.fs.read(self._p("state"))))
            state.term, state.vote = stable.term, stable.vote
        snaps = sorted(n for n in names if n.startswith("snap-") and n.endswith(".snap"))
        min_segment = 0
        if snaps:
            path = self._p(snaps[-1])
            record = _snap_dec.decode(_unseal(path, self.fs.read(path)))
            self.snapshot = state.snapshot = record.snapshot
            min_segment = record.min_segment
            for old in snaps[:-1]:
                self.fs.remove(self._p(old))
        base = self.snapshot.meta.index if self.snapshot else 0
        segments: list[tuple[int, int]] = []
        for name in names:
            if name.startswith("wal-") and name.endswith(".log"):
                _, seq_text, first_text = name[:-4].split("-")
                if int(seq_text) < min_segment:
                    self.fs.remove(self._p(name))
                else:
                    segments.append((int(seq_text), int(first_text)))
        segments.sort()
        entries: list[Entry] = []
        for position, (seq, first) in enumerate(segments):
            path = self._p(self._segment_name(seq, first))
            last = position == len(segments) - 1
            for offset, entry in self._read_segment(path, last=last):
                if entry.index <= base:
                    continue
                expected = entries[-1].index + 1 if entries else base + 1
                if entry.index > expected:
                    raise LogCorrupted(
                        f"{path}: entry {entry.index} at offset {offset} leaves a gap "
                        f"after {expected - 1}"
                    )
                del entries[entry.index - base - 1 :]
                entries.append(entry)
        self.segments = segments
        state.entries = entries
        self.last_index = entries[-1].index if entries else base
        if self.segments:
            seq, first = self.segments[-1]
            self._current_size = self.fs.size(self._p(self._segment_name(seq, first)))
        return state

    def _read_segment(self, path: str, *, last: bool) -> list[tuple[int, Entry]]:
        data = self.fs.read(path)
        out: list[tuple[int, Entry]] = []
        offset = 0
        while offset < len(data):
            problem = None
            end = offset + _HEADER.size
            if end > len(data):
                problem = "a truncated record header"
            else:
                length, crc = _HEADER.unpack_from(data, offset)
                end += length
                if end > len(data):
                    problem = "a record longer than the file"
                elif zlib.crc32(data[offset + _HEADER.size : end]) != crc:
                    problem = "a checksum mismatch"
            if problem is None:
                payload = data[offset + _HEADER.size : end]
                try:
                    out.append((offset, _entry_dec.decode(payload)))
                except msgspec.DecodeError:
                    problem = "an undecodable record"
            if problem is not None:
                rest = data[min(end, len(data)) :]
                torn = last and (end >= len(data) or not rest.strip(b"\0"))
                if not torn:
                    raise LogCorrupted(
                        f"{path}: {problem} at offset {offset} in the middle of the log; "
                        "refusing to start (restore this node from a peer)"
                    )
                self.fs.truncate(path, offset)
                self._fsync(path)
                return out
            offset = end
        return out

    # -- writing -----------------------------------------------------------------------

    def save(
        self,
        hard_state: HardState | None = None,
        entries: list[Entry] | None = None,
        snapshot: Snapshot | None = None,
        *,
        restore: bool = False,
    ) -> None:
        """Make a ``Ready``'s durable parts durable; returns only after fsync."""
        self._check()
        if hard_state is not None:
            self._replace("state", _enc.encode(_StableRecord(hard_state.term, hard_state.vote)))
        if snapshot is not None:
            self._save_snapshot(snapshot, reset=restore)
        if entries:
            self._append(entries)

    def _new_segment(self, first: int) -> str:
        seq = self.segments[-1][0] + 1 if self.segments else 1
        self.segments.append((seq, first))
        path = self._p(self._segment_name(seq, first))
        self.fs.write_new(path, b"")
        self._fsync(path)
        self._fsync(self.dir, directory=True)
        self._current_size = 0
        return path

    def _append(self, entries: list[Entry]) -> None:
        if not self.segments or self._current_size >= self.segment_bytes:
            path = self._new_segment(entries[0].index)
        else:
            seq, first = self.segments[-1]
            path = self._p(self._segment_name(seq, first))
        parts = []
        for entry in entries:
            payload = _enc.encode(entry)
            parts.append(_HEADER.pack(len(payload), zlib.crc32(payload)))
            parts.append(payload)
        data = b"".join(parts)
        self.fs.append(path, data)
        self._current_size += len(data)
        self._fsync(path)
        self.last_index = entries[-1].index

    def _save_snapshot(self, snapshot: Snapshot, *, reset: bool) -> None:
        index = snapshot.meta.index
        if reset or not self.segments:
            self._new_segment(index + 1)
            min_segment = self.segments[-1][0]
            self.last_index = index
        else:
            # Keep the segment holding index + 1 and everything after it.
            min_segment = self.segments[0][0]
            for seq, first in self.segments:
                if first <= index + 1:
                    min_segment = seq
        name = f"snap-{index:016d}.snap"
        self._replace(name, _enc.encode(_SnapshotRecord(snapshot, min_segment)))
        self.snapshot = snapshot
        for other in self.fs.listdir(self.dir):
            if other.startswith("snap-") and other.endswith(".snap") and other != name:
                self.fs.remove(self._p(other))
        for seq, first in [s for s in self.segments if s[0] < min_segment]:
            self.fs.remove(self._p(self._segment_name(seq, first)))
        self.segments = [s for s in self.segments if s[0] >= min_segment]

    def close(self) -> None:
        self.fs.close()


def open_store(directory: str, fs: FileSystem | None = None) -> tuple[LogStore, DurableState]:
    """Open (creating if needed) the store in ``directory``; recover its state."""
    if fs is None:
        os.makedirs(directory, exist_ok=True)
    store = LogStore(directory, fs)
    return store, store.open()
