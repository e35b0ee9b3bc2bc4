"""Shared pieces of the file-sink tests (the module name is unique across the repository)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from aether_core import ConfigManager, MemoryStorage


@pytest.fixture
async def manager() -> AsyncIterator[ConfigManager]:
    async with ConfigManager(MemoryStorage()) as m:
        yield m


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)
