"""The reference pages of the documentation site, generated from the code.

* the manifest reference from the settings models of the kernel's sections and of
  every provider the workspace's packages register (each key's description is its
  ``#:`` comment or pydantic ``description``);
* the hook reference from the docstrings in :mod:`aether_core.hookspecs`;
* the HTTP API reference from the admin plugin's OpenAPI document (``create_app``
  builds it without a server).

``scripts/docs_hooks.py`` adds these pages to the MkDocs build; ``tests/test_docs.py``
checks them against the code. Run it directly to print one: ``python
scripts/docs_reference.py manifest|hooks|api``.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
#: Generated page paths inside the site.
PAGES = {"manifest": "reference/manifest.md", "hooks": "reference/hooks.md",
         "api": "reference/http-api.md"}
#: Manifest section of each provider kind.
SECTIONS = {
    "storage": "[storage] use", "transport": "[transport] use", "auth": "[auth] use",
    "watcher": "[[watchers]] use", "service": "[[services]] use",
    "key_provider": "[secrets] key_provider",
}


# -- manifest ---------------------------------------------------------------------------


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's description: pydantic's, else the ``#:`` comment above it. A field
    with neither that directly follows a described one (no blank line) shares its
    comment, as in ``#: TLS files`` above ``cert``/``key``."""
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        previous: tuple[str, int] | None = None
        for node in body.body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above, index = [], node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                above.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            text = " ".join(above)
            if not text and previous and previous[1] == node.lineno - 1:
                text = comments.get(previous[0], "")
            comments[node.target.id] = text
            previous = (node.target.id, node.end_lineno or node.lineno)
    return {name: info.description or comments.get(name, "")
            for name, info in model.model_fields.items()}


def _default(info: Any) -> str:
    if info.default is PydanticUndefined:
        if info.default_factory is not None:
            try:
                value = info.default_factory()
            except TypeError:
                return "—"
            return f"`{json.dumps(value, default=str)}`"
        return "**required**"
    if info.default is None:
        return "unset"
    return f"`{json.dumps(info.default, default=str)}`"


def _type(info: Any) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pydantic.types.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("pathlib.", "")
    return f"`{text}`".replace("|", "\\|")


def settings_table(model: type[BaseModel]) -> str:
    docs = field_docs(model)
    if not model.model_fields:
        return "No keys.\n"
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        meaning = " ".join(docs[name].split()).replace("|", "\\|") or "—"
        rows.append(f"| `{name}` | {_type(info)} | {_default(info)} | {meaning} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class ProviderDoc:
    kind: str
    name: str
    plugin: str
    settings: type[BaseModel]
    summary: str


def workspace_plugin_names() -> list[str]:
    """Entry-point names the workspace's packages declare (plugins/*, contrib/*)."""
    names: list[str] = []
    for pyproject in sorted([*ROOT.glob("plugins/*/pyproject.toml"),
                             *ROOT.glob("contrib/*/pyproject.toml")]):
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        names.extend(project.get("entry-points", {}).get("aether", {}))
    return names


def providers() -> list[ProviderDoc]:
    """Built-in providers and those of the workspace's installed plugins, by kind and name."""
    from aether_core.plugins import installed_plugins, make_plugins

    installed = installed_plugins()
    plugins = make_plugins([n for n in workspace_plugin_names() if n in installed])
    out = []
    for kind in SECTIONS:
        for name, entry in sorted(plugins.providers.get(kind, {}).items()):
            doc = inspect.getdoc(entry.cls.Settings) or ""
            out.append(ProviderDoc(kind, name, entry.plugin, entry.cls.Settings,
                                   doc.split("\n\n")[0].replace("\n", " ")))
    return out


def manifest_page() -> str:
    from aether_core.manifest import NodeSettings, PluginsSettings, SecretsSettings

    parts = [
        "# Manifest reference\n",
        "Generated from the settings models by `scripts/docs_reference.py`; every key a "
        "manifest may hold is here. Unknown keys are errors. Strings may contain "
        "`${env:NAME}` and `${file:PATH}`. The guide is [the manifest page](../manifest.md).\n",
        "## Kernel sections\n",
        "### [node]\n", settings_table(NodeSettings),
        "### [secrets]\n",
        "The kernel's keys; the key provider's own keys sit beside them.\n",
        settings_table(SecretsSettings),
        "### [plugins]\n", settings_table(PluginsSettings),
    ]
    current = ""
    for provider in providers():
        if provider.kind != current:
            current = provider.kind
            parts.append(f"## {SECTIONS[current].split()[0]} providers\n")
        where = "built in" if provider.plugin == "aether-core" else f"plugin `{provider.plugin}`"
        parts.append(f'### {provider.kind}: {provider.name}\n')
        parts.append(f'`{SECTIONS[provider.kind]} = "{provider.name}"` ({where}). '
                     f"{provider.summary}\n")
        parts.append(settings_table(provider.settings))
    return "\n".join(parts)


# -- hooks ------------------------------------------------------------------------------


def hook_names() -> list[str]:
    from aether_core import hookspecs

    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("aether_")]


def hooks_page() -> str:
    from aether_core import hookspecs

    source = inspect.getsource(hookspecs)
    order = sorted(hook_names(), key=lambda n: source.index(f"def {n}("))
    parts = ["# Hook reference\n",
             "Generated from the docstrings of `aether_core/hookspecs.py`, which are the "
             "contracts. The guide with examples is [Plugin hooks](../plugin-hooks.md).\n"]
    for name in order:
        function = getattr(hookspecs, name)
        signature = str(inspect.signature(function)).replace("'", "")
        doc = inspect.getdoc(function) or ""
        doc = doc.replace(":param ", "- **").replace(":returns:", "- **returns**:")
        doc = "\n".join(_param_line(line) for line in doc.splitlines())
        parts.append(f"## {name}\n\n```python\ndef {name}{signature}\n```\n\n{code_roles(doc)}\n")
    return "\n".join(parts)


def _param_line(line: str) -> str:
    if line.startswith("- **") and ":" in line and not line.startswith("- **returns**"):
        head, _, rest = line.partition(":")
        return f"{head}**:{rest}"
    return line


def code_roles(text: str) -> str:
    """Sphinx roles (``:class:`x```) as code spans."""
    import re

    text = re.sub(r":(?:class|func|meth|mod|data|attr|exc):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


# -- HTTP API ---------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    from aether_admin.app import create_app

    from aether_core.manager import ConfigManager
    from aether_core.storage.memory import MemoryStorage

    app = create_app(ConfigManager(MemoryStorage()))
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


METHODS = ("get", "put", "post", "delete", "patch")


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, item[method]) for path, item in schema["paths"].items()
            for method in METHODS if method in item]


def api_page() -> str:
    schema = openapi()
    parts = ["# HTTP API reference\n",
             "Generated from the admin plugin's OpenAPI document (a running node serves it "
             "at `/docs/openapi.json`). Errors are RFC 9457 `application/problem+json`. The "
             "guide with a tour is [Admin HTTP API](../admin-api.md).\n"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for method, path, op in operations(schema):
        by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, ops in sorted(by_tag.items()):
        parts.append(f"## {tag}\n")
        for method, path, op in ops:
            parts.append(f"### `{method} {path}`\n")
            parts.append(op.get("summary", "") + "\n")
            if op.get("description"):
                parts.append(op["description"].strip() + "\n")
            params = op.get("parameters", [])
            if params:
                rows = ["| parameter | in | required | meaning |", "|---|---|---|---|"]
                for param in params:
                    text = (param.get("description") or "").replace("\n", " ").replace("|", "\\|")
                    rows.append(f"| `{param['name']}` | {param['in']} | "
                                f"{'yes' if param.get('required') else 'no'} | {text or '—'} |")
                parts.append("\n".join(rows) + "\n")
            statuses = ", ".join(f"`{code}`" for code in op.get("responses", {}))
            if statuses:
                parts.append(f"Responses: {statuses}.\n")
    return "\n".join(parts)


PAGE_BUILDERS = {"manifest": manifest_page, "hooks": hooks_page, "api": api_page}


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in PAGE_BUILDERS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(PAGE_BUILDERS)}")
    print(PAGE_BUILDERS[which]())
