"""The ``[storage] use = "s3"`` section, and the S3 behaviour the storage relies on."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aether_s3 import S3Settings, S3Storage
from botocore.exceptions import ClientError
from pydantic import SecretStr

from aether_core import manifest
from aether_core.errors import ConfigurationError, StorageFault
from aether_core.providers import build

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def write_manifest(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f'[storage]\nuse = "s3"\n{storage}\n\n[transport]\nuse = "local"\n')
    return path


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("", "[storage] bucket: required key is missing"),
        ('bucket = "Not_A_Bucket"', "[storage] bucket: Value error, not a valid S3 bucket name"),
        ('bucket = "b-1"\nprefix = "no-slash"', "[storage] prefix: Value error, must be empty"),
        ('bucket = "b-1"\nendpoint_url = "ftp://x"', "[storage] endpoint_url: Value error"),
        ('bucket = "b-1"\npoll_interval = "fast"',
         '[storage] poll_interval: expected float, got "fast"'),
        ('bucket = "b-1"\naccess_key_id = "AKIA"',
         "[storage]: Value error, access_key_id and secret_access_key go together"),
        ('bucket = "b-1"\nregion_name = "x"', "[storage] region_name: unknown key"),
    ],
)
def test_bad_settings_name_file_section_and_key(tmp_path: Path, storage: str, message: str
                                                ) -> None:
    path = write_manifest(tmp_path, storage)
    with pytest.raises(ConfigurationError) as info:
        manifest.load(path)
    assert info.value.detail.startswith(f"{path}: ")
    assert message in info.value.detail


def test_keys_come_from_files_or_the_environment_and_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s3-secret").write_text(SECRET + "\n")
    monkeypatch.setenv("AETHER_TEST_S3_KEY_ID", "AKIAEXAMPLE")
    path = write_manifest(tmp_path, 'bucket = "configs"\n'
                          'access_key_id = "${env:AETHER_TEST_S3_KEY_ID}"\n'
                          'secret_access_key = "${file:s3-secret}"')
    loaded = manifest.load(path)
    settings = loaded.storage.settings
    assert isinstance(settings, S3Settings)
    assert isinstance(settings.secret_access_key, SecretStr)
    assert settings.secret_access_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert isinstance(build(S3Storage, settings, loaded.info), S3Storage)


def test_the_server_honours_if_none_match(s3_client: Any, s3_bucket: str) -> None:
    """The primitive the design rests on (moto >= 5.0.15, AWS since 2024-08)."""
    s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3_client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"1"


async def test_a_missing_bucket_is_a_storage_fault_naming_it(
    make_s3: Callable[..., S3Storage],
) -> None:
    store = make_s3("n1", bucket="no-such-bucket-here")
    with pytest.raises(StorageFault) as info:
        await store.open()
    assert "s3 storage s3://no-such-bucket-here/deploy/: check bucket failed" in info.value.detail


async def test_create_bucket_makes_it(make_s3: Callable[..., S3Storage], s3_client: Any) -> None:
    store = make_s3("n1", bucket="aether-created-here", create_bucket=True)
    await store.open()
    assert (await store.commit([])).records == []
    s3_client.head_bucket(Bucket="aether-created-here")
    s3_client.delete_bucket(Bucket="aether-created-here")


async def test_an_unreachable_endpoint_is_a_prompt_storage_fault_without_the_key() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Storage(S3Settings(
        bucket="b-1", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1,
        connect_timeout=1, access_key_id=SecretStr("AKIA"), secret_access_key=SecretStr(SECRET)))
    with pytest.raises(StorageFault) as info:
        await store.open()
    assert f"127.0.0.1:{port}" in info.value.detail
    assert SECRET not in info.value.detail
    with pytest.raises(StorageFault, match="is not open"):
        await store.revision()
