"""The ``[storage] use = "redis"`` section: validated by the manifest loader, secrets kept
out of every message."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aether_redis import RedisSettings, RedisStorage
from pydantic import SecretStr

from aether_core import manifest
from aether_core.errors import ConfigurationError, StorageFault
from aether_core.providers import build

SECRET = "s3cr3t-p4ss-w0rd"


def write_manifest(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f'[storage]\nuse = "redis"\n{storage}\n\n[transport]\nuse = "local"\n')
    return path


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ('pool_size = "ten"', '[storage] pool_size: expected int, got "ten"'),
        ("colour = 1", "[storage] colour: unknown key"),
        ('url = "http://127.0.0.1:6379"', "[storage] url: Value error, scheme must be one of"),
        ('prefix = "a{b}"', "[storage] prefix: Value error, must not contain braces"),
        ('tls_cert_file = "c.pem"', "[storage]: Value error, tls_cert_file and tls_key_file"),
        ("socket_timeout = 0", "[storage] socket_timeout: Input should be greater than 0"),
    ],
)
def test_bad_settings_name_file_section_and_key(tmp_path: Path, storage: str, message: str
                                                ) -> None:
    path = write_manifest(tmp_path, storage)
    with pytest.raises(ConfigurationError) as info:
        manifest.load(path)
    assert info.value.detail.startswith(f"{path}: ")
    assert message in info.value.detail


def test_a_password_in_the_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, f'url = "redis://app:{SECRET}@127.0.0.1:6379/0"')
    with pytest.raises(ConfigurationError) as info:
        manifest.load(path)
    assert "[storage] url: Value error, put the password in `password`" in info.value.detail
    assert SECRET not in info.value.detail


def test_the_password_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AETHER_TEST_REDIS_PASSWORD", SECRET)
    path = write_manifest(tmp_path, 'password = "${env:AETHER_TEST_REDIS_PASSWORD}"\n'
                                    'prefix = "prod:"\npool_size = 4')
    loaded = manifest.load(path)
    settings = loaded.storage.settings
    assert isinstance(settings, RedisSettings)
    assert isinstance(settings.password, SecretStr)
    assert settings.password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    store = build(RedisStorage, settings, loaded.info)
    assert isinstance(store, RedisStorage)
    assert store.keys.data[0] == "{prod:}meta"


async def test_a_wrong_password_is_a_storage_fault_that_does_not_contain_it() -> None:
    store = RedisStorage(RedisSettings(username="aether-nobody", password=SecretStr(SECRET),
                                       prefix="pw-test:"))
    with pytest.raises(StorageFault) as info:
        await store.open()
    assert "redis storage redis://127.0.0.1:6379/0: connect failed" in info.value.detail
    assert SECRET not in info.value.detail and SECRET not in repr(info.value)
    await store.close()


async def test_an_unreachable_server_is_a_prompt_storage_fault() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisStorage(RedisSettings(url=f"redis://127.0.0.1:{port}/0", connect_timeout=1))
    with pytest.raises(StorageFault) as info:
        await store.open()
    assert f"127.0.0.1:{port}" in info.value.detail
    with pytest.raises(StorageFault, match="is not open"):
        await store.revision()
