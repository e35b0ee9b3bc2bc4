"""``[secrets]`` in the manifest: validated against the key provider, built by the node."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from aether_core import manifest
from aether_core.errors import ConfigurationError
from aether_core.node import Node
from aether_core.secrets.local_keys import LocalKeyProvider, LocalKeySettings

MARKER = "canary-manifest-0d4e"


def write(tmp_path: Path, secrets: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f"""
[node]
name = "n1"
data_dir = "{tmp_path / 'data'}"

[storage]
use = "sqlite"

[transport]
use = "local"

{secrets}
""")
    return path


def test_without_a_section_the_local_provider_is_the_default(tmp_path: Path) -> None:
    resolved = manifest.load(write(tmp_path, ""))
    assert resolved.secrets is not None
    assert (resolved.secrets.use, resolved.secrets.kind) == ("local", "key_provider")
    assert resolved.secrets.options.overlap == 3600.0
    assert isinstance(resolved.secrets.settings, LocalKeySettings)


def test_kernel_and_provider_keys_are_validated_apart(tmp_path: Path) -> None:
    resolved = manifest.load(write(tmp_path, """
[secrets]
key_provider = "local"
key_file = "keys/aether.keys"
overlap = 60
window = 600
"""))
    assert resolved.secrets is not None
    assert resolved.secrets.options.overlap == 60 and resolved.secrets.options.window == 600
    settings = resolved.secrets.settings
    assert isinstance(settings, LocalKeySettings)
    assert settings.key_file == Path("keys/aether.keys")


@pytest.mark.parametrize("section, message", [
    ('key_provider = "nope"', "plugin 'nope' is not installed"),
    ("colour = 3", "[secrets] colour: unknown key"),
    ('overlap = "long"', "[secrets] overlap: expected float"),
    ("window = -5", "[secrets] window"),
    ('key_file = "a"\nkey = "${env:AETHER_TEST_SECRETS_KEY}"', "key or key_file, not both"),
])
def test_bad_sections_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   section: str, message: str) -> None:
    monkeypatch.setenv("AETHER_TEST_SECRETS_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(ConfigurationError) as caught:
        manifest.load(write(tmp_path, "[secrets]\n" + section))
    assert "aether.toml" in caught.value.detail and message in caught.value.detail


def test_an_inline_key_is_refused_and_not_echoed(tmp_path: Path) -> None:
    inline = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ConfigurationError) as caught:
        manifest.load(write(tmp_path, f'[secrets]\nkey = "{inline}"'))
    assert "[secrets] key" in caught.value.detail and "reference" in caught.value.detail
    assert inline not in caught.value.detail


async def test_a_node_builds_the_secret_manager_from_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("AETHER_TEST_SECRETS_KEY", key)
    node = Node(manifest.load(write(tmp_path, """
[secrets]
key = "${env:AETHER_TEST_SECRETS_KEY}"
key_version = "7"
overlap = 5
""")))
    await node.start()
    try:
        assert node.secrets is not None and isinstance(node.secrets.keys, LocalKeyProvider)
        assert node.secrets.overlap == 5
        info = await node.secrets.put("svc/token", MARKER)
        assert info.versions[0].key_version == "7"
        assert (await node.secrets.reveal("svc/token")).value == MARKER
    finally:
        await node.stop()
    assert node.secrets is None
    assert not (tmp_path / "data" / "secrets.keys").exists()  # the key came from the env
    assert MARKER.encode() not in (tmp_path / "data" / "aether.db").read_bytes()


async def test_the_default_key_file_lives_in_the_data_dir(tmp_path: Path) -> None:
    node = Node(manifest.load(write(tmp_path, "")))
    await node.start()
    try:
        assert node.secrets is not None
        await node.secrets.put("a", MARKER)
    finally:
        await node.stop()
    key_file = tmp_path / "data" / "secrets.keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_a_node_with_an_unreadable_key_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    key_file = tmp_path / "data" / "secrets.keys"
    key_file.write_text("{}")
    key_file.chmod(0o644)
    node = Node(manifest.load(write(tmp_path, "")))
    with pytest.raises(ConfigurationError, match="chmod 600"):
        await node.start()
    assert node.manager is None and node.secrets is None
