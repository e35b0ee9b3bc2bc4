"""Configs as environment variables, the way ``aether run`` hands them to a child.

``billing/database`` = ``{"host": "db", "port": 5432}`` under ``--prefix billing/`` gives
``DATABASE_HOST=db`` and ``DATABASE_PORT=5432`` (envconsul's shape): the name after the
prefix and each top-level key, upper-cased, other characters as ``_``. A value that is
not an object gives one variable; nested values are JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aether_client.errors import ClientError

_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")


def var_name(*parts: str) -> str:
    return "_".join(p for p in (_NOT_WORD.sub("_", part).strip("_").upper() for part in parts)
                    if p)


def scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def config_env(prefix: str, configs: dict[str, Any], *, var_prefix: str = "") -> dict[str, str]:
    """The variables for ``configs`` (name → value), all names under ``prefix``.

    :raises ClientError: two configs or keys map to one variable name.
    """
    env: dict[str, str] = {}
    origin: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        if not key:
            raise ClientError(f"{where} gives an empty variable name")
        if key in env:
            raise ClientError(f"{origin[key]} and {where} both map to ${key}")
        env[key], origin[key] = scalar(value), where

    for name in sorted(configs):
        value = configs[name]
        rel = name[len(prefix):] if name.startswith(prefix) else name
        base = var_name(var_prefix, rel)
        if isinstance(value, dict):
            for field, item in value.items():
                put(var_name(base, str(field)), item, f"{name}:{field}")
        else:
            put(base, value, name)
    return env
