"""Typed configs: schemas validate every write, and a schema change may not break configs."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from aether_core import ConfigManager
from aether_core.errors import BadRequest, NotFound, SchemaIncompatible, ValidationFailed

DATABASE = {
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "replicas": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["host", "port"],
}


class Database(BaseModel):
    host: str
    port: int = Field(ge=1, le=65535)


async def test_a_write_that_breaks_the_bound_schema_names_the_field_path(
    manager: ConfigManager,
) -> None:
    await manager.put_schema("database", DATABASE, bind=["billing/"])
    await manager.put("billing/db", {"host": "db", "port": 5432, "replicas": ["r1"]})
    with pytest.raises(ValidationFailed) as info:
        await manager.put("billing/db", {"host": "db", "port": 5432, "replicas": ["r1", 7]})
    assert info.value.errors[0]["path"] == "$.replicas[1]"
    assert "$.replicas[1]" in info.value.detail
    with pytest.raises(ValidationFailed) as info:
        await manager.put("billing/db", {"host": "db"})
    assert "'port' is a required property" in info.value.errors[0]["message"]
    assert (await manager.get("billing/db")).version == 1
    await manager.put("other/db", {"anything": True})  # outside the bound prefix


async def test_a_config_may_name_its_schema_and_keeps_it(manager: ConfigManager) -> None:
    await manager.put_schema("database", DATABASE)
    await manager.put("svc/main-db", {"host": "a", "port": 1}, schema="database")
    with pytest.raises(ValidationFailed):
        await manager.put("svc/main-db", {"host": "a", "port": 0})
    with pytest.raises(NotFound, match="schema 'nope'"):
        await manager.put("svc/x", {}, schema="nope")


async def test_a_pydantic_model_is_a_schema_and_a_typed_reader(manager: ConfigManager) -> None:
    await manager.put_schema("database", Database, bind=["db/"])
    await manager.put("db/main", {"host": "h", "port": 5432})
    typed = await manager.get_typed("db/main", Database)
    assert typed == Database(host="h", port=5432)
    with pytest.raises(ValidationFailed, match=r"\$\.port"):
        await manager.put("db/main", {"host": "h", "port": 70000})


async def test_a_breaking_schema_change_is_refused_with_the_configs_it_would_break(
    manager: ConfigManager,
) -> None:
    await manager.put_schema("database", DATABASE, bind=["billing/"])
    await manager.put("billing/a", {"host": "a", "port": 5432})
    await manager.put("billing/b", {"host": "b", "port": 80})
    stricter = {**DATABASE, "properties": {**DATABASE["properties"],  # type: ignore[dict-item]
                                           "port": {"type": "integer", "minimum": 1024}}}
    dry = await manager.check_schema("database", stricter)
    assert [(b["name"], b["errors"][0]["path"]) for b in dry] == [("billing/b", "$.port")]
    with pytest.raises(SchemaIncompatible) as info:
        await manager.put_schema("database", stricter)
    assert [b["name"] for b in info.value.broken] == ["billing/b"]
    assert (await manager.get_schema("database")).version == 1
    forced = await manager.put_schema("database", stricter, force=True)
    assert forced.version == 2 and forced.value["bind"] == ["billing/"]


async def test_rollback_is_checked_against_the_current_schema(manager: ConfigManager) -> None:
    await manager.put("billing/a", {"host": "a", "port": 80})
    await manager.put("billing/a", {"host": "a", "port": 8080})
    await manager.put_schema("database", {**DATABASE, "properties": {
        "port": {"type": "integer", "minimum": 1024}}}, bind=["billing/"])
    with pytest.raises(ValidationFailed):
        await manager.rollback("billing/a", 1)


async def test_an_invalid_json_schema_is_refused(manager: ConfigManager) -> None:
    with pytest.raises(BadRequest, match="not valid JSON Schema"):
        await manager.put_schema("bad", {"type": "no-such-type"})
    assert await manager.list_schemas() == []


async def test_the_longest_bound_prefix_wins(manager: ConfigManager) -> None:
    await manager.put_schema("loose", {"type": "object"}, bind=["billing/"])
    await manager.put_schema("strict", DATABASE, bind=["billing/db/"])
    await manager.put("billing/flags", {"x": 1})
    with pytest.raises(ValidationFailed):
        await manager.put("billing/db/main", {"x": 1})
