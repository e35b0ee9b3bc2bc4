"""RedisStorage passes the kernel's storage contract unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aether_redis import RedisStorage

from aether_core.testing import StorageContract


class TestRedisStorage(StorageContract):
    @pytest.fixture
    async def storage(self, make_redis: Callable[..., RedisStorage]
                      ) -> AsyncIterator[RedisStorage]:
        store = make_redis("node-a")
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def peer_storage(self, make_redis: Callable[..., RedisStorage]
                           ) -> AsyncIterator[RedisStorage]:
        store = make_redis("node-b")
        await store.open()
        yield store
        await store.close()
