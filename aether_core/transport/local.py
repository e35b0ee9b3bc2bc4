"""``local``: commands are applied at once, in the order they arrive in this process.

Correct for one embedded node, and for several nodes over a shared database: there the
database's compare-and-set orders conflicting writes, and its change feed tells every
node what the others did.

Over a node's own store, commands apply one at a time, so revisions follow proposal
order — and those that arrive while one group is being made durable go together in the
next ``Storage.group()``: one fsync for all of them (group commit), each acknowledged
only once it is durable. Over a shared store they apply concurrently: the database
already orders writes from many nodes, so one more writer in this process needs no
queue of ours — and concurrent commits are what lets such a store group several into
one transaction.
"""

from __future__ import annotations

import asyncio

from aether_core.commands import Command
from aether_core.errors import Unavailable
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult
from aether_core.statemachine import StateMachine
from aether_core.transport.base import LeaderInfo, Transport, TransportSettings

#: The most commands one group takes (a bound on the latency of its first command).
GROUP_LIMIT = 256


class LocalSettings(TransportSettings):
    """``[transport] use = "local"`` takes no settings."""


class LocalTransport(Transport):
    name = "local"
    Settings = LocalSettings

    def __init__(self, node_name: str = "local") -> None:
        self.node_name = node_name
        self._state_machine: StateMachine | None = None
        self._serial = True
        self._queue: list[tuple[Command, asyncio.Future[CommitResult]]] = []
        self._applier: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: LocalSettings, node: NodeInfo) -> LocalTransport:
        return cls(node.name)

    async def start(self, state_machine: StateMachine) -> None:
        self._state_machine = state_machine
        self._serial = not state_machine.storage.shared

    async def propose(self, command: Command) -> CommitResult:
        state_machine = self._state_machine
        if state_machine is None:
            raise Unavailable("the local transport is not started")
        if not self._serial:
            return await state_machine.apply(command)
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(
                self._apply_queued(state_machine), name="aether-local-apply")
        return await future

    async def _apply_queued(self, state_machine: StateMachine) -> None:
        while self._queue:
            # A caller that gave up before its turn is not applied.
            batch = [(c, f) for c, f in self._queue[:GROUP_LIMIT] if not f.done()]
            del self._queue[:GROUP_LIMIT]
            outcomes: list[tuple[asyncio.Future[CommitResult], CommitResult | Exception]] = []
            try:
                async with state_machine.storage.group():
                    for command, future in batch:
                        try:
                            outcome: CommitResult | Exception = await state_machine.apply(command)
                        except Exception as exc:  # this command's error, not the group's
                            outcome = exc
                        outcomes.append((future, outcome))
            except Exception as exc:  # the group did not become durable: nothing of it did
                outcomes = [(future, exc) for _, future in batch]
            for future, outcome in outcomes:
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def read_barrier(self) -> None:
        return None

    def leader(self) -> LeaderInfo:
        return LeaderInfo(name=self.node_name, is_self=True)

    def ready(self) -> bool:
        return self._state_machine is not None

    async def close(self) -> None:
        self._state_machine = None
        applier, self._applier = self._applier, None
        if applier is not None:
            # Let the group in flight finish: its commands may already be durable.
            await asyncio.wait({applier})
        for _, future in self._queue:
            if not future.done():
                future.set_exception(Unavailable("the local transport is stopping"))
        self._queue.clear()
