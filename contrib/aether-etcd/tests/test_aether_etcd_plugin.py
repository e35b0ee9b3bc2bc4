"""The kernel finds the plugin by its entry point, and the manifest validates its keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from aether_core import manifest
from aether_core.errors import ConfigurationError
from aether_core.plugins import make_plugins

from aether_etcd.provider import EtcdStorage

NAME = "etcd"
SECTION = f'[storage]\nuse = "{NAME}"\n'


def test_the_entry_point_registers_the_provider() -> None:
    plugins = make_plugins([NAME])
    assert plugins.get("storage", NAME) is EtcdStorage


def test_an_unknown_manifest_key_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "aether.toml"
    path.write_text('[transport]\nuse = "local"\n' + SECTION + "no_such_key = 1\n")
    with pytest.raises(ConfigurationError, match="no_such_key: unknown key"):
        manifest.load(path)
