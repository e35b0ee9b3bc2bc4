"""The documentation keeps up with the code (datasette's rule)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from aether_core import hookspecs
from aether_core.plugins import BUILTIN, KINDS, installed_plugins, make_plugins

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_names() -> list[str]:
    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("aether_")]


def test_every_hook_has_a_section_in_the_plugin_hooks_page() -> None:
    page = (DOCS / "plugin-hooks.md").read_text()
    missing = [name for name in hook_names() if f"### {name}\n" not in page]
    assert missing == []


def test_every_provider_kind_has_a_hook() -> None:
    assert set(KINDS.values()) <= set(hook_names())


def test_every_hook_states_its_contract() -> None:
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc.splitlines()) >= 3, f"{name} needs a contract in its docstring"


# -- the generated reference pages (scripts/docs_reference.py) -------------------------

ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "scripts"))

import docs_reference  # noqa: E402 - found through the path set just above


def test_every_hook_is_in_the_hook_reference_with_its_contract() -> None:
    page = docs_reference.hooks_page()
    for name in hook_names():
        assert f"\n## {name}\n" in page, name
        summary = (inspect.getdoc(getattr(hookspecs, name)) or "").splitlines()[0]
        assert docs_reference.code_roles(summary) in page, f"{name}: summary missing"


def _section(page: str, heading: str) -> str:
    start = page.index(heading + "\n")
    end = page.find("\n### ", start + len(heading))
    return page[start:end if end != -1 else None]


def test_every_manifest_key_of_the_kernel_and_its_providers_is_documented() -> None:
    from aether_core.manifest import NodeSettings, PluginsSettings, SecretsSettings

    page = docs_reference.manifest_page()
    kernel = {"### [node]": NodeSettings, "### [secrets]": SecretsSettings,
              "### [plugins]": PluginsSettings}
    builtins = {f"### {entry.kind}: {entry.name}": entry.cls.Settings
                for entry in make_plugins().by_plugin()[BUILTIN]}
    assert "### storage: sqlite" in builtins and "### key_provider: local" in builtins
    undocumented = []
    for heading, model in {**kernel, **builtins}.items():
        section = _section(page, heading)
        descriptions = docs_reference.field_docs(model)
        for key in model.model_fields:
            if f"| `{key}` |" not in section:
                undocumented.append(f"{heading} {key}: missing from the reference")
            elif not descriptions[key]:
                undocumented.append(f"{heading} {key}: no description (add a #: comment)")
    assert undocumented == []


def test_every_manifest_section_is_in_the_manifest_guide() -> None:
    from aether_core.manifest import MULTI, SINGLE

    guide = (DOCS / "manifest.md").read_text()
    for section in ["node", "plugins", *SINGLE]:
        assert f"`[{section}]`" in guide, section
    for section in MULTI:
        assert f"`[[{section}]]`" in guide, section


def test_every_workspace_provider_is_in_the_manifest_reference() -> None:
    page = docs_reference.manifest_page()
    installed = installed_plugins()
    names = [n for n in docs_reference.workspace_plugin_names() if n in installed]
    assert "etcd" in names and "admin" in names
    for name in names:
        for entry in make_plugins([name]).by_plugin().get(name, []):
            assert f"### {entry.kind}: {entry.name}\n" in page, (name, entry.name)


def _route_operations() -> set[tuple[str, str]]:
    """Every (method, path) the admin app routes, from its route table (not from the
    OpenAPI document, so a route left out of the schema is caught too)."""
    from aether_admin.app import create_app

    from aether_core.manager import ConfigManager
    from aether_core.storage.memory import MemoryStorage

    app = create_app(ConfigManager(MemoryStorage()))
    found = set()
    for route in app.routes:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        if path == "/docs" or path.startswith("/docs/"):
            continue  # the OpenAPI document and its viewers
        for method in getattr(route, "methods", ()):
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, path))
    return found


def test_every_api_route_is_in_the_http_api_reference_with_a_summary() -> None:
    page = docs_reference.api_page()
    operations = _route_operations()
    assert ("POST", "/login") in operations and ("GET", "/configs/{name}") in operations
    missing = sorted(f"{m} {p}" for m, p in operations if f"### `{m} {p}`\n" not in page)
    assert missing == []
    for method, path, op in docs_reference.operations(docs_reference.openapi()):
        assert op.get("summary"), f"{method} {path} has no summary"
