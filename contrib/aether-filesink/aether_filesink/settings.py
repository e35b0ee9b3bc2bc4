"""``[[watchers]] use = "file"``: the manifest settings.

Relative paths (``target``, ``template``, ``pid_file``) are relative to the manifest's
directory, like ``${file:…}`` references; without a manifest file, to the current one.
The template is read and compiled while the manifest is checked, so a syntax error is a
manifest error naming the key, not a surprise at the first change.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aether_core.errors import BadRequest
from aether_core.manager import check_name
from aether_core.watch import WatcherSettings
from aether_filesink.render import TemplateProblem, compile_template

_MODE = re.compile(r"^0?[0-7]{3,4}$")


def resolve_path(path: str, manifest_path: Path | None) -> Path:
    """``path`` made absolute against the manifest's directory (or the current one)."""
    resolved = Path(path).expanduser()
    if resolved.is_absolute():
        return resolved
    base = manifest_path.parent if manifest_path is not None else Path.cwd()
    return (base / resolved).absolute()


def _manifest_path(info: ValidationInfo) -> Path | None:
    found: Any = (info.context or {}).get("manifest_path")
    return Path(found) if found is not None else None


def signal_number(name: str) -> signal.Signals:
    """``HUP``, ``SIGHUP`` or ``1`` → :data:`signal.SIGHUP`; ``ValueError`` otherwise."""
    if name.isdigit():
        return signal.Signals(int(name))
    upper = name.upper()
    return signal.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"]


class FileSinkSettings(WatcherSettings):
    """What to render, where to, and how to tell the service."""

    #: The file to write (its directory must exist).
    target: str = Field(min_length=1)
    #: Render this one config's value as JSON (sorted keys, 2-space indent).
    config: str | None = None
    #: Or render this Jinja2 template; it sees ``configs`` (name → value) and ``revision``.
    template: str | None = None
    #: Config names the template sees …
    configs: list[str] = Field(default_factory=list)
    #: … and/or every config whose name starts with this.
    prefix: str | None = None
    #: Permission bits of the target, octal.
    mode: str = "0644"
    #: Run this after each change of the file (an argv list; no shell).
    reload_command: list[str] | None = None
    #: Or send this signal (``HUP``, ``SIGUSR1`` …) to the pid in ``pid_file``.
    reload_signal: str | None = None
    pid_file: str | None = None
    #: Seconds the reload command may run before it is killed.
    reload_timeout: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("target")
    @classmethod
    def _target_directory_exists(cls, target: str, info: ValidationInfo) -> str:
        path = resolve_path(target, _manifest_path(info))
        if not path.parent.is_dir():
            raise PydanticCustomError(
                "target_dir", "directory {dir} does not exist", {"dir": str(path.parent)}
            )
        if path.is_dir():
            raise PydanticCustomError("target_dir", "{path} is a directory", {"path": str(path)})
        return str(path)

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, template: str | None, info: ValidationInfo) -> str | None:
        if template is None:
            return None
        path = resolve_path(template, _manifest_path(info))
        try:
            compile_template(path)
        except TemplateProblem as exc:
            raise PydanticCustomError("template", "{problem}", {"problem": str(exc)}) from None
        return str(path)

    @field_validator("pid_file")
    @classmethod
    def _absolute_pid_file(cls, pid_file: str | None, info: ValidationInfo) -> str | None:
        return None if pid_file is None else str(resolve_path(pid_file, _manifest_path(info)))

    @field_validator("config")
    @classmethod
    def _config_name(cls, name: str | None) -> str | None:
        if name is not None:
            _check(name)
        return name

    @field_validator("configs")
    @classmethod
    def _config_names(cls, names: list[str]) -> list[str]:
        for name in names:
            _check(name)
        return names

    @field_validator("mode")
    @classmethod
    def _octal(cls, mode: str) -> str:
        if not _MODE.match(mode):
            raise PydanticCustomError("mode", 'must be octal permission bits such as "0640"')
        return mode

    @field_validator("reload_signal")
    @classmethod
    def _known_signal(cls, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return signal_number(name).name
        except (KeyError, ValueError):
            raise PydanticCustomError(
                "signal", "'{name}' is not a signal name (HUP, USR1, SIGTERM …)", {"name": name}
            ) from None

    @field_validator("reload_command")
    @classmethod
    def _non_empty_argv(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and (not argv or not argv[0]):
            raise PydanticCustomError(
                "argv", 'must be a non-empty argv list, e.g. ["nginx", "-s", "reload"]'
            )
        return argv

    @model_validator(mode="after")
    def _one_source_one_reload(self) -> FileSinkSettings:
        if (self.config is None) == (self.template is None):
            raise PydanticCustomError(
                "source", "give exactly one of `config` (one config as JSON) or `template`"
            )
        if self.config is not None and (self.configs or self.prefix is not None):
            raise PydanticCustomError(
                "source", "`configs` and `prefix` go with `template`, not with `config`"
            )
        if self.template is not None and not self.configs and self.prefix is None:
            raise PydanticCustomError(
                "source", "a template needs `configs` (names) or `prefix` to see any config"
            )
        if self.reload_command is not None and self.reload_signal is not None:
            raise PydanticCustomError(
                "reload", "give `reload_command` or `reload_signal`, not both"
            )
        if (self.reload_signal is None) != (self.pid_file is None):
            raise PydanticCustomError("reload", "`reload_signal` and `pid_file` go together")
        return self


def _check(name: str) -> None:
    try:
        check_name(name)
    except BadRequest as exc:
        raise PydanticCustomError("config_name", "{detail}", {"detail": exc.detail}) from None
