"""Plugin loading: a manager built per use, never held as a module global.

Built-ins register through the same hooks as third-party plugins. Besides them, only
the plugins asked for are loaded — the ones the manifest names — so a broken package
that happens to be installed cannot break a node that does not use it. Order comes
from the request, never from entry-point order.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from aether_core import hookspecs
from aether_core.errors import PluginError

ENTRY_POINT_GROUP = "aether"
#: Comma-separated plugin names that are never loaded (tox's TOX_DISABLED_EXTERNAL_PLUGINS).
DISABLE_ENV = "AETHER_DISABLE_PLUGINS"
BUILTIN = "aether-core"

hookimpl = pluggy.HookimplMarker("aether")

KINDS = {
    "storage": "aether_register_storage",
    "transport": "aether_register_transport",
    "auth": "aether_register_auth",
    "watcher": "aether_register_watchers",
    "service": "aether_register_services",
    "key_provider": "aether_register_key_providers",
}


@dataclass(frozen=True)
class ProviderEntry:
    kind: str
    name: str
    cls: type[Any]
    plugin: str


@dataclass
class Plugins:
    """A loaded plugin manager and the providers its plugins registered."""

    manager: pluggy.PluginManager
    providers: dict[str, dict[str, ProviderEntry]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> type[Any]:
        """The provider class of ``kind`` called ``name``, or a :class:`PluginError`."""
        found = self.providers.get(kind, {}).get(name)
        if found is None:
            known = ", ".join(sorted(self.providers.get(kind, {}))) or "none"
            raise PluginError(
                f"no {kind} provider named {name!r} (available: {known}); "
                f"is the plugin that provides it installed?"
            )
        return found.cls

    def names(self, kind: str) -> list[str]:
        return sorted(self.providers.get(kind, {}))

    def by_plugin(self) -> dict[str, list[ProviderEntry]]:
        out: dict[str, list[ProviderEntry]] = {}
        for entries in self.providers.values():
            for entry in entries.values():
                out.setdefault(entry.plugin, []).append(entry)
        return out

    @property
    def hook(self) -> Any:
        return self.manager.hook


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points in group ``aether``, by name (nothing is imported)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _disabled() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def load_entry_point(name: str) -> ModuleType:
    """Import the plugin called ``name``; every failure is one :class:`PluginError`."""
    available = installed_plugins()
    ep = available.get(name)
    if ep is None:
        known = ", ".join(sorted(available)) or "none installed"
        raise PluginError(
            f"plugin {name!r} is not installed (entry point group {ENTRY_POINT_GROUP!r}; "
            f"installed: {known})"
        )
    try:
        module = ep.load()
    except Exception as exc:
        raise PluginError(
            f"plugin {name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(module, ModuleType):
        raise PluginError(f"plugin {name!r} ({ep.value}) must point at a module")
    return module


def make_plugins(
    requested: Iterable[str] = (), *, extra: Iterable[tuple[str, object]] = ()
) -> Plugins:
    """Build a plugin manager with the built-ins, the ``requested`` entry points (in that
    order, each once) and ``extra`` already-imported ``(name, module)`` pairs.

    :raises PluginError: a plugin is missing, fails to import, implements a hook that
        does not exist, or registers a provider name that is taken.
    """
    from aether_core import builtins

    pm = pluggy.PluginManager("aether")
    pm.add_hookspecs(hookspecs)
    pm.register(builtins, name=BUILTIN)
    disabled = _disabled()
    # A manifest names providers; those the built-ins provide need no entry point.
    builtin_names = {name for table in _collect(Plugins(manager=pm)).providers.values()
                     for name in table}
    seen = {BUILTIN, *builtin_names}
    for name in requested:
        if name in seen or name in disabled:
            continue
        seen.add(name)
        _register(pm, name, load_entry_point(name))
    for name, module in extra:
        _register(pm, name, module)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return _collect(Plugins(manager=pm))


def _register(pm: pluggy.PluginManager, name: str, module: object) -> None:
    try:
        pm.register(module, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc


def _collect(plugins: Plugins) -> Plugins:
    """Call every ``aether_register_*`` hook, remembering which plugin gave what."""
    for kind, hook_name in KINDS.items():
        table = plugins.providers.setdefault(kind, {})
        for impl in getattr(plugins.manager.hook, hook_name).get_hookimpls():

            def register(cls: type[Any], *, _kind: str = kind, _plugin: str = impl.plugin_name,
                         _table: dict[str, ProviderEntry] = table) -> None:
                provider = getattr(cls, "name", None)
                if not isinstance(provider, str) or not provider:
                    raise PluginError(
                        f"plugin {_plugin!r} registered {_kind} class {cls.__qualname__} "
                        "without a 'name'"
                    )
                if provider in _table:
                    other = _table[provider]
                    raise PluginError(
                        f"two {_kind} providers are named {provider!r}: "
                        f"{other.cls.__module__}.{other.cls.__qualname__} (plugin "
                        f"{other.plugin!r}) and {cls.__module__}.{cls.__qualname__} "
                        f"(plugin {_plugin!r})"
                    )
                _table[provider] = ProviderEntry(_kind, provider, cls, _plugin)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    return plugins
