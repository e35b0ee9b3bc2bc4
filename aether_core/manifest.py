"""The TOML manifest: which plugins make up a node, and their settings.

Loading happens in two steps so that nothing is built from a bad file: :func:`read`
parses the TOML and interpolates ``${env:NAME}`` / ``${file:PATH}``; :func:`resolve`
loads the plugins the manifest names and validates every section against its
provider's settings model. Every error names file, section and key::

    aether.toml: [storage] pool_size: expected int, got "ten"
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aether_core.errors import ConfigurationError
from aether_core.plugins import Plugins, installed_plugins, make_plugins
from aether_core.providers import NodeInfo

DEFAULT_PATH = Path("aether.toml")
_REF = re.compile(r"\$\{(env|file):([^}]*)\}")

#: Sections naming one provider, and the provider kind each names.
SINGLE = {"storage": "storage", "transport": "transport", "auth": "auth"}
#: Array-of-tables sections, each entry naming one provider.
MULTI = {"services": "service", "watchers": "watcher"}


class NodeSettings(BaseModel):
    """``[node]``."""

    model_config = ConfigDict(extra="forbid")
    #: The node's name in logs, in Raft membership and as the author of its writes.
    name: str = "node-1"
    #: Where the node keeps its files (SQLite database, keys); relative to the
    #: working directory.
    data_dir: Path = Path(".aether")


class SecretsSettings(BaseModel):
    """``[secrets]``; the key provider's own keys sit beside ``key_provider`` and are
    validated by that provider's settings model."""

    model_config = ConfigDict(extra="allow")
    #: The key provider that wraps data keys (``local``, ``kms``, …).
    key_provider: str = "local"
    #: Seconds during which clients receive ``previous`` beside ``current`` after a
    #: promotion or rollback.
    overlap: float = Field(default=3600.0, ge=0)
    #: Default seconds to promote a staged secret (none: no limit).
    window: float | None = Field(default=86_400.0, gt=0)


class PluginsSettings(BaseModel):
    """``[plugins]``: extra plugins to load (CLI commands, …) beyond those ``use`` names."""

    model_config = ConfigDict(extra="forbid")
    #: Plugin (entry point) names to load although no ``use`` names them.
    load: list[str] = []


@dataclass
class Section:
    """One provider section: where it came from, the provider and its validated settings."""

    label: str  # "[storage]" or "[[services]] #1"
    kind: str
    use: str
    settings: BaseModel


@dataclass
class SecretsSection(Section):
    """``[secrets]``: the key provider (``settings`` are its own) and the kernel's options."""

    options: SecretsSettings


@dataclass
class Manifest:
    """A validated manifest, ready to build a node from."""

    path: Path | None
    node: NodeSettings
    storage: Section
    transport: Section
    auth: Section | None
    services: list[Section] = field(default_factory=list)
    watchers: list[Section] = field(default_factory=list)
    plugins: Plugins | None = None
    secrets: SecretsSection | None = None

    @property
    def info(self) -> NodeInfo:
        return NodeInfo(name=self.node.name, data_dir=self.node.data_dir,
                        manifest_path=self.path)


@dataclass
class RawManifest:
    """The parsed TOML after interpolation, plus the uninterpolated text for messages."""

    path: Path | None
    data: dict[str, Any]
    raw: dict[str, Any]

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "(default manifest)"

    def plugin_names(self) -> list[str]:
        """Plugins to load, in manifest order: every ``use`` value, then ``[plugins] load``."""
        names: list[str] = []
        for section in SINGLE:
            use = self.data.get(section, {}).get("use") if isinstance(
                self.data.get(section), dict) else None
            if isinstance(use, str):
                names.append(use)
        for section in MULTI:
            entries = self.data.get(section, [])
            if isinstance(entries, list):
                names.extend(e["use"] for e in entries
                             if isinstance(e, dict) and isinstance(e.get("use"), str))
        secrets = self.data.get("secrets")
        if isinstance(secrets, dict) and isinstance(secrets.get("key_provider"), str):
            names.append(secrets["key_provider"])
        plugins = self.data.get("plugins", {})
        if isinstance(plugins, dict) and isinstance(plugins.get("load"), list):
            names.extend(n for n in plugins["load"] if isinstance(n, str))
        return names


def default_data() -> dict[str, Any]:
    """The embedded default: one node, sqlite in ./.aether, local transport, and the
    jwt auth and admin API where those are installed."""
    data: dict[str, Any] = {
        "node": {"name": "node-1", "data_dir": ".aether"},
        "storage": {"use": "sqlite"},
        "transport": {"use": "local"},
    }
    if "admin" in installed_plugins():
        data["auth"] = {"use": "jwt"}
        data["services"] = [{"use": "admin", "listen": "127.0.0.1:8080"}]
    return data


def read(path: Path | None) -> RawManifest:
    """Parse and interpolate a manifest file (the embedded default when ``path`` is None)."""
    if path is None:
        data = default_data()
        return RawManifest(path=None, data=data, raw=data)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: no such manifest file") from None
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read manifest ({exc.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where}: invalid TOML: {exc}") from None
    data = _interpolate(raw, path.parent, where, [])
    return RawManifest(path=path, data=data, raw=raw)


def _interpolate(value: Any, base: Path, where: str, loc: list[str | int]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, base, where, [*loc, k]) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, base, where, [*loc, i]) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        source, ref = match.group(1), match.group(2).strip()
        if source == "env":
            if ref not in os.environ:
                raise ConfigurationError(
                    f"{where}: {_label(loc)}: environment variable {ref} is not set"
                )
            return os.environ[ref]
        file = Path(ref).expanduser()
        file = file if file.is_absolute() else base / file
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{where}: {_label(loc)}: cannot read {file} ({exc.strerror})"
            ) from None

    return _REF.sub(substitute, value)


def _label(loc: list[str | int]) -> str:
    """``[storage] pool_size`` / ``[[services]] #2 listen`` / ``[node]`` for a location."""
    if not loc:
        return "(top level)"
    section, rest = loc[0], list(loc[1:])
    if section in MULTI and rest and isinstance(rest[0], int):
        head = f"[[{section}]] #{rest[0] + 1}"
        rest = rest[1:]
    else:
        head = f"[{section}]"
    key = ".".join(str(p) for p in rest)
    return f"{head} {key}".rstrip()


_TYPE_WORDS = {
    "int": "int", "float": "float", "bool": "bool", "string": "str", "list": "list",
    "dict": "table", "model": "table", "path": "path",
}


def _describe(error: Any, raw_value: Any) -> str:
    kind: str = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    for prefix, word in _TYPE_WORDS.items():
        if kind.startswith(prefix + "_") and ("type" in kind or "parsing" in kind):
            shown = raw_value if raw_value is not _MISSING else error.get("input")
            if isinstance(shown, str) and "${" in shown:
                return f"expected {word} (the value from {shown} is not one)"
            return f"expected {word}, got {json.dumps(shown, default=str)}"
    return str(error["msg"])


_MISSING = object()


def _raw_at(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return raw


def validate_section(
    manifest: RawManifest, loc: list[str | int], model: type[BaseModel], values: dict[str, Any]
) -> BaseModel:
    """Validate one section; the first problem becomes a :class:`ConfigurationError`.

    Validators see a context: ``manifest_path`` (the file, or ``None``) and ``raw``, the
    section as written, before ``${env:…}``/``${file:…}`` interpolation — so a settings
    model can insist that a secret comes from a reference and is never inline, and can
    resolve relative paths against the manifest's directory.
    """
    raw = _raw_at(manifest.raw, tuple(loc))
    context = {"manifest_path": manifest.path, "raw": None if raw is _MISSING else raw}
    try:
        return model.model_validate(values, context=context)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            where = [*loc, *error["loc"]]
            raw_value = _raw_at(manifest.raw, tuple(where))
            messages.append(f"{_label(where)}: {_describe(error, raw_value)}")
        raise ConfigurationError(f"{manifest.where}: " + "; ".join(messages)) from None


def resolve(manifest: RawManifest, plugins: Plugins | None = None) -> Manifest:
    """Load the plugins ``manifest`` names and validate every section.

    :raises ConfigurationError: naming file, section and key; nothing is built.
    """
    where = manifest.where
    data = manifest.data
    known = {"node", "plugins", "secrets", *SINGLE, *MULTI}
    for key in data:
        if key not in known:
            raise ConfigurationError(
                f"{where}: [{key}]: unknown section (known: {', '.join(sorted(known))})"
            )
    node = validate_section(manifest, ["node"], NodeSettings, data.get("node", {}))
    validate_section(manifest, ["plugins"], PluginsSettings, data.get("plugins", {}))
    if plugins is None:
        try:
            plugins = make_plugins(manifest.plugin_names())
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc.detail}") from None

    def section(loc: list[str | int], kind: str, values: Any) -> Section:
        label = _label(loc)
        if not isinstance(values, dict):
            raise ConfigurationError(f"{where}: {label}: expected a table")
        use = values.get("use")
        if not isinstance(use, str):
            raise ConfigurationError(f"{where}: {label} use: required key is missing"
                                     if use is None else f"{where}: {label} use: expected str")
        try:
            cls = plugins.get(kind, use)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {label} use: {exc.detail}") from None
        settings = validate_section(
            manifest, loc, cls.Settings, {k: v for k, v in values.items() if k != "use"}
        )
        return Section(label=label, kind=kind, use=use, settings=settings)

    for required in ("storage", "transport"):
        if required not in data:
            raise ConfigurationError(f"{where}: [{required}]: required section is missing")
    storage = section(["storage"], "storage", data["storage"])
    transport = section(["transport"], "transport", data["transport"])
    storage_cls = plugins.get("storage", storage.use)
    transport_cls = plugins.get("transport", transport.use)
    if storage_cls.shared and not transport_cls.supports_shared_storage:
        raise ConfigurationError(
            f"{where}: [transport] use = {transport.use!r} cannot run over "
            f"[storage] use = {storage.use!r}, which several nodes share: give each "
            f"{transport.use} node its own store (sqlite or memory)"
        )
    lists: dict[str, list[Section]] = {}
    for name, kind in MULTI.items():
        entries = data.get(name, [])
        if not isinstance(entries, list):
            raise ConfigurationError(f"{where}: [[{name}]]: expected an array of tables")
        lists[name] = [section([name, i], kind, e) for i, e in enumerate(entries)]
    return Manifest(
        path=manifest.path,
        node=node,  # type: ignore[arg-type]
        storage=storage,
        transport=transport,
        auth=section(["auth"], "auth", data["auth"]) if "auth" in data else None,
        services=lists["services"],
        watchers=lists["watchers"],
        plugins=plugins,
        secrets=_secrets_section(manifest, plugins, data.get("secrets", {})),
    )


def _secrets_section(manifest: RawManifest, plugins: Plugins, values: Any) -> SecretsSection:
    """``[secrets]``: the kernel's keys, then the rest against the key provider's model."""
    if not isinstance(values, dict):
        raise ConfigurationError(f"{manifest.where}: [secrets]: expected a table")
    own = set(SecretsSettings.model_fields)
    options = validate_section(manifest, ["secrets"], SecretsSettings,
                               {k: v for k, v in values.items() if k in own})
    assert isinstance(options, SecretsSettings)
    try:
        cls = plugins.get("key_provider", options.key_provider)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{manifest.where}: [secrets] key_provider: {exc.detail}") from None
    settings = validate_section(manifest, ["secrets"], cls.Settings,
                                {k: v for k, v in values.items() if k not in own})
    return SecretsSection(label="[secrets]", kind="key_provider", use=options.key_provider,
                          settings=settings, options=options)


def load(path: Path | None) -> Manifest:
    """Read and resolve a manifest in one step."""
    return resolve(read(path))


def find(explicit: Path | None) -> Path | None:
    """The manifest to use: the one given, else ``$AETHER_MANIFEST``, else ./aether.toml
    if it exists, else none (the embedded default)."""
    if explicit is not None:
        return explicit
    env = os.environ.get("AETHER_MANIFEST")
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None
