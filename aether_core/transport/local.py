"""``local``: commands are applied at once, in the order they arrive in this process.

Correct for one embedded node, and for several nodes over a shared database: there the
database's compare-and-set orders conflicting writes, and its change feed tells every
node what the others did.

Over a node's own store, commands apply one at a time, so revisions follow proposal
order. Over a shared store they apply concurrently: the database already orders writes
from many nodes, so one more writer in this process needs no lock of ours — and
concurrent commits are what lets such a store group several into one transaction.
"""

from __future__ import annotations

import asyncio

from aether_core.commands import Command
from aether_core.errors import Unavailable
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult
from aether_core.statemachine import StateMachine
from aether_core.transport.base import LeaderInfo, Transport, TransportSettings


class LocalSettings(TransportSettings):
    """``[transport] use = "local"`` takes no settings."""


class LocalTransport(Transport):
    name = "local"
    Settings = LocalSettings

    def __init__(self, node_name: str = "local") -> None:
        self.node_name = node_name
        self._state_machine: StateMachine | None = None
        # One apply at a time keeps revisions in proposal order within this process
        # (only over a store of its own: see the module's docstring).
        self._lock = asyncio.Lock()
        self._serial = True

    @classmethod
    def from_settings(cls, settings: LocalSettings, node: NodeInfo) -> LocalTransport:
        return cls(node.name)

    async def start(self, state_machine: StateMachine) -> None:
        self._state_machine = state_machine
        self._serial = not state_machine.storage.shared

    async def propose(self, command: Command) -> CommitResult:
        if self._state_machine is None:
            raise Unavailable("the local transport is not started")
        if not self._serial:
            return await self._state_machine.apply(command)
        async with self._lock:
            return await self._state_machine.apply(command)

    async def read_barrier(self) -> None:
        return None

    def leader(self) -> LeaderInfo:
        return LeaderInfo(name=self.node_name, is_self=True)

    def ready(self) -> bool:
        return self._state_machine is not None

    async def close(self) -> None:
        self._state_machine = None
