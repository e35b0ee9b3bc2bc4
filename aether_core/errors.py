"""Errors users see.

Every error Aether raises on purpose is an :class:`AetherError`. Each class carries the
HTTP status and a stable ``code`` so that the admin API turns it into an RFC 9457
problem document and the CLI into one readable line, without either of them knowing
the individual cases. ``detail`` must never contain a secret value.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AetherError(Exception):
    """Base of every deliberate Aether error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error (extension members from ``extra``)."""
        problem: dict[str, Any] = {
            "type": f"https://aether.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class BadRequest(AetherError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(AetherError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(AetherError):
    status, code, title = 403, "forbidden", "Permission denied"


class NotFound(AetherError):
    status, code, title = 404, "not-found", "Not found"


class VersionConflict(AetherError):
    """A compare-and-set write expected another version than the current one."""

    status, code, title = 409, "version-conflict", "Version conflict"

    def __init__(self, detail: str, *, current_version: int, expected_version: int) -> None:
        super().__init__(
            detail, current_version=current_version, expected_version=expected_version
        )
        self.current_version = current_version
        self.expected_version = expected_version


class AlreadyExists(AetherError):
    status, code, title = 409, "already-exists", "Already exists"


class Compacted(AetherError):
    """The change history asked for has been compacted away (etcd's rule)."""

    status, code, title = 410, "compacted", "Revision compacted"

    def __init__(self, detail: str, *, oldest_revision: int) -> None:
        super().__init__(detail, oldest_revision=oldest_revision)
        self.oldest_revision = oldest_revision


class ValidationFailed(AetherError):
    """A value does not match its schema; ``errors`` lists ``{"path", "message"}``."""

    status, code, title = 422, "validation-failed", "Validation failed"

    def __init__(self, detail: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(detail, errors=errors)
        self.errors = errors


class SchemaIncompatible(AetherError):
    """A new schema version would reject configs that are bound to it today."""

    status, code, title = 409, "schema-incompatible", "Schema change would break configs"

    def __init__(self, detail: str, *, broken: list[dict[str, Any]]) -> None:
        super().__init__(detail, broken=broken)
        self.broken = broken


class Unavailable(AetherError):
    """The node cannot serve the request now (no leader, storage down, shutting down)."""

    status, code, title = 503, "unavailable", "Service unavailable"


class StorageFault(Unavailable):
    """Storage failed. A node whose storage failed mid-apply stops serving writes."""

    code, title = "storage-fault", "Storage fault"


class ConfigurationError(AetherError):
    """A manifest or plugin problem found at start-up; ``detail`` names file/section/key."""

    code, title = "configuration", "Configuration error"


class PluginError(ConfigurationError):
    code, title = "plugin", "Plugin error"
