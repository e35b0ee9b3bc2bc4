"""The kernel's storage contract, run against this plugin's store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aether_core.testing import StorageContract

from aether_etcd.provider import EtcdStorage


class TestEtcdStorage(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[EtcdStorage]:
        store = EtcdStorage()
        await store.open()
        yield store
        await store.close()
