"""S3Storage passes the kernel's storage contract unchanged (on moto, over HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aether_s3 import S3Storage

from aether_core.testing import StorageContract


class TestS3Storage(StorageContract):
    @pytest.fixture
    async def storage(self, make_s3: Callable[..., S3Storage]) -> AsyncIterator[S3Storage]:
        store = make_s3("node-a")
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def peer_storage(self, make_s3: Callable[..., S3Storage]
                           ) -> AsyncIterator[S3Storage]:
        store = make_s3("node-b")
        await store.open()
        yield store
        await store.close()
