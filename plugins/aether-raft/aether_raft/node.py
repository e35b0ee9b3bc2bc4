"""A Raft node in process: the core, its log store and the kernel's state machine.

This is the small glue between the pure core and the kernel — the part the asyncio
driver and TCP transport (issue 5) wrap. ``process_ready`` follows the Ready contract:
persist (fsync) first, then hand out messages, then apply. Applying an entry is
``StateMachine.apply(decode(data), log_index=index)``; no-op and configuration entries
apply as the kernel's ``Noop`` so the storage's applied index follows the log exactly,
which makes a restart replay from ``Storage.applied_index()`` safe (storage skips an
index it already applied). Snapshots are the storage contract's portable JSON lines.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import msgspec

from aether_core.commands import Command, Noop, decode, encode
from aether_core.records import CommitResult
from aether_core.statemachine import StateMachine
from aether_core.storage.base import SnapshotHeader, Storage
from aether_raft.core import HardState, RaftConfig, RaftCore, ReadState, bootstrap
from aether_raft.logstore import LogStore
from aether_raft.messages import ConfState, Entry, EntryKind, Message, Snapshot


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def snapshot_of(storage: Storage) -> tuple[int, bytes]:
    """The storage's snapshot and the log index it reflects.

    A store whose snapshot is one consistent read names its index in the header; for any
    other the caller must keep anything from being applied meanwhile (the driver does:
    it applies, and it is the one waiting here)."""
    if storage.snapshot_is_consistent:
        data = b"".join([chunk async for chunk in storage.snapshot()])
        header = msgspec.json.decode(data.partition(b"\n")[0], type=SnapshotHeader)
        return header.applied_index, data
    index = await storage.applied_index()
    if type(storage).snapshot is not Storage.snapshot:
        return index, b"".join([chunk async for chunk in storage.snapshot()])
    # The contract's own snapshot reads everything before it yields, and SQLite's reads
    # do not suspend: built here a batch at a time instead, giving the event loop a turn
    # between batches (a 10,000-record store would otherwise stall it ~0.2 s).
    lines: list[bytes] = []
    cursor = 0
    compacted = await storage.compacted_revision()
    while batch := await storage.records_since(cursor):
        lines.extend(msgspec.json.encode(record) + b"\n" for record in batch)
        cursor = batch[-1].revision
        await asyncio.sleep(0)
    header = SnapshotHeader(revision=cursor, applied_index=await storage.applied_index(),
                            compacted_revision=compacted, records=len(lines))
    return index, b"".join([msgspec.json.encode(header) + b"\n", *lines])


def command_of(entry: Entry) -> Command:
    return decode(entry.data) if entry.kind is EntryKind.NORMAL else Noop()


class RaftNode:
    def __init__(
        self,
        node_id: str,
        store: LogStore,
        state_machine: StateMachine,
        send: Callable[[Message], None],
        *,
        rng: random.Random | None = None,
        config: RaftConfig | None = None,
    ) -> None:
        self.id = node_id
        self.store = store
        self.state_machine = state_machine
        self.send = send
        self.rng = rng or random.Random()
        self.config = config
        self.results: dict[int, CommitResult] = {}
        self.reads: list[ReadState] = []
        self.core: RaftCore

    async def start(self, founders: ConfState | None = None) -> None:
        """Recover from disk; a founder of a new cluster writes the bootstrap state."""
        state = self.store.open()
        if founders is not None and not state.entries and state.snapshot is None:
            boot = bootstrap(founders)
            self.store.save(HardState(boot.term, None), boot.entries)
            state = self.store.open()
        storage = self.state_machine.storage
        applied = await storage.applied_index()
        if state.snapshot is not None and applied < state.snapshot.meta.index:
            await storage.restore(_chunks(state.snapshot.data))
            applied = state.snapshot.meta.index
        # Entries after the snapshot but not yet in storage are replayed as committed
        # once the leader confirms the commit index; storage skips what it has.
        last = state.entries[-1].index if state.entries else applied
        self.core = RaftCore(self.id, state, self.rng, self.config, applied=min(applied, last))

    def propose(self, command: Command) -> int:
        return self.core.propose(encode(command))

    async def process_ready(self) -> bool:
        core = self.core
        if not core.has_ready():
            return False
        rd = core.ready()
        self.store.save(rd.hard_state, rd.entries, rd.snapshot, restore=rd.restore)
        for message in rd.messages:
            self.send(message)
        if rd.snapshot is not None and rd.restore:
            await self.state_machine.storage.restore(_chunks(rd.snapshot.data))
        for entry in rd.committed:
            result = await self.state_machine.apply(command_of(entry), log_index=entry.index)
            if entry.kind is EntryKind.NORMAL:
                self.results[entry.index] = result
        self.reads.extend(rd.reads)
        core.advance(rd)
        return True

    async def compact(self) -> int:
        """Snapshot the state machine and compact the log behind it."""
        index, data = await snapshot_of(self.state_machine.storage)
        if index > self.core.log.snapshot.index:
            self.core.compact(index, data)
            await self.process_ready()
        return index


def snapshot_index(snapshot: Snapshot | None) -> int:
    return snapshot.meta.index if snapshot else 0
