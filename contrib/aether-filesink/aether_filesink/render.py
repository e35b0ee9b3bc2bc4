"""Turning configs into the target file's bytes: one config as JSON, or a template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import msgspec


class TemplateProblem(ValueError):
    """The template cannot be read or compiled, or rendering it failed."""


def render_json(value: Any) -> bytes:
    """``value`` as stable, readable JSON: sorted keys, 2-space indent, final newline."""
    return msgspec.json.format(msgspec.json.encode(value, order="sorted"), indent=2) + b"\n"


def _to_json(value: Any, indent: int | None = None) -> str:
    # Jinja's own ``tojson`` escapes <, >, & and ' for HTML; config files want plain JSON.
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    # StrictUndefined: a template that uses a config that is not there fails loudly
    # instead of writing an empty value into a service's configuration. Templates are
    # the operator's files (trusted); config values are data and are never evaluated.
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["to_json"] = _to_json
    return env


def compile_template(path: Path) -> jinja2.Template:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateProblem(f"template file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateProblem(f"cannot read template {path} ({exc})") from None
    try:
        return _environment().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"{path}:{exc.lineno}: {exc.message}") from None


def render_template(template: jinja2.Template, configs: dict[str, Any], revision: int) -> bytes:
    """Render with ``configs`` (name → value) and ``revision`` in scope."""
    try:
        return template.render(configs=configs, revision=revision).encode()
    except jinja2.TemplateError as exc:
        raise TemplateProblem(f"rendering failed: {type(exc).__name__}: {exc}") from None
