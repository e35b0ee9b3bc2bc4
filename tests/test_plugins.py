"""Plugin loading: built-ins through the same hooks, only what is asked for, loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_fixtures import install_fake_plugin, storage_plugin

from aether_core.errors import PluginError
from aether_core.plugins import make_plugins


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_register_through_the_hooks() -> None:
    plugins = make_plugins()
    assert plugins.names("storage") == ["memory", "sqlite"]
    assert "local" in plugins.names("transport")
    assert {e.plugin for e in plugins.by_plugin()["aether-core"]} == {"aether-core"}


def test_only_requested_plugins_are_loaded(site: Path) -> None:
    install_fake_plugin(site, "fancy", storage_plugin("fancy"))
    install_fake_plugin(site, "broken", "raise RuntimeError('boom at import')\n")
    assert "fancy" not in make_plugins().names("storage")  # installed, not asked for
    assert "fancy" in make_plugins(["fancy"]).names("storage")  # 'broken' never imported


def test_a_plugin_that_raises_on_import_names_itself(site: Path) -> None:
    install_fake_plugin(site, "broken", "raise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError, match=r"plugin 'broken' .* failed to import: "
                       r"RuntimeError: boom at import"):
        make_plugins(["broken"])


def test_a_missing_plugin_is_named_with_what_is_installed(site: Path) -> None:
    with pytest.raises(PluginError, match=r"plugin 'nope' is not installed"):
        make_plugins(["nope"])


def test_two_providers_with_one_name_stop_start_up(site: Path) -> None:
    install_fake_plugin(site, "one", storage_plugin("same", "A"))
    install_fake_plugin(site, "two", storage_plugin("same", "B"))
    with pytest.raises(PluginError, match=r"two storage providers are named 'same'.*"
                       r"plugin 'one'.*plugin 'two'"):
        make_plugins(["one", "two"])


def test_a_plugin_may_not_take_a_builtin_name(site: Path) -> None:
    install_fake_plugin(site, "evil", storage_plugin("sqlite"))
    with pytest.raises(PluginError, match="two storage providers are named 'sqlite'"):
        make_plugins(["evil"])


def test_a_misspelt_hook_fails_at_start_up(site: Path) -> None:
    install_fake_plugin(site, "typo", """
        from aether_core.plugins import hookimpl

        @hookimpl
        def aether_register_storag(register):
            pass
    """)
    with pytest.raises(PluginError, match="unknown hook"):
        make_plugins(["typo"])


def test_a_provider_without_a_name_is_refused(site: Path) -> None:
    install_fake_plugin(site, "anon", """
        from aether_core.plugins import hookimpl

        class Nameless:
            pass

        @hookimpl
        def aether_register_storage(register):
            register(Nameless)
    """)
    with pytest.raises(PluginError, match="without a 'name'"):
        make_plugins(["anon"])


def test_a_plugin_can_be_disabled_by_name(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_plugin(site, "fancy", storage_plugin("fancy"))
    monkeypatch.setenv("AETHER_DISABLE_PLUGINS", "other, fancy")
    assert "fancy" not in make_plugins(["fancy"]).names("storage")


def test_each_plugin_manager_is_independent(site: Path) -> None:
    install_fake_plugin(site, "fancy", storage_plugin("fancy"))
    first = make_plugins(["fancy"])
    second = make_plugins()
    assert first.manager is not second.manager
    assert "fancy" not in second.names("storage")


def test_the_kernel_imports_no_plugin_and_no_web_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, aether_core\n"
        "for m in pkgutil.walk_packages(aether_core.__path__, 'aether_core.'):\n"
        "    if m.name != 'aether_core.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in\n"
        "    {'litestar', 'uvicorn', 'starlette', 'fastapi', 'httpx', 'redis', 'psycopg',\n"
        "     'boto3'} or (n.startswith('aether_') and not n.startswith('aether_core')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""
