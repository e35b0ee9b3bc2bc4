"""The ASGI layer around the Litestar router: names with ``/``, strict content types,
metrics and the audit log.

Config and schema names contain ``/`` (``billing/database``), and Litestar's path
parameters match one segment. Before routing, the name part of ``/configs/…`` and
``/schemas/…`` is joined with a separator that names cannot contain, and the handlers
split it again. A trailing ``versions``/``diff``/``rollback`` (``check`` for schemas)
segment is the sub-resource, so those words cannot end a config name.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Send

from aether_admin.metrics import Metrics
from aether_admin.problems import PROBLEM, headers_for, problem

audit_log = structlog.get_logger("aether.audit")

SEP = "\x1f"
SUB_RESOURCES = {"configs": frozenset({"versions", "diff", "rollback"}),
                 "schemas": frozenset({"check"}),
                 "secrets": frozenset({"value", "values", "stage", "promote", "rollback",
                                       "diff"})}
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def route_path(path: str) -> str:
    for area, suffixes in SUB_RESOURCES.items():
        prefix = f"/{area}/"
        if path.startswith(prefix) and len(path) > len(prefix):
            segments = path[len(prefix):].split("/")
            if len(segments) >= 2 and segments[-1] in suffixes:
                return prefix + SEP.join(segments[:-1]) + "/" + segments[-1]
            return prefix + SEP.join(segments)
    return path


def unpack_name(raw: str) -> str:
    return raw.replace(SEP, "/")


def reserved_suffix(name: str) -> str | None:
    """The sub-resource word that ends ``name``, if any (such names cannot be created)."""
    last = name.rpartition("/")[2]
    return last if last in SUB_RESOURCES["configs"] | SUB_RESOURCES["schemas"] else None


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/")
                                          and mime.endswith("+json"))


class Edge:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        original = scope["path"]
        scope["aether.path"] = original
        scope["path"] = route_path(original)
        method = scope["method"]
        status = 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refuse_media_type(scope) if method in _WITH_BODY else None
            if refusal is not None:
                await _send_problem(send_and_see, 415, refusal, original)
            else:
                await self.app(scope, receive, send_and_see)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            self.metrics.observe(method, route, status, time.perf_counter() - started)
            # Reading a secret's plaintext is audited like a change.
            if (method not in _SAFE or status in (401, 403, 429)
                    or scope.get("aether.action") == "secrets:read"):
                _audit(scope, original, status)

    @staticmethod
    def _refuse_media_type(scope: Any) -> str | None:
        content_type = ""
        has_body = False
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"content-length":
                has_body = value.strip() not in (b"", b"0")
            elif key == b"transfer-encoding":
                has_body = True
        if has_body and not _is_json(content_type):
            return (f"request bodies must be application/json, not "
                    f"{content_type.split(';')[0] or 'untyped'}")
        return None


async def _send_problem(send: Send, status: int, detail: str, instance: str) -> None:
    import msgspec

    body = problem(status, detail, instance=instance)
    headers: list[tuple[bytes, bytes]] = [(b"content-type", PROBLEM.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in headers_for(status, body).items()]
    payload = msgspec.json.encode(body)
    headers.append((b"content-length", str(len(payload)).encode()))
    start: Any = {"type": "http.response.start", "status": status, "headers": headers}
    body_message: Any = {"type": "http.response.body", "body": payload}
    await send(start)
    await send(body_message)


def _audit(scope: Any, path: str, status: int) -> None:
    from aether_core.auth.base import Principal

    user = scope.get("user")
    who = user.name if isinstance(user, Principal) else (
        scope.get("aether.subject") or "anonymous")
    outcome = ("allowed" if status < 400 else
               "denied" if status in (401, 403, 429) else "failed")
    client: Any = scope.get("client") or ("", 0)
    audit_log.info(
        "audit", who=who, method=scope["method"], path=path,
        action=scope.get("aether.action"),
        resource=scope.get("aether.resource"),
        reason=scope.get("aether.reason"),
        client=client[0], status=status, outcome=outcome, at=time.time(),
    )
