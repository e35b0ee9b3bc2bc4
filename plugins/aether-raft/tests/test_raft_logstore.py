"""The durable log: torn tails, corruption in the middle, fsync failure, crash points."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
from aether_raft.core import HardState
from aether_raft.fs import OsFileSystem, SimFileSystem, SimulatedCrash
from aether_raft.logstore import LogCorrupted, LogStore, StorageHalted, open_store
from aether_raft.messages import ConfState, Entry, Snapshot, SnapshotMeta


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=f"cmd-{i}-{term}".encode()) for i in range(lo, hi + 1)]


def segment(path: Path) -> Path:
    [seg] = sorted(path.glob("wal-*.log"))
    return seg


def test_round_trip_with_overwrite_and_snapshot(tmp_path: Path) -> None:
    store, state = open_store(str(tmp_path))
    assert state.entries == [] and state.term == 0
    store.save(HardState(3, "n2"), entries(1, 10))
    store.save(None, entries(6, 8, term=3))  # a new leader overwrote 6..10
    store.close()
    store, state = open_store(str(tmp_path))
    assert (state.term, state.vote) == (3, "n2")
    assert state.entries == entries(1, 5) + entries(6, 8, term=3)
    snap = Snapshot(SnapshotMeta(7, 3, ConfState(("n1", "n2"))), b"state")
    store.save(snapshot=snap)
    store.save(entries=entries(9, 9, term=3))
    store.close()
    store, state = open_store(str(tmp_path))
    assert state.snapshot == snap
    assert [e.index for e in state.entries] == [8, 9]


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    store, _ = open_store(str(tmp_path))
    store.save(None, entries(1, 5))
    store.close()
    seg = segment(tmp_path)
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # the last write stopped half-way
    store, state = open_store(str(tmp_path))
    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    store.save(None, entries(5, 6))  # and the log goes on after the cut
    store.close()
    _, state = open_store(str(tmp_path))
    assert [e.index for e in state.entries] == [1, 2, 3, 4, 5, 6]


def test_corruption_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    store, _ = open_store(str(tmp_path))
    store.save(None, entries(1, 5))
    store.close()
    seg = segment(tmp_path)
    data = bytearray(seg.read_bytes())
    data[12] ^= 0xFF  # a flipped byte inside the first record
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted) as info:
        open_store(str(tmp_path))
    assert seg.name in str(info.value) and "offset 0" in str(info.value)
    assert seg.read_bytes() == bytes(data)  # nothing was "repaired" away


def test_fsync_error_halts_the_store(tmp_path: Path) -> None:
    calls = 0

    def failing_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls >= 4:
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    store = LogStore(str(tmp_path), OsFileSystem(fsync=failing_fsync))
    store.open()
    store.save(None, entries(1, 1))  # new segment: file fsync + dir fsync, then data fsync
    with pytest.raises(StorageHalted):
        store.save(None, entries(2, 2))
    # Never retried silently: every later call fails too, even if the disk came back.
    calls = -100
    with pytest.raises(StorageHalted):
        store.save(None, entries(2, 2))


def _workload(store: LogStore, acked: list[Entry], state: dict[str, object]) -> None:
    """A scripted run; ``acked`` grows only after ``save`` returned (i.e. after fsync)."""
    rng = random.Random(7)
    term = 1
    index = 0
    for step in range(24):
        if step % 7 == 3:
            term += 1
            store.save(HardState(term, "n1"))
            state["hard"] = (term, "n1")
            index = max(0, index - 2)  # a new leader overwrites the last two entries
            del acked[index:]
        batch = [
            Entry(term, i, data=rng.randbytes(rng.randrange(1, 40)))
            for i in range(index + 1, index + 1 + rng.randrange(1, 4))
        ]
        store.save(None, batch)
        acked.extend(batch)
        index = batch[-1].index
        if step == 15:
            snap = Snapshot(SnapshotMeta(10, acked[9].term, ConfState(("n1",))), b"s")
            store.save(snapshot=snap)
            state["snap"] = snap


def test_every_crash_point_recovers_every_acknowledged_entry() -> None:
    # Count the operations of a full run, then crash at each one in turn.
    fs = SimFileSystem()
    store = LogStore("/d", fs, segment_bytes=120)
    store.open()
    _workload(store, [], {})
    total = fs.ops
    assert total > 50
    for crash_at in range(1, total + 1):
        for variant in range(3):
            fs = SimFileSystem(crash_at=crash_at)
            store = LogStore("/d", fs, segment_bytes=120)
            store.open()
            acked: list[Entry] = []
            state: dict[str, object] = {}
            with pytest.raises(SimulatedCrash):
                _workload(store, acked, state)
            after = fs.crash(random.Random(crash_at * 10 + variant))
            recovered = LogStore("/d", after, segment_bytes=120).open()
            where = f"crash at op {crash_at}/{total} variant {variant}"
            # A write in progress at the crash may or may not have landed; acked ones did.
            if "hard" in state:
                assert (recovered.term, recovered.vote) >= state["hard"], where  # type: ignore[operator]
            if "snap" in state:
                assert recovered.snapshot == state["snap"], where
            base = recovered.snapshot.meta.index if recovered.snapshot else 0
            got = {e.index: e for e in recovered.entries}
            for entry in acked:
                if entry.index > base:
                    assert got.get(entry.index) == entry, f"{where}: lost {entry.index}"


def test_halted_sim_store_refuses_writes() -> None:
    class BrokenFs(SimFileSystem):
        def fsync(self, path: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    store = LogStore("/d", BrokenFs())
    store.open()
    with pytest.raises(StorageHalted, match="No space left"):
        store.save(None, entries(1, 1))
    assert store.halted is not None
