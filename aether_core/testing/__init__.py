"""Test kits that ship with the kernel, so every provider runs the same suite.

A third-party storage backend runs the whole storage contract with::

    from aether_core.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self):
            store = MyStorage(...)
            await store.open()
            yield store
            await store.close()

Watchers subclass :class:`WatcherContract` and key providers
:class:`KeyProviderContract` the same way; each module's docstring lists the fixtures
it needs.
"""

from aether_core.testing.contract import StorageContract
from aether_core.testing.key_provider_contract import KeyProviderContract
from aether_core.testing.watcher_contract import WatcherContract

__all__ = ["KeyProviderContract", "StorageContract", "WatcherContract"]
