"""Service and key-provider contracts: long-running parts of a node, and key wrapping."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from aether_core.providers import ProviderSettings

if TYPE_CHECKING:
    from aether_core.node import Node


class Service(ABC):
    """A long-running part of a node: the admin API, metrics, a rotation scheduler.

    :meth:`start` returns once the service is serving (a port is bound, a task runs);
    :meth:`stop` returns once it has stopped and is idempotent. Neither may block the
    event loop.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = ProviderSettings

    @abstractmethod
    async def start(self, node: Node) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


class KeyProvider(ABC):
    """Wraps and unwraps data keys under named key-encryption-key versions.

    Wrapping uses the current version; unwrapping takes the version the data key was
    wrapped with, so old ciphertexts stay readable until they are re-wrapped.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = ProviderSettings

    @abstractmethod
    async def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """``(key_version, wrapped_key)`` under the current key version."""

    @abstractmethod
    async def unwrap(self, key_version: str, wrapped_key: bytes) -> bytes:
        """The data key; raises if ``key_version`` is unknown or the wrap is corrupt."""

    @abstractmethod
    async def versions(self) -> list[str]:
        """Key versions that can still unwrap, the current one last."""
