"""Typed configs: JSON Schema validation, schema binding and compatibility checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from aether_core.errors import BadRequest, ValidationFailed
from aether_core.records import Record


def check_schema_document(name: str, schema: dict[str, Any]) -> None:
    """Refuse a schema that is not itself valid JSON Schema (its ``$schema`` dialect,
    Draft 2020-12 when none is named)."""
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadRequest(
            f"schema {name!r} is not valid JSON Schema at {_path(exc.absolute_path)}: "
            f"{exc.message}"
        ) from None


def schema_errors(schema: dict[str, Any], value: Any) -> list[dict[str, str]]:
    """Every way ``value`` breaks ``schema``, as ``{"path", "message"}``, sorted by path."""
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = [
        {"path": _path(err.absolute_path), "message": err.message}
        for err in validator.iter_errors(value)
    ]
    return sorted(errors, key=lambda e: e["path"])


def validate(config_name: str, schema_name: str, schema: dict[str, Any], value: Any, *,
             hide: list[str] | None = None, ignore: frozenset[str] = frozenset()) -> None:
    """Raise :class:`ValidationFailed` naming the first failing field path.

    :param hide: secret values: a message that would quote one says only what failed.
    :param ignore: paths whose errors do not count.
    """
    errors = [e for e in schema_errors(schema, value) if e["path"] not in ignore]
    for error in errors:
        if any(secret in error["message"] for secret in hide or ()):
            error["message"] = "a secret value does not match the schema here"
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"config {config_name!r} does not match schema {schema_name!r}: "
            f"{first['path']}: {first['message']}",
            errors=errors,
        )


def _path(parts: Iterable[Any]) -> str:
    """JSON-path-like location: ``$.database.port`` or ``$.hosts[2]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def binding_for(config: str, explicit: str | None, schemas: Iterable[Record]) -> Record | None:
    """The schema that governs ``config``: the one it names, else the longest bound prefix."""
    best: Record | None = None
    best_len = -1
    for schema in schemas:
        if explicit is not None:
            if schema.name == explicit:
                return schema
            continue
        for prefix in schema.value.get("bind", []):
            if config.startswith(prefix) and len(prefix) > best_len:
                best, best_len = schema, len(prefix)
    return best
