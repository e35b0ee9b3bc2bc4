"""Aether's kernel: versioned, typed configuration over pluggable storage and transports.

Embedding without a server::

    from aether_core import ConfigManager, MemoryStorage

    async with ConfigManager(MemoryStorage()) as manager:
        await manager.put("billing/database", {"host": "db", "port": 5432})
"""

from aether_core.errors import AetherError
from aether_core.manager import ConfigManager
from aether_core.records import ChangeEvent, Record
from aether_core.storage.memory import MemoryStorage
from aether_core.storage.sqlite import SqliteStorage
from aether_core.sync import SyncConfigManager

InMemoryStorage = MemoryStorage  # the name the original design used

__all__ = [
    "AetherError",
    "ChangeEvent",
    "ConfigManager",
    "InMemoryStorage",
    "MemoryStorage",
    "Record",
    "SqliteStorage",
    "SyncConfigManager",
]
