from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aether_core import ConfigManager, MemoryStorage, SqliteStorage


@pytest.fixture(params=["memory", "sqlite"])
async def manager(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConfigManager]:
    """A started ConfigManager over each built-in store, with a deterministic clock."""
    storage = MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "a.db")
    ticks = iter(range(1_700_000_000, 1_800_000_000))
    async with ConfigManager(storage, clock=lambda: float(next(ticks))) as m:
        yield m
