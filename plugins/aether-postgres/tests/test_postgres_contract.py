"""PostgresStorage passes the kernel's storage contract unchanged, as a shared store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aether_postgres import PostgresStorage

from aether_core.testing import StorageContract

MakeStorage = Callable[..., Awaitable[PostgresStorage]]


class TestPostgresStorage(StorageContract):
    @pytest.fixture
    async def storage(self, make_storage: MakeStorage) -> PostgresStorage:
        return await make_storage()

    @pytest.fixture
    async def peer_storage(self, make_storage: MakeStorage, storage: PostgresStorage
                           ) -> PostgresStorage:
        return await make_storage()
