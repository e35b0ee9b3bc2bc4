"""The documentation keeps up with the code (datasette's rule)."""

from __future__ import annotations

import inspect
from pathlib import Path

from aether_core import hookspecs
from aether_core.plugins import KINDS

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
