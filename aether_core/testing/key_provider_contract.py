"""The key-provider contract suite. Subclass :class:`KeyProviderContract` and provide a
``key_provider`` fixture: a started :class:`~aether_core.services.KeyProvider` over key
material of its own (a fresh key file, a fresh KMS alias …), closed after the test.

Providers whose keys rotate outside Aether (``create_version`` raises
:class:`~aether_core.errors.BadRequest`) set ``rotates = False``; the kit then checks
that the refusal changes nothing instead of checking the rotation.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from aether_core.errors import BadRequest
from aether_core.services import KeyProvider

DATA_KEY = bytes(range(32))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


class KeyProviderContract:
    """Every key provider passes these tests unchanged."""

    #: ``False`` when key versions are made outside Aether (see the module doc).
    rotates: ClassVar[bool] = True

    @pytest.fixture
    def key_provider(self) -> KeyProvider:
        pytest.fail("a KeyProviderContract subclass must provide a key_provider fixture")

    def test_the_class_is_named_and_has_a_strict_settings_model(
        self, key_provider: KeyProvider
    ) -> None:
        cls = type(key_provider)
        assert isinstance(cls.name, str) and cls.name
        assert issubclass(cls.Settings, BaseModel)
        with pytest.raises(ValidationError, match="no_such_key"):
            cls.Settings.model_validate({"no_such_key": 1})

    async def test_a_wrapped_key_unwraps_to_the_same_bytes_and_hides_them(
        self, key_provider: KeyProvider
    ) -> None:
        version, wrapped = await key_provider.wrap(DATA_KEY)
        assert isinstance(version, str) and version
        assert DATA_KEY not in wrapped
        assert await key_provider.unwrap(version, wrapped) == DATA_KEY
        again_version, again = await key_provider.wrap(DATA_KEY)
        assert again_version == version
        assert await key_provider.unwrap(again_version, again) == DATA_KEY

    async def test_wrap_uses_the_current_version_which_is_listed_last(
        self, key_provider: KeyProvider
    ) -> None:
        version, _ = await key_provider.wrap(DATA_KEY)
        versions = await key_provider.versions()
        assert versions and versions[-1] == version
        assert await key_provider.current_version() == version
        assert len(set(versions)) == len(versions)

    async def test_a_tampered_wrap_or_unknown_version_raises_never_returns_bytes(
        self, key_provider: KeyProvider
    ) -> None:
        version, wrapped = await key_provider.wrap(DATA_KEY)
        for bad in (_flip(wrapped, len(wrapped) // 2), _flip(wrapped, len(wrapped) - 1),
                    wrapped[:-4]):
            with pytest.raises(Exception):  # noqa: B017 - the contract names no class
                await key_provider.unwrap(version, bad)
        with pytest.raises(Exception) as info:
            await key_provider.unwrap("no-such-version-7f3a", wrapped)
        assert DATA_KEY.hex() not in str(info.value)

    async def test_generated_data_keys_are_fresh_and_unwrap(
        self, key_provider: KeyProvider
    ) -> None:
        plain, version, wrapped = await key_provider.generate_data_key()
        other, _, _ = await key_provider.generate_data_key()
        assert len(plain) == 32 and plain != other
        assert plain not in wrapped
        assert await key_provider.unwrap(version, wrapped) == plain
        short, short_version, short_wrapped = await key_provider.generate_data_key(16)
        assert len(short) == 16
        assert await key_provider.unwrap(short_version, short_wrapped) == short

    async def test_rotation_keeps_old_wraps_readable_until_the_old_version_retires(
        self, key_provider: KeyProvider
    ) -> None:
        old_version, old_wrapped = await key_provider.wrap(DATA_KEY)
        before = await key_provider.versions()
        if not self.rotates:
            with pytest.raises(BadRequest):
                await key_provider.create_version()
            with pytest.raises(BadRequest):
                await key_provider.retire(old_version)
            assert await key_provider.versions() == before
            assert await key_provider.unwrap(old_version, old_wrapped) == DATA_KEY
            return
        new_version = await key_provider.create_version()
        assert new_version != old_version
        assert await key_provider.current_version() == new_version
        assert (await key_provider.versions())[-1] == new_version
        assert old_version in await key_provider.versions()
        assert await key_provider.unwrap(old_version, old_wrapped) == DATA_KEY
        wrapped_version, new_wrapped = await key_provider.wrap(DATA_KEY)
        assert wrapped_version == new_version
        with pytest.raises(BadRequest):
            await key_provider.retire(new_version)
        await key_provider.retire(old_version)
        assert old_version not in await key_provider.versions()
        with pytest.raises(Exception):  # noqa: B017
            await key_provider.unwrap(old_version, old_wrapped)
        assert await key_provider.unwrap(new_version, new_wrapped) == DATA_KEY

    async def test_close_is_idempotent(self, key_provider: KeyProvider) -> None:
        await key_provider.close()
        await key_provider.close()
