"""``/schemas``: read, write (with a compatibility check), dry-run check."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter

from aether_admin.bodies import (
    BrokenConfig,
    SchemaCheckIn,
    SchemaCheckOut,
    SchemaListOut,
    SchemaOut,
    SchemaPutIn,
)
from aether_admin.context import context, principal
from aether_admin.controllers.common import ANY, creatable, etag, if_match, precondition
from aether_admin.edge import unpack_name
from aether_admin.security import allowed, requires
from aether_core.errors import VersionConflict
from aether_core.records import Record
from aether_core.statemachine import SCHEMA

Req = Request[Any, Any, Any]
NameParam = Annotated[str, PathParameter(description="Schema name; may contain '/'")]


def schema_out(record: Record) -> SchemaOut:
    value = record.value or {}
    return SchemaOut(
        name=record.name, version=record.version, revision=record.revision,
        schema=value.get("schema", {}), bind=list(value.get("bind", [])),
        author=record.author, timestamp=record.timestamp,
    )


class SchemaController(Controller):
    path = "/schemas"
    tags = ["schemas"]

    @get("/", summary="Every schema (latest versions)")
    async def list_schemas(self, request: Req) -> SchemaListOut:
        records = await context(request).manager.list_schemas()
        return SchemaListOut(items=[
            schema_out(r) for r in records if allowed(request, "schemas:read", r.name)
        ])

    @get("/{name:str}", guards=[requires("schemas:read")],
         summary="Read a schema: the latest version, or ?version=N")
    async def get_schema(
        self, request: Req, name: NameParam,
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Response[SchemaOut]:
        record = await context(request).manager.get_schema(unpack_name(name), version)
        return Response(schema_out(record), headers=etag(record.version))

    @put("/{name:str}", guards=[requires("schemas:write")],
         summary="Write the next version of a schema (409 if live configs would break, "
         "unless force)")
    async def put_schema(
        self, request: Req, name: NameParam, data: JSONBody[SchemaPutIn]
    ) -> Response[SchemaOut]:
        name = unpack_name(name)
        creatable(name, "schema")
        manager = context(request).manager
        wanted = if_match(request)
        expected = wanted
        if wanted == ANY:
            head = await manager.storage.get(SCHEMA, name)
            if head is None:
                raise precondition(0, ANY)
            expected = head.version
        try:
            record = await manager.put_schema(
                name, data.schema, bind=data.bind, force=data.force,
                expected_version=expected, comment=data.comment,
                author=principal(request).name,
            )
        except VersionConflict as exc:
            if wanted is None:
                raise
            raise precondition(exc.current_version, exc.expected_version) from None
        return Response(schema_out(record), status_code=201 if record.version == 1 else 200,
                        headers=etag(record.version))

    @post("/{name:str}/check", guards=[requires("schemas:write")], status_code=200,
          summary="Dry run: the live configs this schema would reject")
    async def check_schema(
        self, request: Req, name: NameParam, data: JSONBody[SchemaCheckIn]
    ) -> SchemaCheckOut:
        name = unpack_name(name)
        broken = await context(request).manager.check_schema(name, data.schema, data.bind)
        return SchemaCheckOut(
            name=name, ok=not broken,
            broken=[BrokenConfig(name=b["name"], version=b["version"], errors=b["errors"])
                    for b in broken],
        )
