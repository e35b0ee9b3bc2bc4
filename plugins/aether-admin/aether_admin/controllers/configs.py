"""``/configs``: list, create, read (any version), update with If-Match, delete,
versions, rollback, diff."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter

from aether_admin.bodies import (
    ConfigCreateIn,
    ConfigOut,
    ConfigPageOut,
    ConfigUpdateIn,
    DeletedOut,
    DiffOut,
    RollbackIn,
    VersionOut,
    VersionsOut,
)
from aether_admin.consistency import ConsistencyParam, barrier, consistent
from aether_admin.context import context, principal
from aether_admin.controllers.common import (
    ANY,
    config_out,
    creatable,
    etag,
    if_match,
    precondition,
)
from aether_admin.edge import unpack_name
from aether_admin.security import allowed, authorize, requires
from aether_core.errors import NotFound, VersionConflict
from aether_core.manager import ConfigManager
from aether_core.statemachine import CONFIG

Req = Request[Any, Any, Any]
NameParam = Annotated[str, PathParameter(description="Config name; may contain '/'")]
NO_STORE = {"Cache-Control": "no-store"}


async def _expected(manager: ConfigManager, name: str, wanted: int | None) -> int | None:
    """The compare-and-set version for a write, from If-Match."""
    if wanted != ANY:
        return wanted
    head = await manager.storage.get(CONFIG, name)
    if head is None or head.deleted:
        raise precondition(0, ANY)
    return head.version


class ConfigController(Controller):
    path = "/configs"
    tags = ["configs"]

    @get("/", summary="List live configs by name prefix, a page at a time")
    async def list_configs(
        self, request: Req, prefix: Annotated[str, QueryParameter(max_length=256)] = "",
        cursor: Annotated[str | None, QueryParameter(max_length=1024)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        consistency: ConsistencyParam = "linearizable",
    ) -> ConfigPageOut:
        await barrier(request, consistency)
        page = await context(request).manager.list_configs(prefix, cursor=cursor, limit=limit)
        # Names the caller may not read are left out of the page (not refused): a listing
        # shows what is visible to you.
        items = [config_out(r) for r in page.items if allowed(request, "configs:read", r.name)]
        return ConfigPageOut(items=items, next_cursor=page.next_cursor)

    @post("/", summary="Create a config (409 if it exists)")
    async def create_config(
        self, request: Req, data: JSONBody[ConfigCreateIn]
    ) -> Response[ConfigOut]:
        authorize(request, "configs:write", data.name)
        creatable(data.name)
        record = await context(request).manager.create(
            data.name, data.value, schema=data.schema, comment=data.comment,
            author=principal(request).name,
        )
        return Response(config_out(record), status_code=201, headers={
            **etag(record.version), "Location": f"/configs/{record.name}"})

    @get("/{name:str}", guards=[requires("configs:read")],
         summary="Read a config: the latest version, or ?version=N",
         description="Secret fields of a typed config read as \"**********\"; "
         "?reveal=true returns their plaintext and needs secrets:read on the name.")
    async def get_config(
        self, request: Req, name: NameParam,
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
        reveal: Annotated[bool, QueryParameter()] = False,
        consistency: ConsistencyParam = "linearizable",
    ) -> Response[ConfigOut]:
        name = unpack_name(name)
        manager = context(request).manager
        if not reveal:
            record = await manager.get(name, version, consistent=consistent(consistency))
            return Response(config_out(record), headers=etag(record.version))
        authorize(request, "secrets:read", name)
        record = await manager.reveal(name, version, consistent=consistent(consistency))
        return Response(config_out(record), headers={**etag(record.version), **NO_STORE})

    @put("/{name:str}", guards=[requires("configs:write")],
         summary="Write the next version (creates the config if needed); If-Match for CAS")
    async def put_config(
        self, request: Req, name: NameParam, data: JSONBody[ConfigUpdateIn]
    ) -> Response[ConfigOut]:
        name = unpack_name(name)
        creatable(name)
        manager = context(request).manager
        wanted = if_match(request)
        expected = await _expected(manager, name, wanted)
        try:
            record = await manager.put(
                name, data.value, expected_version=expected, comment=data.comment,
                author=principal(request).name,
            )
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        return Response(config_out(record), status_code=201 if record.version == 1 else 200,
                        headers=etag(record.version))

    @delete("/{name:str}", guards=[requires("configs:delete")], status_code=200,
            summary="Delete a config (a tombstone version; history stays)")
    async def delete_config(self, request: Req, name: NameParam) -> Response[DeletedOut]:
        name = unpack_name(name)
        manager = context(request).manager
        wanted = if_match(request)
        expected = await _expected(manager, name, wanted)
        try:
            record = await manager.delete(name, expected_version=expected,
                                          author=principal(request).name)
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        return Response(
            DeletedOut(name=name, version=record.version, revision=record.revision),
            headers=etag(record.version),
        )

    @get("/{name:str}/versions", guards=[requires("configs:read")],
         summary="Every version of a config, oldest first (no values)")
    async def versions(self, request: Req, name: NameParam,
                       consistency: ConsistencyParam = "linearizable") -> VersionsOut:
        name = unpack_name(name)
        await barrier(request, consistency)
        history = await context(request).manager.versions(name)
        return VersionsOut(name=name, versions=[
            VersionOut(version=r.version, revision=r.revision, author=r.author,
                       timestamp=r.timestamp, comment=r.comment, deleted=r.deleted)
            for r in history
        ])

    @post("/{name:str}/rollback", guards=[requires("configs:write")], status_code=200,
          summary="Write a new version equal to an old one")
    async def rollback(
        self, request: Req, name: NameParam, data: JSONBody[RollbackIn]
    ) -> Response[ConfigOut]:
        name = unpack_name(name)
        manager = context(request).manager
        wanted = if_match(request)
        expected = await _expected(manager, name, wanted)
        try:
            record = await manager.rollback(
                name, data.to_version, expected_version=expected, comment=data.comment,
                author=principal(request).name,
            )
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        return Response(config_out(record), headers=etag(record.version))

    @get("/{name:str}/diff", guards=[requires("configs:read")],
         summary="RFC 6902 JSON Patch from one version to another")
    async def diff(
        self, request: Req, name: NameParam,
        from_version: Annotated[int, QueryParameter(name="from", ge=1)],
        to_version: Annotated[int, QueryParameter(name="to", ge=1)],
    ) -> DiffOut:
        result = await context(request).manager.diff(unpack_name(name), from_version, to_version)
        return DiffOut(name=result["name"], from_version=result["from"],
                       to_version=result["to"], patch=result["patch"],
                       secret_fields=result.get("secret_fields"))


__all__ = ["ConfigController", "NotFound"]
