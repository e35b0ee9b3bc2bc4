"""``[secrets] key_provider = "kms"`` in a manifest: the plugin loads, settings validate,
the node wraps data keys with KMS."""

from __future__ import annotations

from pathlib import Path

import pytest
from aether_kms import KmsKeyProvider, KmsSettings

from aether_core import manifest
from aether_core.errors import ConfigurationError
from aether_core.node import Node

MARKER = "canary-kms-manifest-77"


def write(tmp_path: Path, secrets: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f"""
[node]
data_dir = "{tmp_path / 'data'}"

[storage]
use = "sqlite"

[transport]
use = "local"

[secrets]
key_provider = "kms"
access_key_id = "testing"
secret_access_key = "testing"
{secrets}
""")
    return path


def test_kms_settings_are_validated_with_the_section_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        manifest.load(write(tmp_path, 'alias = "alias/aws/mine"'))
    assert "[secrets] alias" in caught.value.detail
    with pytest.raises(ConfigurationError, match=r"\[secrets\] regoin: unknown key"):
        manifest.load(write(tmp_path, 'regoin = "eu-west-1"'))
    resolved = manifest.load(write(tmp_path, 'alias = "alias/x"\noverlap = 30'))
    assert resolved.secrets is not None and isinstance(resolved.secrets.settings, KmsSettings)
    assert resolved.secrets.options.overlap == 30


async def test_a_node_with_kms_secrets(tmp_path: Path, kms_endpoint: str, kms_alias: str
                                       ) -> None:
    missing = Node(manifest.load(write(
        tmp_path, f'alias = "{kms_alias}"\nendpoint_url = "{kms_endpoint}"')))
    with pytest.raises(ConfigurationError, match=f"{kms_alias}/1"):
        await missing.start()
    node = Node(manifest.load(write(
        tmp_path,
        f'alias = "{kms_alias}"\nendpoint_url = "{kms_endpoint}"\ncreate_missing = true')))
    await node.start()
    try:
        assert node.secrets is not None and isinstance(node.secrets.keys, KmsKeyProvider)
        await node.secrets.put("svc/token", MARKER)
        assert (await node.secrets.reveal("svc/token")).value == MARKER
    finally:
        await node.stop()
    assert MARKER.encode() not in (tmp_path / "data" / "aether.db").read_bytes()
