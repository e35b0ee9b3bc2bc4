"""Service and key-provider contracts: long-running parts of a node, and key wrapping."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from aether_core.errors import BadRequest
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

    # The methods below have defaults, so a provider written against the first
    # contract (wrap/unwrap/versions) keeps working.

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Check the key material (file, KMS key) before the node serves; a missing or
        unusable key raises :class:`~aether_core.errors.ConfigurationError`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release clients and files. Idempotent."""

    async def generate_data_key(self, size: int = 32) -> tuple[bytes, str, bytes]:
        """A fresh random data key: ``(plaintext, key_version, wrapped_key)``.

        Providers with a native call (KMS ``GenerateDataKey``) override this.
        """
        data_key = os.urandom(size)
        key_version, wrapped = await self.wrap(data_key)
        return data_key, key_version, wrapped

    async def current_version(self) -> str:
        """The version :meth:`wrap` uses now."""
        return (await self.versions())[-1]

    async def create_version(self) -> str:
        """Make a new key version the current one and return it (key rotation).

        Older versions keep unwrapping until :meth:`retire`. Providers whose keys are
        managed elsewhere raise :class:`~aether_core.errors.BadRequest`.
        """
        raise BadRequest(f"key provider {self.name!r} cannot create key versions")

    async def retire(self, key_version: str) -> None:
        """Destroy (or disable) ``key_version``; called once no data key uses it. After
        this, :meth:`unwrap` with that version fails. Retiring the current version is
        refused."""
        raise BadRequest(f"key provider {self.name!r} cannot retire key versions")
