"""Roles and the rules they hold: who may do which action on which names.

A role is a list of rules ``{actions, resources, effect}``. ``actions`` are
``<area>:<verb>`` strings or globs (``configs:*``, ``*``); ``resources`` are name globs
(``billing/*`` matches ``billing/db`` and ``billing/eu/db``). Evaluation is default
deny, and a matching ``deny`` rule wins over any ``allow`` — from any of the caller's
roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aether_core.auth.base import Decision

#: Every action the kernel and the admin API check.
ACTIONS = (
    "configs:read",
    "configs:write",
    "configs:delete",
    "schemas:read",
    "schemas:write",
    "secrets:read",
    "secrets:write",
    "users:admin",
    "auth:keys",
    "cluster:admin",
)


class Rule(BaseModel):
    """One rule of a role (a manifest table: ``{actions = [...], resources = [...]}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actions: list[str] = Field(min_length=1)
    resources: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    effect: Literal["allow", "deny"] = "allow"

    def matches(self, action: str, resource: str) -> bool:
        return any(fnmatchcase(action, a) for a in self.actions) and any(
            fnmatchcase(resource, r) for r in self.resources
        )


class Role(BaseModel):
    """``[auth.roles.NAME] rules = [...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[Rule] = Field(default_factory=list)


BUILTIN_ROLES: dict[str, Role] = {
    "admin": Role(rules=[Rule(actions=["*"], resources=["*"])]),
    "editor": Role(
        rules=[
            Rule(
                actions=["configs:read", "configs:write", "configs:delete",
                         "schemas:read", "schemas:write"],
                resources=["*"],
            )
        ]
    ),
    "viewer": Role(rules=[Rule(actions=["configs:read", "schemas:read"], resources=["*"])]),
}


class RoleTable:
    """The roles in force: the built-ins, overridden or extended by the manifest."""

    def __init__(self, overrides: Mapping[str, Role] | None = None) -> None:
        self.roles: dict[str, Role] = {**BUILTIN_ROLES, **(overrides or {})}

    def __contains__(self, name: object) -> bool:
        return name in self.roles

    def names(self) -> list[str]:
        return sorted(self.roles)

    def decide(self, role_names: Iterable[str], action: str, resource: str = "") -> Decision:
        allowed_by: str | None = None
        for role_name in role_names:
            role = self.roles.get(role_name)
            if role is None:
                continue
            for index, rule in enumerate(role.rules):
                if not rule.matches(action, resource):
                    continue
                if rule.effect == "deny":
                    return Decision(
                        allowed=False,
                        reason=f"denied by role {role_name!r} rule {index + 1}",
                    )
                allowed_by = allowed_by or f"allowed by role {role_name!r} rule {index + 1}"
        if allowed_by is not None:
            return Decision(allowed=True, reason=allowed_by)
        return Decision(allowed=False, reason=f"no rule allows {action} on {resource!r}")
