"""Envelope encryption and the built-in ``local`` key provider."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from aether_core.errors import BadRequest, ConfigurationError
from aether_core.manifest import RawManifest, validate_section
from aether_core.plugins import make_plugins
from aether_core.providers import NodeInfo
from aether_core.secrets import envelope
from aether_core.secrets.errors import SecretIntegrityError, UnknownKeyVersion
from aether_core.secrets.local_keys import LocalKeyProvider, LocalKeySettings

MARKER = b"canary-7f3a9c-envelope"


def test_seal_opens_only_under_its_name_and_version() -> None:
    key = os.urandom(32)
    sealed = envelope.seal(MARKER, key, "billing/db", 3)
    assert MARKER not in sealed
    assert envelope.open_sealed(sealed, key, "billing/db", 3) == MARKER
    for name, version in (("billing/db2", 3), ("billing/db", 4), ("billing", 3)):
        with pytest.raises(SecretIntegrityError) as caught:
            envelope.open_sealed(sealed, key, name, version)
        assert MARKER.decode() not in str(caught.value)


def test_every_flipped_bit_is_refused() -> None:
    key = os.urandom(32)
    sealed = bytearray(envelope.seal(MARKER, key, "a", 1))
    for index in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[index] ^= 0x01
        with pytest.raises(SecretIntegrityError):
            envelope.open_sealed(bytes(flipped), key, "a", 1)
    with pytest.raises(SecretIntegrityError):
        envelope.open_sealed(bytes(sealed[:20]), key, "a", 1)
    with pytest.raises(SecretIntegrityError):
        envelope.open_sealed(bytes(sealed), os.urandom(32), "a", 1)


def test_two_seals_of_one_value_differ() -> None:
    key = os.urandom(32)
    assert envelope.seal(MARKER, key, "a", 1) != envelope.seal(MARKER, key, "a", 1)


async def test_key_file_is_created_0600_on_first_wrap(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secrets.keys"
    provider = LocalKeyProvider(path)
    await provider.start()
    assert not path.exists(), "start must not create the key file"
    data_key = os.urandom(32)
    version, wrapped = await provider.wrap(data_key)
    assert version == "1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data_key not in wrapped
    # A second provider over the same file unwraps it: the key is durable.
    assert await LocalKeyProvider(path).unwrap(version, wrapped) == data_key


async def test_key_versions_rotate_and_retire(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "k")
    data_key = os.urandom(32)
    v1, wrapped1 = await provider.wrap(data_key)
    v2 = await provider.create_version()
    assert (v1, v2) == ("1", "2")
    assert await provider.versions() == ["1", "2"]
    assert await provider.current_version() == "2"
    v, wrapped2 = await provider.wrap(data_key)
    assert v == "2"
    assert await provider.unwrap("1", wrapped1) == data_key
    with pytest.raises(BadRequest, match="current"):
        await provider.retire("2")
    await provider.retire("1")
    assert await provider.versions() == ["2"]
    with pytest.raises(UnknownKeyVersion, match="'1'"):
        await provider.unwrap("1", wrapped1)
    # Retired means gone from the file, not only from memory.
    assert "1" not in json.loads((tmp_path / "k").read_text())["keys"]
    assert await LocalKeyProvider(tmp_path / "k").unwrap("2", wrapped2) == data_key


async def test_wrapped_key_under_the_wrong_version_or_file_is_refused(tmp_path: Path) -> None:
    provider = LocalKeyProvider(tmp_path / "k")
    data_key = os.urandom(32)
    _, wrapped = await provider.wrap(data_key)
    await provider.create_version()
    with pytest.raises(SecretIntegrityError, match="key version '2'"):
        await provider.unwrap("2", wrapped)
    other = LocalKeyProvider(tmp_path / "other")
    await other.wrap(os.urandom(32))
    with pytest.raises(SecretIntegrityError, match="wrong key file"):
        await other.unwrap("1", wrapped)
    with pytest.raises(UnknownKeyVersion):
        await provider.unwrap("7", wrapped)


async def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    await LocalKeyProvider(path).wrap(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        await LocalKeyProvider(path).start()


@pytest.mark.parametrize("content", [
    "not json", '{"format": "something-else"}',
    json.dumps({"format": "aether-local-keys", "current": "1", "keys": {"1": "c2hvcnQ="}}),
    json.dumps({"format": "aether-local-keys", "current": "9", "keys": {}}),
])
async def test_a_broken_key_file_is_a_clear_start_up_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(ConfigurationError, match=str(path)):
        await LocalKeyProvider(path).start()


def _raw(section: dict[str, object]) -> RawManifest:
    return RawManifest(path=Path("aether.toml"), data={"secrets": section},
                       raw={"secrets": section})


async def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = os.urandom(32), os.urandom(32)
    settings = LocalKeySettings(
        key=base64.b64encode(new).decode(), key_version="2",  # type: ignore[arg-type]
        previous_keys={"1": base64.b64encode(old).decode()},  # type: ignore[dict-item]
    )
    provider = LocalKeyProvider.from_settings(settings, NodeInfo())
    assert await provider.versions() == ["1", "2"]
    data_key = os.urandom(32)
    version, wrapped = await provider.wrap(data_key)
    assert version == "2"
    assert await provider.unwrap(version, wrapped) == data_key
    with pytest.raises(BadRequest, match="outside Aether"):
        await provider.create_version()


def test_an_inline_key_is_refused_and_never_echoed() -> None:
    inline = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ConfigurationError) as caught:
        validate_section(_raw({"key": inline}), ["secrets"], LocalKeySettings,
                         {"key": inline})
    assert "reference" in caught.value.detail
    assert inline not in caught.value.detail


def test_a_short_environment_key_is_a_clear_error() -> None:
    settings = LocalKeySettings(key=base64.b64encode(b"short").decode())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="32 bytes, this one has 5"):
        LocalKeyProvider.from_settings(settings, NodeInfo())


def test_local_is_registered_as_a_builtin_key_provider() -> None:
    assert make_plugins().get("key_provider", "local") is LocalKeyProvider
