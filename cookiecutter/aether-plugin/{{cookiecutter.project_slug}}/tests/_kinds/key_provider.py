"""The kernel's key-provider contract, run against this plugin's provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aether_core.testing import KeyProviderContract

from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}


class Test{{ cookiecutter.class_name }}(KeyProviderContract):
    rotates = False  # keys from the manifest rotate outside Aether

    @pytest.fixture
    async def key_provider(self) -> AsyncIterator[{{ cookiecutter.class_name }}]:
        provider = {{ cookiecutter.class_name }}({"1": b"a" * 32, "2": b"b" * 32}, current="2")
        await provider.start()
        yield provider
        await provider.close()
