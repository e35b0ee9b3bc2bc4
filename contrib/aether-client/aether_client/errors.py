"""Errors the SDK raises: the server's RFC 9457 problem documents, and no server at all."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Base of every error the SDK raises on purpose; ``detail`` is one readable line."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unreachable(ClientError):
    """No answer from the server (refused, timed out, cut off)."""


class ApiError(ClientError):
    """The server answered with an error: ``status``, ``code`` (the last part of the
    problem ``type``), ``detail``, and the problem's extension members in ``extra``
    (``current_version``, ``errors``, ``oldest_revision`` …)."""

    def __init__(self, status: int, code: str, detail: str, extra: dict[str, Any]) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.extra = extra

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        body: Any = None
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, dict):
            return cls(response.status_code, "http",
                       f"HTTP {response.status_code} from {response.request.url.path}", {})
        known = {"type", "title", "status", "detail", "instance"}
        code = str(body.get("type", "")).rstrip("/").rpartition("/")[2] or "error"
        detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
        error = Compacted if response.status_code == 410 else cls
        return error(response.status_code, code, detail,
                     {k: v for k, v in body.items() if k not in known})


class Compacted(ApiError):
    """The revision to resume from is older than the server keeps (410): re-read."""

    @property
    def oldest_revision(self) -> int:
        return int(self.extra.get("oldest_revision", 0))
