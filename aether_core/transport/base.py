"""The transport contract: who orders commands, and where they are applied."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import msgspec

from aether_core.commands import Command
from aether_core.providers import ProviderSettings
from aether_core.records import CommitResult

if TYPE_CHECKING:
    from aether_core.statemachine import StateMachine


class TransportSettings(ProviderSettings):
    """Base of every transport provider's manifest settings (unknown keys are errors)."""


class LeaderInfo(msgspec.Struct, kw_only=True):
    """Who accepts writes now. ``name`` is ``None`` while there is no leader."""

    name: str | None
    address: str | None = None
    is_self: bool = False
    term: int = 0


class Transport(ABC):
    """Orders commands and applies them to the state machine of every node.

    * :meth:`propose` returns only after the command is applied on *this* node, with the
      result of that apply — so a client that reads from this node next sees its write.
    * A transport never reorders commands: every node applies the same commands in the
      same order, each with a log index when the transport has a log.
    * :meth:`start` is called once with the node's state machine, before any proposal;
      :meth:`close` stops it and is idempotent.
    """

    #: The name the manifest uses (``[transport] use = "…"``).
    name: ClassVar[str]
    Settings: ClassVar[type[TransportSettings]] = TransportSettings
    #: Whether this transport can run over a storage whose ``shared`` flag is set.
    supports_shared_storage: ClassVar[bool] = True
    #: Whether this transport fsyncs every command to a log of its own before it is
    #: applied, and replays that log after a crash; storage then skips its own fsync.
    keeps_durable_log: ClassVar[bool] = False

    @abstractmethod
    async def start(self, state_machine: StateMachine) -> None:
        """Begin ordering commands for ``state_machine`` (replaying what is needed first)."""

    @abstractmethod
    async def propose(self, command: Command) -> CommitResult:
        """Order ``command``, wait until this node applied it, return what the apply did.

        :raises Unavailable: when no leader is known or the node is stopping; the
            command was then not applied (or its fate is unknown, which the message says).
        """

    @abstractmethod
    async def read_barrier(self) -> None:
        """Return once this node has applied every command committed before the call.

        Reads made after it are linearizable. Transports without replication return at
        once.
        """

    @abstractmethod
    def leader(self) -> LeaderInfo:
        """The current leader as this node knows it."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether this node can accept writes now (a leader is known)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Stop ordering commands; pending proposals fail with ``Unavailable``."""
