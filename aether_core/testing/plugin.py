"""The ``aether`` pytest plugin (entry point ``pytest11``): fixtures for Aether tests.

It makes :class:`aether_core.testing.StorageContract` usable in any project that has
``aether-core[testing]`` installed, and adds a marker for tests that need a real service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aether_core.manager import ConfigManager
from aether_core.storage.memory import MemoryStorage


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "service(name): the test needs a real service (postgres, redis, …); it fails with "
        "how to start it when the service is down, never skips",
    )


@pytest.fixture
async def memory_manager() -> AsyncIterator[ConfigManager]:
    """A started :class:`ConfigManager` over a fresh :class:`MemoryStorage`."""
    async with ConfigManager(MemoryStorage()) as manager:
        yield manager
