"""The kernel's storage contract, run against etcd storage over a real etcd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aether_core.testing import StorageContract
from etcd_server import EtcdServer

from aether_etcd.provider import EtcdStorage


@pytest.fixture
def etcd_prefix() -> str:
    return f"aether-test/{uuid.uuid4().hex[:12]}/"


class TestEtcdStorage(StorageContract):
    @pytest.fixture
    async def storage(
        self, etcd_server: EtcdServer, etcd_prefix: str
    ) -> AsyncIterator[EtcdStorage]:
        store = EtcdStorage([etcd_server.url], etcd_prefix, poll_interval=0.02)
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def peer_storage(
        self, etcd_server: EtcdServer, etcd_prefix: str
    ) -> AsyncIterator[EtcdStorage]:
        store = EtcdStorage([etcd_server.url], etcd_prefix, poll_interval=0.02)
        await store.open()
        yield store
        await store.close()
