"""The kernel's storage contract, run against this plugin's store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aether_core.testing import StorageContract

from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}


class Test{{ cookiecutter.class_name }}(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[{{ cookiecutter.class_name }}]:
        store = {{ cookiecutter.class_name }}()
        await store.open()
        yield store
        await store.close()
