"""Which models have ``SecretStr`` fields, and whether a value still holds the server's
placeholder in one.

The server keeps a typed config's secret fields encrypted and shows ``**********`` in
their place in every stored value and event; only ``GET /configs/{name}?reveal=true``
(``secrets:read``) returns the plaintext. A binding of such a model must read revealed
values and never apply the placeholder as a secret. (Our own few lines rather than
``aether_core.secrets.fields``: the SDK imports none of aether-core.)
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr

#: What the server shows in place of a secret field's value.
PLACEHOLDER = "**********"


def _schema_has_secret(node: Any, depth: int = 0) -> bool:
    """Pydantic renders ``SecretStr`` as ``format: password`` + ``writeOnly``; a model's
    ``$defs`` hold only the nested models it uses, so a walk of the whole document
    finds secrets at any depth."""
    if depth > 64:
        return False
    if isinstance(node, dict):
        if node.get("writeOnly") is True and node.get("format") == "password":
            return True
        return any(_schema_has_secret(child, depth + 1) for child in node.values())
    if isinstance(node, list):
        return any(_schema_has_secret(child, depth + 1) for child in node)
    return False


def _annotation_has_secret(annotation: Any, seen: set[type[BaseModel]]) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return False
        seen.add(annotation)
        return any(_annotation_has_secret(field.annotation, seen)
                   for field in annotation.model_fields.values())
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotation_has_secret(typing.get_args(annotation)[0], seen)
    if origin is not None or isinstance(annotation, types.UnionType):
        return any(_annotation_has_secret(arg, seen) for arg in typing.get_args(annotation))
    return False


def has_secret_fields(model: type[BaseModel]) -> bool:
    """True when ``model`` (or a model nested in it) has a ``SecretStr`` field."""
    try:
        if _schema_has_secret(model.model_json_schema()):
            return True
    except Exception:  # a model pydantic cannot render (arbitrary types): read the fields
        pass
    return _annotation_has_secret(model, set())


def placeholder_paths(value: Any, path: str = "") -> list[str]:
    """The paths of the ``SecretStr`` values in a validated model that hold the server's
    placeholder rather than a secret (empty: safe to apply)."""
    found: list[str] = []
    if isinstance(value, SecretStr):
        if value.get_secret_value() == PLACEHOLDER:
            found.append(path)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found += placeholder_paths(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            found += placeholder_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found += placeholder_paths(item, f"{path}.{index}" if path else str(index))
    return found
