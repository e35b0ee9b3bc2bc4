"""The kernel's own providers, registered through the same hooks as any plugin."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_storage(register: Register) -> None:
    from aether_core.storage.memory import MemoryStorage
    from aether_core.storage.sqlite import SqliteStorage

    register(MemoryStorage)
    register(SqliteStorage)


@hookimpl
def aether_register_transport(register: Register) -> None:
    from aether_core.transport.local import LocalTransport

    register(LocalTransport)
