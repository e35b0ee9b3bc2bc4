"""``/secrets``: secret metadata, values, staged rotation; ``/keys``: key rotation.

Reading a value needs ``secrets:read`` on the secret's name; every change needs
``secrets:write``. Metadata, listings and diffs (``changed``/``unchanged``) carry no
value and are visible with either permission. Responses with a value are marked
``Cache-Control: no-store``; the audit log records who read or changed which secret,
never the value.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Annotated, Any, Literal

import msgspec
import structlog
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta

from aether_admin.bodies import Comment, DeletedOut
from aether_admin.consistency import ConsistencyParam, consistent
from aether_admin.context import context, principal
from aether_admin.controllers.common import ANY, etag, if_match, precondition
from aether_admin.edge import unpack_name
from aether_admin.security import Connection, allowed, authorize, name_param
from aether_core.errors import BadRequest, NotFound, VersionConflict
from aether_core.secrets.errors import RotationRefused
from aether_core.secrets.manager import Revealed, SecretInfo, SecretManager
from aether_core.secrets.rotation import KeyRotator
from aether_core.secrets.sealed import SECRET, KeyringState

Req = Request[Any, Any, Any]
NameParam = Annotated[str, PathParameter(description="Secret name; may contain '/'")]
Seconds = Annotated[float, Meta(gt=0, le=366 * 86_400)]
#: Words that end a sub-resource path, so they cannot end a secret name.
SUB_RESOURCES = frozenset({"value", "values", "stage", "promote", "rollback", "diff"})
NO_STORE = {"Cache-Control": "no-store"}
log = structlog.get_logger("aether.admin")


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class SecretPutIn(_In):
    value: Any
    comment: Comment = ""


class SecretStageIn(_In):
    value: Any
    #: Seconds to promote the staged value; default the node's window.
    window_seconds: Seconds | None = None
    comment: Comment = ""


class PromoteIn(_In):
    version: Annotated[int, Meta(ge=1)]
    overlap_seconds: Annotated[float, Meta(ge=0, le=366 * 86_400)] | None = None
    comment: Comment = ""


class SecretRollbackIn(_In):
    overlap_seconds: Annotated[float, Meta(ge=0, le=366 * 86_400)] | None = None
    comment: Comment = ""


class SecretPageOut(msgspec.Struct, kw_only=True):
    items: list[SecretInfo]
    next_cursor: str | None = None


class SecretValueOut(msgspec.Struct, kw_only=True):
    name: str
    version: int
    labels: list[str]
    value: Any


class SecretValuesOut(msgspec.Struct, kw_only=True):
    """``current`` first, then ``previous`` while the overlap window is open."""

    name: str
    values: list[SecretValueOut]


class SecretDiffOut(msgspec.Struct, kw_only=True):
    name: str
    from_version: int = msgspec.field(name="from")
    to_version: int = msgspec.field(name="to")
    result: Literal["changed", "unchanged"]


class KeysOut(msgspec.Struct, kw_only=True):
    key_provider: str
    versions: list[str]
    current: str
    keyring: KeyringState
    rotating: bool


#: The background key rotation of each node's SecretManager (held so it is not collected).
_ROTATIONS: weakref.WeakKeyDictionary[SecretManager, asyncio.Task[Any]] = (
    weakref.WeakKeyDictionary())


def _report(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        # The type and Aether's own detail only; resuming continues from the cursor.
        log.error("key rotation failed; POST /keys/rotate resumes it",
                  error=type(error).__name__,
                  detail=getattr(error, "detail", ""))


def secrets_of(connection: Connection) -> SecretManager:
    found = context(connection).secrets
    if found is None:
        raise NotFound("this node serves no secrets (no [secrets] key provider)")
    return found


def _may_see(connection: Connection, name: str) -> bool:
    return (allowed(connection, "secrets:read", name)
            or allowed(connection, "secrets:write", name))


def _see(connection: Connection, name: str) -> None:
    if not _may_see(connection, name):
        authorize(connection, "secrets:read", name)  # raises, and notes it for the audit


def _writable(name: str) -> None:
    if any(segment in (".", "..") for segment in name.split("/")):
        raise BadRequest(f"secret name {name!r}: '.' and '..' are not allowed as segments")
    last = name.rpartition("/")[2]
    if last in SUB_RESOURCES:
        raise BadRequest(f"secret name {name!r} cannot end in '/{last}': that path is the "
                         f"{last} sub-resource")


def _value_out(revealed: Revealed) -> SecretValueOut:
    return SecretValueOut(name=revealed.name, version=revealed.version,
                          labels=list(revealed.labels), value=revealed.value)


async def _expected(secrets: SecretManager, name: str, wanted: int | None) -> int | None:
    if wanted != ANY:
        return wanted
    head = await secrets.config.storage.get(SECRET, name)
    if head is None or head.deleted:
        raise precondition(0, ANY)
    return head.version


def _guard_read(connection: Connection, _: Any) -> None:
    authorize(connection, "secrets:read", name_param(connection))


def _guard_write(connection: Connection, _: Any) -> None:
    authorize(connection, "secrets:write", name_param(connection))


def _guard_see(connection: Connection, _: Any) -> None:
    _see(connection, name_param(connection))


class SecretController(Controller):
    path = "/secrets"
    tags = ["secrets"]

    @get("/", summary="List secrets by name prefix (metadata only, never values)")
    async def list_secrets(
        self, request: Req, prefix: Annotated[str, QueryParameter(max_length=256)] = "",
        cursor: Annotated[str | None, QueryParameter(max_length=1024)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> SecretPageOut:
        items, next_cursor = await secrets_of(request).list_secrets(
            prefix, cursor=cursor, limit=limit)
        return SecretPageOut(items=[i for i in items if _may_see(request, i.name)],
                             next_cursor=next_cursor)

    @get("/{name:str}", guards=[_guard_see], summary="A secret's labels and versions (no value)")
    async def get_secret(self, request: Req, name: NameParam) -> Response[SecretInfo]:
        info = await secrets_of(request).info(unpack_name(name))
        return Response(info, headers=etag(info.record_version))

    @put("/{name:str}", guards=[_guard_write],
         summary="Write a new value that is current at once (If-Match for CAS)")
    async def put_secret(self, request: Req, name: NameParam,
                         data: JSONBody[SecretPutIn]) -> Response[SecretInfo]:
        name = unpack_name(name)
        _writable(name)
        secrets = secrets_of(request)
        wanted = if_match(request)
        try:
            info = await secrets.put(
                name, data.value, expected_version=await _expected(secrets, name, wanted),
                comment=data.comment, author=principal(request).name)
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        created = info.record_version == 1
        return Response(info, status_code=201 if created else 200,
                        headers=etag(info.record_version))

    @delete("/{name:str}", guards=[_guard_write], status_code=200, summary="Delete a secret")
    async def delete_secret(self, request: Req, name: NameParam) -> Response[DeletedOut]:
        name = unpack_name(name)
        secrets = secrets_of(request)
        wanted = if_match(request)
        try:
            record = await secrets.delete(
                name, expected_version=await _expected(secrets, name, wanted),
                author=principal(request).name)
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        return Response(DeletedOut(name=name, version=record.version,
                                   revision=record.revision), headers=etag(record.version))

    @get("/{name:str}/value", guards=[_guard_read],
         summary="The plaintext of the version with a label (default current)")
    async def get_value(
        self, request: Req, name: NameParam,
        label: Annotated[Literal["current", "previous", "pending"],
                         QueryParameter()] = "current",
        consistency: ConsistencyParam = "linearizable",
    ) -> Response[SecretValueOut]:
        revealed = await secrets_of(request).reveal(unpack_name(name), label,
                                                    consistent=consistent(consistency))
        return Response(_value_out(revealed), headers=NO_STORE)

    @get("/{name:str}/values", guards=[_guard_read],
         summary="What a client uses: current, and previous during the overlap window")
    async def get_values(self, request: Req, name: NameParam,
                         consistency: ConsistencyParam = "linearizable"
                         ) -> Response[SecretValuesOut]:
        name = unpack_name(name)
        values = await secrets_of(request).reveal_for_client(
            name, consistent=consistent(consistency))
        return Response(SecretValuesOut(name=name, values=[_value_out(v) for v in values]),
                        headers=NO_STORE)

    @post("/{name:str}/stage", guards=[_guard_write], status_code=200,
          summary="Stage a new value as pending")
    async def stage(self, request: Req, name: NameParam,
                    data: JSONBody[SecretStageIn]) -> Response[SecretInfo]:
        name = unpack_name(name)
        _writable(name)
        secrets = secrets_of(request)
        info = await secrets.stage(
            name, data.value,
            window=data.window_seconds if data.window_seconds is not None else secrets.window,
            expected_version=await _expected(secrets, name, if_match(request)),
            comment=data.comment, author=principal(request).name)
        return Response(info, headers=etag(info.record_version))

    @post("/{name:str}/promote", guards=[_guard_write], status_code=200,
          summary="Promote the pending version to current")
    async def promote(self, request: Req, name: NameParam,
                      data: JSONBody[PromoteIn]) -> Response[SecretInfo]:
        name = unpack_name(name)
        secrets = secrets_of(request)
        info = await secrets.promote(
            name, data.version, overlap=data.overlap_seconds,
            expected_version=await _expected(secrets, name, if_match(request)),
            comment=data.comment, author=principal(request).name)
        return Response(info, headers=etag(info.record_version))

    @post("/{name:str}/rollback", guards=[_guard_write], status_code=200,
          summary="Make previous current again")
    async def rollback(self, request: Req, name: NameParam,
                       data: JSONBody[SecretRollbackIn]) -> Response[SecretInfo]:
        name = unpack_name(name)
        secrets = secrets_of(request)
        info = await secrets.rollback(
            name, overlap=data.overlap_seconds,
            expected_version=await _expected(secrets, name, if_match(request)),
            comment=data.comment, author=principal(request).name)
        return Response(info, headers=etag(info.record_version))

    @get("/{name:str}/diff", guards=[_guard_see],
         summary="Whether two versions differ: changed or unchanged (never the values)")
    async def diff(
        self, request: Req, name: NameParam,
        from_version: Annotated[int, QueryParameter(name="from", ge=1)],
        to_version: Annotated[int, QueryParameter(name="to", ge=1)],
    ) -> SecretDiffOut:
        result = await secrets_of(request).diff(unpack_name(name), from_version, to_version)
        return SecretDiffOut(name=result["name"], from_version=from_version,
                             to_version=to_version, result=result["result"])


class KeyController(Controller):
    """``/keys``: the key-encryption keys and their rotation (``secrets:write`` on all)."""

    path = "/keys"
    tags = ["secrets"]

    @staticmethod
    def _guard(connection: Connection) -> None:
        authorize(connection, "secrets:write", "*")

    async def _status(self, secrets: SecretManager) -> KeysOut:
        task = _ROTATIONS.get(secrets)
        busy = [t for t in (task, secrets.resuming) if t is not None and not t.done()]
        return KeysOut(
            key_provider=secrets.keys.name, versions=await secrets.keys.versions(),
            current=await secrets.keys.current_version(),
            keyring=await KeyRotator(secrets).status(),
            rotating=bool(busy),
        )

    @get("/", summary="Key versions and the state of key rotation")
    async def keys(self, request: Req) -> KeysOut:
        self._guard(request)
        return await self._status(secrets_of(request))

    @post("/rotate", status_code=202,
          summary="Start (or resume) a key rotation: a new key version, every data key "
                  "re-wrapped in the background")
    async def rotate(self, request: Req) -> KeysOut:
        self._guard(request)
        secrets = secrets_of(request)
        task = _ROTATIONS.get(secrets)
        if any(t is not None and not t.done() for t in (task, secrets.resuming)):
            raise RotationRefused("a key rotation is already running on this node; "
                                  "GET /keys shows its progress")
        task = asyncio.create_task(KeyRotator(secrets).rotate(author=principal(request).name),
                                   name="aether-key-rotation")
        task.add_done_callback(_report)
        _ROTATIONS[secrets] = task
        await asyncio.sleep(0)  # let it record RotateKey before we report
        return await self._status(secrets)
