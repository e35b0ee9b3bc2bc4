"""A blocking face for code that is not async: every call runs on a private event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from aether_core.manager import ConfigManager
from aether_core.records import Page, Record
from aether_core.storage.base import Storage


class SyncConfigManager:
    """``ConfigManager`` for synchronous code. Use it as a context manager (or call
    :meth:`close`); do not call it from inside a running event loop."""

    def __init__(self, storage: Storage, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self.manager = ConfigManager(storage, **kwargs)
        self._runner.run(self.manager.start())

    def __enter__(self) -> SyncConfigManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self.manager.close())
        self._runner.close()

    def put(self, name: str, value: Any, **kwargs: Any) -> Record:
        return self._runner.run(self.manager.put(name, value, **kwargs))

    def get(self, name: str, version: int | None = None) -> Record:
        return self._runner.run(self.manager.get(name, version))

    def delete(self, name: str, **kwargs: Any) -> Record:
        return self._runner.run(self.manager.delete(name, **kwargs))

    def versions(self, name: str) -> list[Record]:
        return self._runner.run(self.manager.versions(name))

    def list_configs(self, prefix: str = "", **kwargs: Any) -> Page:
        return self._runner.run(self.manager.list_configs(prefix, **kwargs))

    def rollback(self, name: str, to_version: int, **kwargs: Any) -> Record:
        return self._runner.run(self.manager.rollback(name, to_version, **kwargs))

    def put_schema(self, name: str, schema: Any, **kwargs: Any) -> Record:
        return self._runner.run(self.manager.put_schema(name, schema, **kwargs))
