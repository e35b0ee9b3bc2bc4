"""RFC 9457 problem documents for every error the API answers with.

Aether's own errors carry their status and ``to_problem()``; Litestar's (404 for an
unknown route, 405, 413, body validation) are mapped here; anything else is a 500
whose body says nothing about the cause (the log has the exception type).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from aether_core.errors import AetherError

log = structlog.get_logger("aether.admin")

PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad request", 401: "Authentication required", 403: "Permission denied",
    404: "Not found", 405: "Method not allowed", 406: "Not acceptable", 409: "Conflict",
    410: "Gone", 412: "Precondition failed", 413: "Request body too large",
    415: "Unsupported media type", 422: "Validation failed", 429: "Too many requests",
    500: "Internal error", 503: "Service unavailable",
}
_CODES = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 409: "conflict", 410: "gone",
    412: "precondition-failed", 413: "too-large", 415: "unsupported-media-type",
    422: "validation-failed", 429: "too-many-requests", 500: "internal", 503: "unavailable",
}


class TooManyRequests(AetherError):
    status, code, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, retry_after=math.ceil(retry_after))
        self.retry_after = math.ceil(retry_after)


class PreconditionFailed(AetherError):
    """``If-Match`` named another version than the current one."""

    status, code, title = 412, "precondition-failed", "Precondition failed"


class UnsupportedMediaType(AetherError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document (error bodies; extension members vary by ``type``)."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str | None = None


def problem(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://aether.dev/problems/{_CODES.get(status, 'error')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def problem_bytes(status: int, detail: str, **extra: Any) -> bytes:
    return msgspec.json.encode(problem(status, detail, **extra))


def headers_for(status: int, body: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="aether", error="invalid_token"'
    if status == 429 and "retry_after" in body:
        headers["Retry-After"] = str(body["retry_after"])
    if status == 503:
        headers["Retry-After"] = "1"
    return headers


def _respond(request: Request[Any, Any, Any], status: int, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> Response[bytes]:
    body.setdefault("instance", request.scope.get("aether.path") or request.url.path)
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM,
        headers={**(headers or {}), **headers_for(status, body)},
    )


def aether_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, AetherError)
    return _respond(request, exc.status, exc.to_problem())


def _field_errors(exc: ValidationException) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        path = str(item.get("key") or "")
        if not path and " - at `" in message:
            message, _, at = message.partition(" - at `")
            path = at.rstrip("`")
        errors.append({"path": path or "$", "message": message,
                       **({"source": str(item["source"])} if item.get("source") else {})})
    return errors


def http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc)
        detail = "the request is malformed: " + "; ".join(
            f"{e['path']}: {e['message']}" for e in errors
        ) if errors else "the request is malformed"
        return _respond(request, 400, problem(400, detail, errors=errors))
    path = request.scope.get("aether.path") or request.url.path
    generic = not exc.detail or exc.detail.lower() == _TITLES.get(status, "").lower()
    detail = exc.detail if not generic else {
        404: f"no route {path}",
        405: f"{request.method} is not allowed on {path}",
        413: "the request body is larger than this server accepts",
    }.get(status, exc.detail or _TITLES.get(status, "error"))
    return _respond(request, status, problem(status, str(detail)), dict(exc.headers or {}))


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The type only: an exception's message may quote a value, and values may be secret.
    log.error("unhandled error", error=type(exc).__name__, method=request.method,
              route=request.scope.get("path_template", ""))
    return _respond(request, 500, problem(500, "the server failed to answer; see its log"))


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    AetherError: aether_error,
    HTTPException: http_error,
    Exception: internal_error,
}


#: Error responses every operation may give, for the OpenAPI document.
ERROR_RESPONSES: dict[int, ResponseSpec] = {
    status: ResponseSpec(data_container=Problem, media_type=PROBLEM, description=description,
                         generate_examples=False)
    for status, description in {
        400: "Malformed request (field paths in errors)",
        401: "Missing, invalid, expired or revoked token",
        403: "Not allowed by the caller's roles",
        404: "No such resource or version",
        409: "Exists already, version conflict, or a schema change would break configs",
        412: "If-Match names another version than the current one",
        413: "Request body too large",
        415: "Request body is not JSON",
        422: "Value breaks its schema",
        429: "Too many failed log-ins",
        503: "Not ready (no leader, storage down)",
    }.items()
}
