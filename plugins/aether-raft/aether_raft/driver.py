"""The asyncio loop around the core (first part of issue 5; no sockets here).

One task owns the core: it ticks from the monotonic clock, steps the messages the
transport delivered, and handles each ``Ready`` in order — persisting in a worker
thread (``asyncio.to_thread``) so a slow fsync never blocks the event loop, then
sending, then applying to the kernel's state machine. ``step``/``tick``/``propose``
happen only in that task between two Readies, which is the core's contract.
A storage halt (an fsync error) stops the driver: every waiter gets ``Unavailable``.

Every ``snapshot_every`` applied entries the driver snapshots the state machine and
compacts the log behind it: the store is read between two Readies (nothing applies
meanwhile, so the snapshot is exactly the state at its index), the snapshot file is
written and fsync'd and the old segments dropped in the worker thread with the rest of
the Ready.

Errors that say a command was *certainly not* applied (refused before it was appended,
or its log slot went to another leader's entry) are :class:`NotApplied`: retrying
those is safe, which is what lets the transport ride over a leader change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from aether_core.commands import Command, encode
from aether_core.errors import Unavailable
from aether_core.records import CommitResult
from aether_core.statemachine import StateMachine
from aether_raft.core import ConfChangeOp, ConfChangeRejected, NotLeader, RaftCore, RaftError
from aether_raft.logstore import LogStore, StorageHalted
from aether_raft.messages import ConfState, EntryKind, Message
from aether_raft.node import _chunks, command_of, snapshot_of

log = structlog.get_logger("aether.raft")

RECENT_RESULTS = 4096
T = TypeVar("T")


class NotApplied(Unavailable):
    """The command was certainly not applied (and never will be): safe to retry."""


def _not_applied(exc: RaftError) -> NotApplied:
    return NotApplied(str(exc), leader=exc.leader) if isinstance(exc, NotLeader) \
        else NotApplied(str(exc))


class RaftDriver:
    def __init__(
        self,
        core: RaftCore,
        store: LogStore,
        state_machine: StateMachine,
        send: Callable[[Message], None],
        *,
        tick_seconds: float = 0.05,
        snapshot_every: int = 0,
        on_conf: Callable[[ConfState], None] | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.state_machine = state_machine
        self.send = send
        self.tick_seconds = tick_seconds
        self._inbox: list[Message] = []
        #: Steps waiting for the driver task, with the futures of their callers.
        self._requests: list[tuple[asyncio.Future[Any], Callable[[], None]]] = []
        self._wake = asyncio.Event()
        self._proposals: dict[int, tuple[int, asyncio.Future[CommitResult]]] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ctx = 0
        #: Waiters for entries proposed through another node (forwarded writes).
        self._awaited: dict[int, list[tuple[int, asyncio.Future[CommitResult]]]] = {}
        #: Recent apply results, so a forwarded write whose reply arrives after the
        #: entry was applied here still gets its result.
        self._recent: OrderedDict[int, tuple[int, CommitResult]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.failure: BaseException | None = None
        #: 0: never compact automatically.
        self.snapshot_every = snapshot_every
        #: Called (in the driver task) whenever the configuration changed.
        self.on_conf = on_conf
        self._conf = core.conf
        self._entries: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        #: Counters ``cluster status`` shows.
        self.snapshots_taken = 0
        #: The background read of a snapshot, while one runs (see _compact).
        self._snapshotting: asyncio.Task[tuple[int, bytes, float]] | None = None
        self.snapshots_installed = 0
        self.last_snapshot_seconds = 0.0

    # -- public ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="raft-driver")

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        snapshotting, self._snapshotting = self._snapshotting, None
        if snapshotting is not None:
            snapshotting.cancel()
            await asyncio.gather(snapshotting, return_exceptions=True)
        if self._task is not None:
            # The flag too: on 3.11 wait_for() may swallow a cancel that races a wakeup.
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_all(Unavailable("the raft node is stopping"))

    def deliver(self, message: Message) -> None:
        """Called by the transport for every message received from a peer."""
        self._inbox.append(message)
        self._wake.set()

    async def propose(self, command: Command) -> CommitResult:
        """Order ``command``; returns what applying it did on this node."""
        data = encode(command)
        applied: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()

        def start() -> None:
            self._proposals[self.core.propose(data)] = (self.core.term, applied)

        await self._in_loop(start)
        return await applied

    async def append(self, data: bytes) -> tuple[int, int]:
        """As the leader, append an encoded command; returns its (index, term) at once.

        Used for writes forwarded by a follower, which waits for the apply itself.
        """
        return await self._in_loop(lambda: (self.core.propose(data), self.core.term))

    async def wait_applied(self, index: int, term: int) -> CommitResult:
        """The result of applying the entry (index, term) here, once it is applied."""
        self.check()
        if self.core.applied >= index:
            recent = self._recent.get(index)
            if recent is not None and recent[0] == term:
                return recent[1]
            if recent is None:
                raise Unavailable("the write's fate is unknown (applied before its "
                                  "acknowledgement arrived, and no longer remembered)")
            raise NotApplied("leadership changed; the write was not applied")
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._awaited.setdefault(index, []).append((term, future))
        return await future

    async def change_membership(self, op: ConfChangeOp, node: str,
                                address: str | None = None) -> None:
        """As the leader, propose one membership change; returns once it is applied here.

        :raises ConfChangeRejected: not allowed now (another change pending, …).
        :raises NotApplied: this node is not the leader (any more).
        """
        index, term = await self._in_loop(
            lambda: (self.core.propose_conf_change(op, node, address), self.core.term))
        await self.wait_entry(index, term)

    async def transfer_leadership(self, target: str) -> None:
        """As the leader, hand leadership to ``target`` (it happens a little later)."""
        await self._in_loop(lambda: self.core.transfer_leadership(target))

    async def wait_entry(self, index: int, term: int) -> None:
        """Until the entry (index, term) is applied here; :class:`NotApplied` if another
        entry took its slot."""
        self.check()
        if self.core.applied >= index:
            if self.core.log.term(index) not in (term, None):
                raise NotApplied("leadership changed; the change was not applied")
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._entries.setdefault(index, []).append((term, future))
        await future

    def status(self) -> dict[str, Any]:
        """Counters and sizes for ``cluster status``."""
        core = self.core
        return {
            "voters": list(core.conf.voters),
            "learners": list(core.conf.learners),
            "last_index": core.log.last_index(),
            "snapshot_index": core.log.snapshot.index,
            "snapshot_every": self.snapshot_every,
            "snapshots_taken": self.snapshots_taken,
            "snapshots_installed": self.snapshots_installed,
            "last_snapshot_seconds": round(self.last_snapshot_seconds, 4),
        }

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Linearizable: ReadIndex, then wait until this node applied that index.

        :param timeout: how long to wait for the leader to confirm the read index (a
            leader that stopped never answers): then :class:`NotApplied` (retry it)."""
        self._ctx += 1
        ctx = self._ctx
        confirmed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def start() -> None:
            self.core.read_index(ctx)
            self._reads[ctx] = confirmed

        try:
            async with asyncio.timeout(timeout):
                await self._in_loop(start)
                index = await confirmed
        except TimeoutError:
            raise NotApplied("the leader did not confirm a read index in time") from None
        finally:
            self._reads.pop(ctx, None)
        if self.core.applied < index:
            applied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._read_waiters.append((index, applied))
            await applied

    # -- the loop --------------------------------------------------------------------

    async def _in_loop(self, step: Callable[[], T]) -> T:
        """Run ``step`` in the driver task, between two Readies — the core's contract:
        only that task steps, ticks or proposes — and return what it returned.

        The core refusing (:class:`RaftError`) means certainly not applied:
        :class:`NotApplied`, except :class:`ConfChangeRejected`, which passes as is. A
        step whose caller gave up before the driver got to it is skipped.
        """
        self.check()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def request() -> None:
            if future.done():
                return
            try:
                result = step()
            except ConfChangeRejected as exc:
                future.set_exception(exc)
            except RaftError as exc:
                future.set_exception(_not_applied(exc))
            else:
                future.set_result(result)

        self._requests.append((future, request))
        self._wake.set()
        return await future

    def check(self) -> None:
        if self.failure is not None:
            raise Unavailable(f"the raft node stopped: {self.failure}")

    async def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_seconds
        try:
            while not self._stopping:
                timeout = max(0.0, next_tick - time.monotonic())
                # asyncio.timeout, not wait_for, which on 3.11 can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                self._wake.clear()
                now = time.monotonic()
                while now >= next_tick:
                    self.core.tick()
                    next_tick += self.tick_seconds
                inbox, self._inbox = self._inbox, []
                for message in inbox:
                    self.core.step(message)
                requests, self._requests = self._requests, []
                for _, request in requests:
                    request()
                while self.core.has_ready():
                    await self._handle_ready()
                if self._snapshotting is not None and self._snapshotting.done():
                    await self._compact_to(self._snapshotting)
                if (self.snapshot_every and self._snapshotting is None
                        and self.core.applied - self.core.log.snapshot.index
                        >= self.snapshot_every):
                    await self._compact()
        except StorageHalted as exc:
            log.error("raft.storage_halted", error=str(exc))
            self.failure = exc
            self._fail_all(Unavailable(f"the raft node stopped: {exc}"))
        except Exception as exc:  # a bug must stop the node loudly, never hang waiters
            log.exception("raft.driver_failed")
            self.failure = exc
            self._fail_all(Unavailable(f"the raft node stopped: {exc!r}"))

    async def _compact(self) -> None:
        """Snapshot the state machine and compact the log to the snapshot's index.

        A store whose snapshot is one consistent read (``snapshot_is_consistent``: it
        names the applied index it reflects) is read in the background while the driver
        goes on ticking and applying — a large store then delays neither heartbeats nor
        writes. Any other store is read here, between Readies, so nothing is applied
        meanwhile. The file write (fsync) happens in the next Ready's worker thread."""
        started = time.monotonic()
        storage = self.state_machine.storage
        if not storage.snapshot_is_consistent:
            done: asyncio.Future[tuple[int, bytes, float]] = \
                asyncio.get_running_loop().create_future()
            done.set_result((*await snapshot_of(storage), started))
            await self._compact_to(done)
            return

        async def read() -> tuple[int, bytes, float]:
            return (*await snapshot_of(storage), started)

        self._snapshotting = asyncio.get_running_loop().create_task(read(), name="raft-snapshot")
        self._snapshotting.add_done_callback(lambda _: self._wake.set())

    async def _compact_to(self, snapshot: asyncio.Future[tuple[int, bytes, float]]) -> None:
        self._snapshotting = None
        try:
            index, data, started = snapshot.result()
        except Exception as exc:  # a failed read is retried at the next period
            log.warning("raft.snapshot_failed", error=f"{type(exc).__name__}: {exc}")
            return
        if not self.core.log.snapshot.index < index <= self.core.applied:
            return  # the store is behind the log (it cannot be ahead): try again later
        self.core.compact(index, data)
        while self.core.has_ready():
            await self._handle_ready()
        self.snapshots_taken += 1
        self.last_snapshot_seconds = time.monotonic() - started
        log.info("raft.compacted", index=index, bytes=len(data),
                 seconds=round(self.last_snapshot_seconds, 3))

    async def _handle_ready(self) -> None:
        core = self.core
        rd = core.ready()
        await asyncio.to_thread(
            self.store.save, rd.hard_state, rd.entries, rd.snapshot, restore=rd.restore
        )
        for message in rd.messages:
            self.send(message)
        if rd.snapshot is not None and rd.restore:
            await self.state_machine.storage.restore(_chunks(rd.snapshot.data))
            self.snapshots_installed += 1
            log.info("raft.snapshot_installed", index=rd.snapshot.meta.index,
                     bytes=len(rd.snapshot.data))
            for index in [i for i in self._entries if i <= rd.snapshot.meta.index]:
                for _, entry_waiter in self._entries.pop(index):
                    if not entry_waiter.done():
                        entry_waiter.set_exception(Unavailable(
                            "the change's fate is unknown (this node caught up by snapshot)"))
            for index in [i for i in self._awaited if i <= rd.snapshot.meta.index]:
                for _, awaiting in self._awaited.pop(index):
                    if not awaiting.done():
                        awaiting.set_exception(Unavailable(
                            "the write's fate is unknown (this node caught up by snapshot)"))
        for entry in rd.committed:
            result = await self.state_machine.apply(command_of(entry), log_index=entry.index)
            if entry.kind is EntryKind.NORMAL:
                self._recent[entry.index] = (entry.term, result)
                if len(self._recent) > RECENT_RESULTS:
                    self._recent.popitem(last=False)
            for term, awaiting in self._awaited.pop(entry.index, []):
                if awaiting.done():
                    continue
                if term == entry.term and entry.kind is EntryKind.NORMAL:
                    awaiting.set_result(result)
                else:
                    awaiting.set_exception(
                        NotApplied("leadership changed; the write was not applied"))
            for term, entry_waiter in self._entries.pop(entry.index, []):
                if entry_waiter.done():
                    continue
                if term == entry.term:
                    entry_waiter.set_result(None)
                else:
                    entry_waiter.set_exception(
                        NotApplied("leadership changed; the change was not applied"))
            waiting = self._proposals.pop(entry.index, None)
            if waiting is not None and not waiting[1].done():
                term, proposal = waiting
                if term == entry.term and entry.kind is EntryKind.NORMAL:
                    proposal.set_result(result)
                else:
                    proposal.set_exception(
                        NotApplied("leadership changed; the write was not applied")
                    )
        for read in rd.reads:
            if (reading := self._reads.pop(read.ctx, None)) is not None and not reading.done():
                reading.set_result(read.index)
        for ctx in rd.dropped_reads:
            if (dropped := self._reads.pop(ctx, None)) is not None and not dropped.done():
                dropped.set_exception(NotApplied("leadership changed during a read"))
        core.advance(rd)
        still: list[tuple[int, asyncio.Future[None]]] = []
        for index, applied in self._read_waiters:
            if core.applied >= index:
                if not applied.done():
                    applied.set_result(None)
            else:
                still.append((index, applied))
        self._read_waiters = still
        if core.conf != self._conf:
            self._conf = core.conf
            if self.on_conf is not None:
                self.on_conf(core.conf)

    def halt(self, error: Unavailable) -> None:
        """Serve nothing more (this node was removed from the cluster): every waiter and
        every later request gets ``error``; the loop goes on but nothing waits on it."""
        if self.failure is None:
            self.failure = error
            self._fail_all(error)

    def _fail_all(self, error: Unavailable) -> None:
        requests, self._requests = self._requests, []
        for requested, _ in requests:
            if not requested.done():
                requested.set_exception(error)
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(error)
        for read in self._reads.values():
            if not read.done():
                read.set_exception(error)
        for _, waiter in self._read_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        for waiters in self._awaited.values():
            for _, awaiting in waiters:
                if not awaiting.done():
                    awaiting.set_exception(error)
        for entry_waiters in self._entries.values():
            for _, entry_waiter in entry_waiters:
                if not entry_waiter.done():
                    entry_waiter.set_exception(error)
        self._entries.clear()
        self._proposals.clear()
        self._awaited.clear()
        self._reads.clear()
        self._read_waiters = []
