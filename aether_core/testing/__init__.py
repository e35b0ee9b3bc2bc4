"""Test kits that ship with the kernel, so every backend runs the same suite.

A third-party storage backend runs the whole storage contract with::

    from aether_core.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self):
            store = MyStorage(...)
            await store.open()
            yield store
            await store.close()
"""

from aether_core.testing.contract import StorageContract

__all__ = ["StorageContract"]
