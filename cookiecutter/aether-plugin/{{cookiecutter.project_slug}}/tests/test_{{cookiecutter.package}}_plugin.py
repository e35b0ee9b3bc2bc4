"""The kernel finds the plugin by its entry point, and the manifest validates its keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from aether_core import manifest
from aether_core.errors import ConfigurationError
from aether_core.plugins import make_plugins

from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}

NAME = "{{ cookiecutter.plugin_name }}"

{%- if cookiecutter.kind == "storage" %}
SECTION = f'[storage]\nuse = "{NAME}"\n'
{%- else %}
BASE = '[storage]\nuse = "memory"\n'
{%- if cookiecutter.kind == "watcher" %}
SECTION = BASE + f'[[watchers]]\nuse = "{NAME}"\n'
{%- elif cookiecutter.kind == "auth" %}
SECTION = BASE + f'[auth]\nuse = "{NAME}"\n'
{%- else %}
SECTION = BASE + f'[secrets]\nkey_provider = "{NAME}"\n'
{%- endif %}
{%- endif %}


def test_the_entry_point_registers_the_provider() -> None:
    plugins = make_plugins([NAME])
    assert plugins.get("{{ cookiecutter.kind }}", NAME) is {{ cookiecutter.class_name }}


def test_an_unknown_manifest_key_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "aether.toml"
    path.write_text('[transport]\nuse = "local"\n' + SECTION + "no_such_key = 1\n")
    with pytest.raises(ConfigurationError, match="no_such_key: unknown key"):
        manifest.load(path)
