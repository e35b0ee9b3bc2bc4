"""The manifest: every bad file gets one message naming file, section and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from plugin_fixtures import install_fake_plugin, storage_plugin

from aether_core import manifest
from aether_core.errors import ConfigurationError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_for(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        manifest.load(path)
    return info.value.detail


GOOD = """
    [node]
    name = "n1"
    data_dir = "data"

    [storage]
    use = "sqlite"
    path = "x.db"

    [transport]
    use = "local"
"""


def test_a_good_manifest_resolves_providers_and_settings(tmp_path: Path) -> None:
    m = manifest.load(write(tmp_path, GOOD))
    assert (m.node.name, m.storage.use, m.transport.use) == ("n1", "sqlite", "local")
    assert m.storage.settings.path == "x.db"  # type: ignore[attr-defined]
    assert m.auth is None and m.services == [] and m.watchers == []


def test_no_manifest_is_the_embedded_default() -> None:
    m = manifest.load(None)
    assert (m.storage.use, m.transport.use, str(m.node.data_dir)) == (
        "sqlite", "local", ".aether")


def test_bad_toml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, "[storage\nuse = 1\n")
    assert error_for(path).startswith(f"{path}: invalid TOML: ")


def test_an_unknown_plugin(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('use = "sqlite"', 'use = "sqlitte"'))
    detail = error_for(path)
    assert detail.startswith(f"{path}: ")
    assert "plugin 'sqlitte' is not installed" in detail


def test_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('path = "x.db"', 'path = "x.db"\npool = 3'))
    assert error_for(path) == f"{path}: [storage] pool: unknown key"


def test_an_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\n[storgae]\nuse = 'x'\n")
    assert error_for(path).startswith(f"{path}: [storgae]: unknown section")


def test_a_missing_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('use = "local"', 'listen = "x"'))
    assert error_for(path) == f"{path}: [transport] use: required key is missing"


def test_a_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[storage]\nuse = "memory"\n')
    assert error_for(path) == f"{path}: [transport]: required section is missing"


def test_a_wrong_type_names_section_key_and_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    install_fake_plugin(tmp_path, "pooled", storage_plugin("pooled"))
    path = write(tmp_path, '[storage]\nuse = "pooled"\npool_size = "ten"\n'
                 '[transport]\nuse = "local"\n')
    assert error_for(path) == f'{path}: [storage] pool_size: expected int, got "ten"'


def test_a_wrong_type_in_node(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('name = "n1"', "name = 7"))
    assert error_for(path) == f"{path}: [node] name: expected str, got 7"


def test_an_unset_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHER_TEST_UNSET", raising=False)
    path = write(tmp_path, GOOD.replace('path = "x.db"', 'path = "${env:AETHER_TEST_UNSET}"'))
    assert error_for(path) == (
        f"{path}: [storage] path: environment variable AETHER_TEST_UNSET is not set")


def test_env_and_file_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_TEST_DB", "from-env.db")
    (tmp_path / "name.txt").write_text("from-file\n")
    path = write(tmp_path, GOOD.replace('path = "x.db"', 'path = "${env:AETHER_TEST_DB}"')
                 .replace('name = "n1"', 'name = "${file:name.txt}"'))
    m = manifest.load(path)
    assert m.storage.settings.path == "from-env.db"  # type: ignore[attr-defined]
    assert m.node.name == "from-file"


def test_a_missing_secret_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('name = "n1"', 'name = "${file:nope.txt}"'))
    detail = error_for(path)
    assert detail.startswith(f"{path}: [node] name: cannot read ") and "nope.txt" in detail


def test_a_wrong_type_never_echoes_an_interpolated_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    install_fake_plugin(tmp_path, "pooled", storage_plugin("pooled"))
    monkeypatch.setenv("AETHER_TEST_SECRET", "hunter2-secret")
    path = write(tmp_path, '[storage]\nuse = "pooled"\npool_size = "${env:AETHER_TEST_SECRET}"\n'
                 '[transport]\nuse = "local"\n')
    detail = error_for(path)
    assert "hunter2" not in detail
    assert "[storage] pool_size: expected int (the value from ${env:AETHER_TEST_SECRET}" in detail


def test_a_list_section_entry_is_numbered(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[[watchers]]\nprefix = "x"\n')
    assert error_for(path) == f"{path}: [[watchers]] #1 use: required key is missing"


def test_a_missing_file(tmp_path: Path) -> None:
    assert error_for(tmp_path / "nope.toml").endswith("nope.toml: no such manifest file")
