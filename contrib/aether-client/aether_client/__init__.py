"""Aether's client SDK: typed live configs over the admin API.

    from aether_client import AetherClient
    client = AetherClient("http://127.0.0.1:8080")        # credentials from the environment
    db = client.bind("billing/database", DatabaseSettings)
    db.on_change(lambda change: print(change.version, change.value))
    db.value.port                                          # always a valid DatabaseSettings

``AsyncAetherClient`` is the same from asyncio. Names are imported on first use (PEP
562), so the ``aether`` CLI, which loads this package for its commands, stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aether_client.binding import Binding
    from aether_client.cache import ValueCache
    from aether_client.client import AsyncAetherClient
    from aether_client.credentials import Credentials
    from aether_client.errors import ApiError, ClientError, Compacted, Unreachable
    from aether_client.records import Change, ConfigRecord, VersionInfo, WatchEvent
    from aether_client.stream import Backoff
    from aether_client.sync import AetherClient

_WHERE = {
    "AetherClient": "sync", "ApiError": "errors", "AsyncAetherClient": "client",
    "Backoff": "stream", "Binding": "binding", "Change": "records", "ClientError": "errors",
    "Compacted": "errors", "ConfigRecord": "records", "Credentials": "credentials",
    "Unreachable": "errors", "ValueCache": "cache", "VersionInfo": "records",
    "WatchEvent": "records",
}
__all__ = [
    "AetherClient", "ApiError", "AsyncAetherClient", "Backoff", "Binding", "Change",
    "ClientError", "Compacted", "ConfigRecord", "Credentials", "Unreachable", "ValueCache",
    "VersionInfo", "WatchEvent",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'aether_client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aether_client.{module}"), name)
