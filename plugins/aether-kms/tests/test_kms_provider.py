"""The ``kms`` key provider against moto's KMS server over HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aether_kms import KmsKeyProvider, KmsSettings
from pydantic import ValidationError

from aether_core import ConfigManager, SqliteStorage
from aether_core.errors import BadRequest, ConfigurationError
from aether_core.records import Write
from aether_core.secrets.errors import (
    KeyProviderUnavailable,
    SecretIntegrityError,
    UnknownKeyVersion,
)
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator
from aether_core.secrets.sealed import SECRET

MARKER = "canary-kms-3c8e41"
Make = Callable[..., KmsKeyProvider]


async def test_a_missing_kms_key_is_a_clear_start_up_error(make_kms: Make, kms_alias: str
                                                          ) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await make_kms().start()
    assert f"{kms_alias}/1" in caught.value.detail and "create_missing" in caught.value.detail


async def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    provider = KmsKeyProvider(KmsSettings(
        endpoint_url="http://127.0.0.1:9", access_key_id="testing",
        secret_access_key="testing", timeout=0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="KMS list_aliases failed"):
        await provider.start()
    with pytest.raises(KeyProviderUnavailable):
        await provider.wrap(os.urandom(32))


def test_aws_reserved_and_malformed_aliases_are_refused() -> None:
    for alias in ("alias/aws/secrets", "aether", "alias/has space"):
        with pytest.raises(ValidationError, match="alias/<name>"):
            KmsSettings(alias=alias)


async def test_wrap_unwrap_and_generate_data_key(make_kms: Make, kms_client: Any,
                                                 kms_alias: str) -> None:
    provider = make_kms(create_missing=True)
    await provider.start()
    assert await provider.versions() == ["1"]
    aliases = {a["AliasName"] for a in kms_client.list_aliases()["Aliases"]}
    assert f"{kms_alias}/1" in aliases
    data_key = os.urandom(32)
    version, wrapped = await provider.wrap(data_key)
    assert version == "1" and data_key not in wrapped
    assert await provider.unwrap(version, wrapped) == data_key
    plain, version, wrapped = await provider.generate_data_key()
    assert len(plain) == 32 and await provider.unwrap(version, wrapped) == plain
    # A second provider (another node) finds the same version and unwraps.
    other = make_kms()
    await other.start()
    assert await other.unwrap("1", wrapped) == plain


async def test_tampered_or_misattributed_wrapped_keys_are_refused(make_kms: Make) -> None:
    provider = make_kms(create_missing=True)
    await provider.start()
    _, wrapped = await provider.wrap(os.urandom(32))
    tampered = bytearray(wrapped)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(SecretIntegrityError):
        await provider.unwrap("1", bytes(tampered))
    with pytest.raises(UnknownKeyVersion, match="/7 does not exist"):
        await provider.unwrap("7", wrapped)
    await provider.create_version()
    # The data key was wrapped by version 1's key: presented as version 2 it is refused.
    with pytest.raises(SecretIntegrityError):
        await provider.unwrap("2", wrapped)


async def test_secrets_over_kms_with_key_rotation(make_kms: Make, kms_client: Any,
                                                  kms_alias: str, tmp_path: Path) -> None:
    provider = make_kms(create_missing=True)
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as config:
        secrets = SecretManager(config, provider)
        await secrets.start()
        values = {f"team-{n}/token": f"{MARKER}-{n}" for n in range(6)}
        for name, value in values.items():
            await secrets.put(name, value)
        await secrets.stage("team-0/token", MARKER + "-next")
        assert (await secrets.reveal("team-3/token")).value == MARKER + "-3"

        finished = await KeyRotator(secrets, batch=4).rotate()
        assert (finished.target, finished.retired, finished.rewrapped) == ("2", ["1"], 6)
        assert await provider.versions() == ["2"]
        aliases = {a["AliasName"]: a.get("TargetKeyId")
                   for a in kms_client.list_aliases()["Aliases"]}
        assert f"{kms_alias}/1" not in aliases
        new_key = kms_client.describe_key(KeyId=aliases[f"{kms_alias}/2"])["KeyMetadata"]
        assert new_key["KeyState"] == "Enabled"
        for name, value in values.items():
            revealed = await secrets.reveal(name)
            assert revealed.value == value
            assert (await secrets.state(name)).versions[0].key_version == "2"
        assert (await secrets.reveal("team-0/token", "pending")).value == MARKER + "-next"
        # A fresh node (empty data-key cache) reads everything through KMS too.
        fresh = SecretManager(config, make_kms())
        await fresh.start()
        assert (await fresh.reveal("team-5/token")).value == MARKER + "-5"
        exported = b"".join([chunk async for chunk in config.export()])
    assert MARKER.encode() not in exported
    assert MARKER.encode() not in (tmp_path / "a.db").read_bytes()


async def test_a_record_wrapped_under_a_retired_kms_key_is_refused(make_kms: Make,
                                                                   kms_client: Any,
                                                                   kms_alias: str,
                                                                   tmp_path: Path) -> None:
    provider = make_kms(create_missing=True)
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as config:
        secrets = SecretManager(config, provider)
        await secrets.start()
        await secrets.put("db", MARKER)
        old = await config.storage.get(SECRET, "db")
        assert old is not None
        old_key = (await provider.versions(), provider._targets["1"])[1]
        await KeyRotator(secrets).rotate()
        state = kms_client.describe_key(KeyId=old_key)["KeyMetadata"]["KeyState"]
        assert state == "Disabled"
        # Put the old record back, as a restore of an old backup would.
        head = await config.storage.get(SECRET, "db")
        assert head is not None
        await config.storage.commit([Write(kind=SECRET, name="db", value=old.value,
                                           expected_version=head.version, meta=old.meta)])
        fresh = SecretManager(config, make_kms())
        await fresh.start()
        with pytest.raises(UnknownKeyVersion, match=f"{kms_alias}/1"):
            await fresh.reveal("db")
    with pytest.raises(BadRequest, match="current"):
        await provider.retire("2")


def test_the_plugin_registers_kms() -> None:
    from aether_core.plugins import make_plugins

    assert make_plugins(["kms"]).get("key_provider", "kms") is KmsKeyProvider

